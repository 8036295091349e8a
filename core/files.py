"""Files that several processes share, and that a kill at any instant must not corrupt.

    append_jsonl("runs/x/traces.jsonl", rows)       # whole rows or none, under a lock, fsync'd
    rows = read_jsonl("runs/x/traces.jsonl")        # complete lines only
    with file_lock("cache/ledger.lock"): ...        # one process at a time, on this machine or any sharing the folder

Every append-only JSONL file of enhancer (the video cache's index and budget ledger, traces, batch output, eval
rows, synthesised data) goes through `append_jsonl`: it takes an exclusive lock on the file, cuts off a torn
last line left by a writer that was killed mid-write (truncating the file, never rewriting it; the fragment is
kept in FILE.torn for the curious), then writes the new rows in one call and fsyncs. Without the cut, the next
row would be glued to the fragment and both lost.

Locks are flock(2) advisory locks. The kernel drops them when their holder dies (SIGKILL included), so a crash
never leaves a stale lock behind. They hold between processes on one machine and between machines on file
systems that implement flock: local disks, and NFSv4 (Linux maps flock onto its byte-range locks). A
FUSE or SMB mount that ignores locks would not be safe; README's "Scaling out" says so too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["JsonlTail", "append_jsonl", "async_file_lock", "cut_torn_tail", "file_lock", "read_jsonl"]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _cut_torn_tail_fd(fd: int, path: Path) -> int:
    """Cut an unterminated last line off the open file; returns how many bytes were cut. Call under the lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    cut, position = 0, size
    while position > 0:  # find the last newline, reading backwards in blocks
        start = max(0, position - 65536)
        block = os.pread(fd, position - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            cut = start + newline + 1
            break
        position = start
    fragment = os.pread(fd, size - cut, cut)
    with open(f"{path}.torn", "ab") as torn:
        torn.write(fragment + b"\n")
    os.ftruncate(fd, cut)
    return size - cut


def cut_torn_tail(path: str | Path) -> int:
    """Cut a torn last line off `path` (under its lock); returns the bytes cut, 0 when the file is whole."""
    path = Path(path)
    if not path.exists():
        return 0
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _cut_torn_tail_fd(fd, path)
    finally:
        os.close(fd)


def append_jsonl(path: str | Path, rows: Iterable[dict], *, fsync: bool = True) -> None:
    """Append `rows` as JSON lines: under an exclusive lock, after cutting a torn last line, in one write."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    if not data:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _cut_torn_tail_fd(fd, path)
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _rows(lines: Iterable[bytes]) -> Iterator[dict]:
    for line in lines:
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # an old file torn before this module existed: the row was never complete
        if isinstance(row, dict):
            yield row


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSONL file; lines that are not a JSON object (a torn last line) are skipped, and a missing
    file has none. A last line without its newline counts when it parses (files written by other tools)."""
    path = Path(path)
    return list(_rows(path.read_bytes().splitlines())) if path.exists() else []


class JsonlTail:
    """Reads a growing JSONL file incrementally: each `read_new()` returns the complete rows appended since the
    last call (other processes' rows included)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0

    def read_new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < self.offset:
                self.offset = 0  # replaced by a shorter file: read it from the start
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return list(_rows(data[:end].splitlines()))


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created when missing), blocking until it is free."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def async_file_lock(path: str | Path, poll_s: float = 0.05, max_poll_s: float = 0.5):
    """`file_lock` for asyncio code: polls without blocking the event loop (and can be cancelled)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        delay = poll_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(delay)
                delay = min(max_poll_s, delay * 1.5)
        yield
    finally:
        os.close(fd)
