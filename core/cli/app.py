"""The `enhancer` command's group: one click group, with a clean one-line error for library errors. Each command
group lives in its own module here (enhance, train, evaluate, data, export, video, plugins); commands parse,
call the library and print.

    enhancer enhance "a fox trotting across a snowy field at dawn"
    enhancer run --backend synthetic --reward keep,coverage,clean --trainer trl_grpo --out runs/demo
    enhancer --help
"""

from __future__ import annotations

import dataclasses
import importlib

import click

# Which module defines each command: a command's module is imported when the command runs (or for --help), so
# `enhancer enhance` does not pay for importing the training, eval and video commands first.
COMMANDS = {
    "enhance": "enhance",
    "serve": "enhance",
    "run": "train",
    "train": "train",
    "eval": "evaluate",
    "report": "evaluate",
    "rate": "evaluate",
    "data": "data",
    "export": "export",
    "video": "video",
    "reward": "video",
    "plugins": "plugins",
}


class _Group(click.Group):
    """Loads each command's module on first use, and turns library errors (bad plugin name, missing model, bad
    recipe) into one clean line and exit 2."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(f"enhancer.cli.{COMMANDS[name]}")  # registers its commands on `main`
        return self.commands.get(name)

    def invoke(self, ctx):
        from enhancer.models import ModelNotFoundError
        from enhancer.registry import PluginError

        try:
            return super().invoke(ctx)
        except (PluginError, ModelNotFoundError, ValueError, FileNotFoundError, FileExistsError) as error:
            click.echo(f"enhancer: error: {error}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="enhancer")
def main() -> None:
    """enhancer: better text-to-video prompts, and the toolkit that trains the model that writes them."""
    from enhancer import logs

    logs.to_stderr()  # the library's messages, as `enhancer: ...` lines on stderr


def parse_options(pairs: tuple[str, ...], flag: str) -> dict:
    """KEY=VALUE options for a plugin; values are read as YAML scalars (numbers, true/false), else text."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} model=wan2.2")
        try:
            options[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def config_flag(section, name: str, *decls: str, **extra):
    """A click option for field `name` of the config dataclass `section`, with the help, type, choices and default
    the dataclass gives it (written once, there). The flag's own default is None, so a flag left out leaves the
    recipe's value; `decls` renames the flag and, for a nested field, names its parameter `section__field`
    (e.g. `config_flag(RLConfig, "max_steps", "--rl-steps", "rl__max_steps")`); `extra` overrides the rest."""
    item = {f.name: f for f in dataclasses.fields(section)}[name]
    kind = str(item.type).replace(" ", "").removesuffix("|None")
    default = item.default if item.default is not dataclasses.MISSING else None
    help_text = item.metadata.get("help", "")
    if default not in (None, ""):
        help_text += f"  [default: {default}]"
    params: dict = {"help": help_text, "default": None}
    if "choices" in item.metadata:
        params["type"] = click.Choice(list(item.metadata["choices"]))
    elif kind in ("int", "float"):
        params["type"] = int if kind == "int" else float
    elif kind == "bool":
        params["type"] = click.BOOL
    elif kind.startswith("list["):
        params["multiple"] = True
    params.update(extra)
    return click.option(*(decls or (f"--{name.replace('_', '-')}",)), **params)


def config_overrides(options: dict) -> dict:
    """The flags that were given, as overrides for a config loader: `section__field` ones nested, repeated flags as
    lists, the rest left out."""
    values: dict = {}
    for key, value in options.items():
        if value is None or value == ():
            continue
        value = list(value) if isinstance(value, tuple) else value
        section, _, field = key.partition("__")
        if field:
            values.setdefault(section, {})[field] = value
        else:
            values[key] = value
    return values
