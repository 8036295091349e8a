"""enhancer's messages go through the standard `logging` module, under the logger named "enhancer".

Library functions take a `log` callable and default to `info` here, so embedding enhancer prints nothing unless
the host configures logging; the `enhancer` command calls `to_stderr()` once, which shows them on stderr as
`enhancer: message` (stdout stays for results: JSON rows, paths, summaries).
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("enhancer")


def info(message: str) -> None:
    logger.info(message)


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes (a test runner may swap it), not the one at setup."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def to_stderr() -> None:
    """Show enhancer's messages on stderr (once per process)."""
    if any(isinstance(handler, _Stderr) for handler in logger.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("enhancer: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
