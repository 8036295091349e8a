"""The plugin manager: built-in and third-party plugins from the entry-point group "enhancer", plus one-off
`--plugin module.path` modules, all registered the same way (the core never special-cases its own plugins).

    registry = PluginRegistry.load(extra_modules=["my_pkg.my_plugin"])
    backend = registry.create("backend", "synthetic", fps=8)

A plugin that fails to import or whose hook raises is recorded in `registry.broken` and reported; it never
takes the core down. Asking for a name that is not registered raises `UnknownPluginError`, which lists the
registered names (and the broken plugins, since the one you wanted may be among them).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pluggy

from enhancer import hookspecs

ENTRY_POINT_GROUP = "enhancer"
Kind = Literal["backend", "scorer", "trainer"]
KINDS: dict[str, str] = {
    "backend": "enhancer_video_backends",
    "scorer": "enhancer_reward_scorers",
    "trainer": "enhancer_policy_trainers",
}
KIND_FLAGS = {"backend": "--backend", "scorer": "--reward", "trainer": "--trainer"}


class PluginError(Exception):
    """A plugin could not be found, loaded or built."""


class UnknownPluginError(PluginError, LookupError):
    """No plugin of that kind is registered under that name."""


@dataclass
class PluginEntry:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str  # the pluggy plugin name (entry-point name or module path)
    source: str  # the distribution it came from, "name version", or "--plugin" for one-off modules


@dataclass
class BrokenPlugin:
    plugin: str
    source: str
    error: str


class PluginRegistry:
    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.entries: dict[str, dict[str, PluginEntry]] = {kind: {} for kind in KINDS}
        self.broken: list[BrokenPlugin] = []
        self._sources: dict[str, str] = {}

    @classmethod
    def load(cls, extra_modules: Iterable[str] = (), entry_points: bool = True) -> PluginRegistry:
        registry = cls()
        if entry_points:
            registry._load_entry_points()
        for module_path in extra_modules:
            registry.register_module(module_path)
        registry._collect()
        return registry

    def _load_entry_points(self) -> None:
        seen: dict[str, str] = {}  # entry-point name -> the distribution that registered it
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(entry_point, "dist", None)
            source = f"{dist.name} {dist.version}" if dist is not None else entry_point.value
            owner = dist.name if dist is not None else entry_point.value
            if entry_point.name in seen:
                # The same distribution seen twice (say an editable install and a build folder) loads once;
                # another distribution using the same name is a clash that must not pass silently.
                if seen[entry_point.name] != owner:
                    self.broken.append(
                        BrokenPlugin(
                            entry_point.name,
                            source,
                            f"entry-point name {entry_point.name!r} is already used by "
                            f"{seen[entry_point.name]}; ignored (rename one of them)",
                        )
                    )
                continue
            seen[entry_point.name] = owner
            try:
                plugin = entry_point.load()
            except Exception as error:  # a third-party import error must not take the core down
                self.broken.append(BrokenPlugin(entry_point.name, source, f"{type(error).__name__}: {error}"))
                continue
            self._register(plugin, entry_point.name, source)

    def register_module(self, module_path: str) -> None:
        """Register a one-off plugin module (`--plugin my_pkg.my_plugin`)."""
        try:
            plugin = importlib.import_module(module_path)
        except Exception as error:
            self.broken.append(BrokenPlugin(module_path, "--plugin", f"{type(error).__name__}: {error}"))
            return
        self._register(plugin, module_path, "--plugin")

    def register(self, plugin: Any, name: str, source: str = "python") -> None:
        """Register a plugin object from Python (used when embedding enhancer as a library)."""
        self._register(plugin, name, source)
        self._collect()

    def _register(self, plugin: Any, name: str, source: str) -> None:
        if self.manager.has_plugin(name):
            if self.manager.get_plugin(name) is not plugin:
                self.broken.append(
                    BrokenPlugin(
                        name,
                        source,
                        f"plugin name {name!r} is already registered by {self._sources.get(name, '?')}; ignored",
                    )
                )
            return
        try:
            self.manager.register(plugin, name=name)
            # A hookimpl whose name matches no hook spec (a typo) is only found by check_pending.
            self.manager.check_pending()
        except Exception as error:  # a misspelled hook name or wrong hook arguments
            if self.manager.has_plugin(name):
                self.manager.unregister(name=name)
            self.broken.append(BrokenPlugin(name, source, f"{type(error).__name__}: {error}"))
            return
        self._sources[name] = source

    def _collect(self) -> None:
        self.entries = {kind: {} for kind in KINDS}
        broken_names = {b.plugin for b in self.broken}
        for kind, hook_name in KINDS.items():
            hook = getattr(self.manager.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                plugin_name = impl.plugin_name
                try:
                    provided = impl.function()
                    if not isinstance(provided, dict):
                        raise TypeError(f"{hook_name} must return a dict of name -> factory, got {type(provided)}")
                except Exception as error:
                    if plugin_name not in broken_names:
                        self.broken.append(
                            BrokenPlugin(plugin_name, self._sources.get(plugin_name, "?"), f"{hook_name}: {error}")
                        )
                        broken_names.add(plugin_name)
                    continue
                for name, factory in provided.items():
                    existing = self.entries[kind].get(name)
                    if existing is not None:
                        self.broken.append(
                            BrokenPlugin(
                                plugin_name,
                                self._sources.get(plugin_name, "?"),
                                f"{kind} name {name!r} is already registered by {existing.plugin}; ignored",
                            )
                        )
                        continue
                    self.entries[kind][name] = PluginEntry(
                        kind, name, factory, plugin_name, self._sources.get(plugin_name, "?")
                    )

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[_check_kind(kind)])

    def get(self, kind: str, name: str) -> PluginEntry:
        entries = self.entries[_check_kind(kind)]
        if name in entries:
            return entries[name]
        registered = ", ".join(sorted(entries)) or "none"
        message = f"no {kind} named {name!r} ({KIND_FLAGS[kind]}); registered {kind}s: {registered}."
        if self.broken:
            broken = "; ".join(f"{b.plugin} ({b.source}): {b.error}" for b in self.broken)
            message += f" Plugins that failed to load: {broken}."
        message += " Install the package that provides it, or load a module with --plugin."
        raise UnknownPluginError(message)

    def check_options(
        self, kind: str, name: str, options: dict[str, Any], given_by_core: tuple[str, ...] = ()
    ) -> None:
        """Check a recipe's options for the named plugin against its factory's signature, without building it (no
        model loads): an unknown or missing option fails here, with the allowed names, not after stage 1."""
        entry = self.get(kind, name)
        try:
            parameters = inspect.signature(entry.factory).parameters
        except (TypeError, ValueError):
            return  # a factory whose signature cannot be read (a C extension): it checks its own options
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return
        named = {n: p for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        allowed = sorted(n for n in named if n not in given_by_core)
        unknown = sorted(set(options) - set(allowed))
        missing = sorted(
            n for n, p in named.items() if p.default is p.empty and n not in options and n not in given_by_core
        )
        where = {"backend": "backend_options", "scorer": f"reward_options.{name}", "trainer": "trainer_options"}[kind]
        if unknown:
            raise PluginError(
                f"{where}: {kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(allowed) or 'none'}"
            )
        if missing:
            raise PluginError(f"{where}: {kind} {name!r} needs {', '.join(map(repr, missing))}")

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Build the named plugin object with `options` (from the recipe)."""
        entry = self.get(kind, name)
        try:
            instance = entry.factory(**options)
        except TypeError as error:
            raise PluginError(
                f"{kind} {name!r} from {entry.source}: bad options {sorted(options)}: {error}"
            ) from error
        if not getattr(instance, "name", None):
            try:
                instance.name = name
            except AttributeError:
                pass
        return instance

    def rows(self) -> list[dict[str, str]]:
        """One row per registered name, for the `plugins list` command."""
        rows = []
        for kind in KINDS:
            for name in self.names(kind):
                entry = self.entries[kind][name]
                doc = (entry.factory.__doc__ or "").strip().splitlines()
                rows.append(
                    {
                        "kind": kind,
                        "name": name,
                        "plugin": entry.plugin,
                        "package": entry.source,
                        "summary": doc[0] if doc else "",
                    }
                )
        return rows


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return kind
