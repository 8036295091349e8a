"""Read `{"simple", "detailed", ...}` pairs (stage 1) and `{"simple"}` prompts (stage 2) from JSONL files or folders.

pairs = load_pairs(["data/stage1"])     # every *.jsonl under the folder, sorted
prompts = load_prompts(["data/stage2"])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

FORMS = ("structured", "paragraph")


class DataError(ValueError):
    """Rows that could not be read; `problems` holds one `file:line: problem` string each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad data row(s):\n  {shown}{more}")


@dataclass
class Pair:
    simple: str
    detailed: str
    target: str = "paragraph"  # the form of `detailed`: "structured" or "paragraph"
    style: str | None = None
    negative: str | None = None
    id: str | None = None


def _files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.rglob("*.jsonl")))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"data path {path}: no such file or folder")
    if not files:
        raise FileNotFoundError(f"no .jsonl files under {', '.join(map(str, paths))}")
    return files


def _rows(paths: Iterable[str | Path], problems: list[str]) -> Iterator[tuple[str, dict]]:
    for file in _files(paths):
        for number, raw in enumerate(file.read_bytes().splitlines(), start=1):
            where = f"{file}:{number}"
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append(f"{where}: not UTF-8")
                continue
            except json.JSONDecodeError as error:
                problems.append(f"{where}: invalid JSON ({error.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{where}: expected a JSON object")
                continue
            yield where, row


def _text(row: dict, key: str, where: str, problems: list[str]) -> str | None:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: missing or empty {key!r}")
        return None
    return value.strip()


def load_pairs(paths: Iterable[str | Path]) -> list[Pair]:
    problems: list[str] = []
    pairs = []
    for where, row in _rows(paths, problems):
        simple, detailed = _text(row, "simple", where, problems), _text(row, "detailed", where, problems)
        target = row.get("target", "paragraph")
        if target not in FORMS:
            problems.append(f"{where}: target must be one of {', '.join(FORMS)}, got {target!r}")
            continue
        if simple and detailed:
            pairs.append(Pair(simple, detailed, target, row.get("style"), row.get("negative"), row.get("id")))
    if problems:
        raise DataError(problems)
    return pairs


def load_prompts(paths: Iterable[str | Path]) -> list[str]:
    problems: list[str] = []
    prompts = [text for where, row in _rows(paths, problems) if (text := _text(row, "simple", where, problems))]
    if problems:
        raise DataError(problems)
    return prompts
