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


def to_stderr() -> None:
    """Show enhancer's messages on stderr (once per process)."""
    if any(getattr(handler, "_enhancer", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("enhancer: %(message)s"))
    handler._enhancer = True
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
