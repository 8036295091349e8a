"""The `enhancer` command (entry point `enhancer.cli:main`; `python -m enhancer.cli` runs it too, as torchrun and
accelerate launch do). Each command's module registers it on `main` when the command is first asked for
(`enhancer.cli.app.COMMANDS`)."""

from __future__ import annotations

from enhancer.cli.app import main

__all__ = ["main"]
