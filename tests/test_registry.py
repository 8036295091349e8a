"""The plugin manager: built-ins through entry points, one-off modules, and plugins that are broken."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from enhancer import hookimpl
from enhancer.registry import PluginError, PluginRegistry, UnknownPluginError

from conftest import BIN


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _module(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")


def test_builtins_come_from_entry_points_with_their_package():
    registry = PluginRegistry.load()
    rows = {(r["kind"], r["name"]): r for r in registry.rows()}
    assert rows[("backend", "synthetic")]["package"].startswith("enhancer ")
    assert rows[("backend", "synthetic")]["plugin"] == "synthetic"
    assert {("scorer", "keep"), ("scorer", "budget"), ("trainer", "trl_grpo")} <= set(rows)
    assert registry.broken == []


def test_one_off_module_plugin(plugin_dir):
    _module(
        plugin_dir,
        "my_scorer",
        '''
        from enhancer import hookimpl

        class Half:
            """Scores everything 0.5."""
            def __init__(self, value=0.5):
                self.value = value
            def score(self, samples):
                return [self.value for _ in samples]

        @hookimpl
        def enhancer_reward_scorers():
            return {"half": Half}
    ''',
    )
    registry = PluginRegistry.load(extra_modules=["my_scorer"])
    entry = registry.get("scorer", "half")
    assert (entry.plugin, entry.source) == ("my_scorer", "--plugin")
    scorer = registry.create("scorer", "half", value=0.25)
    assert scorer.name == "half"  # the core names objects that did not name themselves
    assert scorer.score([1, 2]) == [0.25, 0.25]
    with pytest.raises(PluginError, match=r"scorer 'half' from --plugin: bad options \['colour'\]"):
        registry.create("scorer", "half", colour="red")


def test_plugin_raising_at_import_does_not_take_the_core_down(plugin_dir):
    _module(plugin_dir, "explodes", 'raise RuntimeError("boom at import")\n')
    registry = PluginRegistry.load(extra_modules=["explodes"])
    assert [(b.plugin, b.error) for b in registry.broken] == [("explodes", "RuntimeError: boom at import")]
    assert "synthetic" in registry.names("backend")
    with pytest.raises(UnknownPluginError) as error:
        registry.get("backend", "exploding_backend")
    message = str(error.value)
    assert "registered backends: diffusers, sora, synthetic." in message
    assert "Plugins that failed to load: explodes (--plugin): RuntimeError: boom at import" in message


def test_hook_that_raises_or_returns_garbage_is_reported(plugin_dir):
    _module(
        plugin_dir,
        "bad_hooks",
        """
        from enhancer import hookimpl

        @hookimpl
        def enhancer_video_backends():
            raise ValueError("no GPU")

        @hookimpl
        def enhancer_reward_scorers():
            return ["not", "a", "dict"]
    """,
    )
    registry = PluginRegistry.load(extra_modules=["bad_hooks"])
    errors = [b.error for b in registry.broken if b.plugin == "bad_hooks"]
    assert errors == ["enhancer_video_backends: no GPU"]  # one report per plugin, the first failure
    assert "keep" in registry.names("scorer")


def test_a_duplicate_name_keeps_the_first_and_says_so():
    class Shadow:
        @hookimpl
        def enhancer_video_backends(self):
            return {"synthetic": object}

    registry = PluginRegistry.load()
    registry.register(Shadow(), "shadow")
    assert registry.get("backend", "synthetic").plugin == "synthetic"
    assert any("'synthetic' is already registered by synthetic" in b.error for b in registry.broken)


def test_misspelled_hook_is_rejected_at_registration():
    class Typo:
        @hookimpl
        def enhancer_video_backend(self):  # missing the final s
            return {}

    registry = PluginRegistry.load()
    registry.register(Typo(), "typo")
    assert [b.plugin for b in registry.broken] == ["typo"]
    assert "enhancer_video_backend" in registry.broken[0].error


def test_unknown_kind():
    with pytest.raises(ValueError, match="valid kinds: backend, scorer, trainer"):
        PluginRegistry.load().names("reward")


def test_cli_plugins_list(plugin_dir, cli_env):
    _module(plugin_dir, "explodes", 'raise ImportError("needs torchvision")\n')
    cli_env["PYTHONPATH"] = f"{plugin_dir}:{cli_env['PYTHONPATH']}"
    table = subprocess.run(
        [str(BIN / "enhancer"), "plugins", "list", "--plugin", "explodes", "--plugin", "stub_plugins"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PACKAGE", "SUMMARY"]
    assert any(line.split()[:3] == ["backend", "stub_video", "--plugin"] for line in lines)
    assert "broken: explodes (--plugin): ImportError: needs torchvision" in table.stderr
    listed = subprocess.run(
        [str(BIN / "enhancer"), "plugins", "list", "--json"], capture_output=True, text=True, env=cli_env, timeout=60
    )
    names = {(r["kind"], r["name"]) for r in json.loads(listed.stdout)["plugins"]}
    assert ("trainer", "trl_grpo") in names


def test_a_module_plugin_with_a_taken_name_is_reported(plugin_dir):
    _module(plugin_dir, "synthetic_clone", "from enhancer.plugins.synthetic import *  # noqa\n")
    registry = PluginRegistry.load()
    import synthetic_clone

    registry._register(synthetic_clone, "synthetic", "--plugin")
    assert any("plugin name 'synthetic' is already registered by enhancer" in b.error for b in registry.broken)


def test_run_refuses_a_plugin_module_that_failed(plugin_dir, tmp_path):
    from enhancer.train.orchestrator import run

    _module(plugin_dir, "explodes_too", 'raise RuntimeError("kaput")\n')
    with pytest.raises(PluginError, match="--plugin explodes_too: RuntimeError: kaput"):
        run(None, plugins=["explodes_too"], backend="synthetic", out=str(tmp_path))
