"""The `enhancer` command (entry point `enhancer.cli:main`; `python -m enhancer.cli` runs it too, as torchrun and
accelerate launch do). Importing this package registers every command group on `main`."""

from __future__ import annotations

from enhancer.cli import data, enhance, evaluate, export, plugins, train, video  # noqa: F401  (they register)
from enhancer.cli.app import main

__all__ = ["main"]
