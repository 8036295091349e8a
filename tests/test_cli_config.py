"""The command's flags come from the typed configs: one place writes each option's help, type and default, and the
same validation runs for a recipe and for a flag."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from enhancer.cli import main
from enhancer.config import RLConfig, RunConfig, SFTConfig
from enhancer.eval.config import EvalConfig
from enhancer.serve.limits import ServeLimits
from enhancer.train.dpo import DPOSettings

COMMANDS = {
    ("run",): (RunConfig, SFTConfig, RLConfig),
    ("train", "sft"): (RunConfig, SFTConfig),
    ("train", "dpo"): (DPOSettings, RunConfig),
    ("eval",): (EvalConfig,),
    ("serve",): (ServeLimits,),
}


def _command(path):
    command = main
    for name in path:
        command = command.get_command(None, name)  # loads the command's module, as `enhancer NAME` does
    return command


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_flags_take_their_help_from_the_config_fields(path):
    helps = {
        f.metadata["help"] for section in COMMANDS[path] for f in dataclasses.fields(section) if f.metadata.get("help")
    }
    derived = [p for p in _command(path).params if any(p.help and p.help.startswith(h) for h in helps)]
    assert len(derived) >= 4, [p.name for p in _command(path).params]  # most of the command's flags
    for param in derived:
        assert param.default is None or param.multiple  # an unset flag leaves the recipe's value alone


def test_a_flag_is_validated_like_the_recipe_field(tmp_path):
    result = CliRunner().invoke(main, ["run", "--max-videos", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "rl.max_videos must be at least 1" in result.output
    result = CliRunner().invoke(main, ["train", "dpo", "--traces", "t.jsonl", "--beta", "0"])
    assert result.exit_code == 2 and "dpo.beta must be > 0" in result.output


def test_every_command_is_found_lazily():
    """`enhancer.cli.app.COMMANDS` names each command's module: importing them all registers exactly those names,
    and each is found through the group as `enhancer NAME` would find it."""
    import importlib

    from enhancer.cli.app import COMMANDS

    for module in set(COMMANDS.values()):
        importlib.import_module(f"enhancer.cli.{module}")
    assert set(main.commands) == set(COMMANDS)
    assert all(main.get_command(None, name) is main.commands[name] for name in COMMANDS)
