"""Batch enhancement of a file: read prompts (.txt, .jsonl, stdin), write one JSON row per input, resume.

Nothing is lost: a line that is not UTF-8, not JSON or has no prompt becomes a status "error" row naming the
file and line, and the other rows go on. Each output row carries `index` (the input row number, from 0), so
`--resume` skips what is done; a last line cut short by a killed run is dropped and redone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from enhancer.contracts import Enhancement
from enhancer.files import append_jsonl, cut_torn_tail, read_jsonl


@dataclass
class InputRow:
    index: int
    prompt: str | None
    location: str  # "file:line"
    error: str | None = None
    row_id: str | None = None


@dataclass
class BatchSummary:
    written: int = 0
    skipped: int = 0
    ok: int = 0
    fallback: int = 0
    error: int = 0

    @property
    def failed_all(self) -> bool:
        return self.written > 0 and self.ok == 0 and self.fallback == 0

    def line(self) -> str:
        return (
            f"enhancer: wrote {self.written} rows ({self.ok} ok, {self.fallback} fallback, {self.error} error); "
            f"{self.skipped} already done"
        )


def read_inputs(path: str) -> Iterator[InputRow]:
    """Rows of a .txt (one prompt a line, blank lines skipped) or .jsonl file ({"prompt": ...}, {"simple": ...}
    or a JSON string per line); `-` reads stdin (JSONL when a line starts with '{' or '"')."""
    if path == "-":
        raw_lines = [line.encode("utf-8", "surrogateescape") for line in sys.stdin]
        name, jsonl = "<stdin>", None
    else:
        file = Path(path)
        if not file.exists():
            raise FileNotFoundError(f"--input {path}: no such file")
        if file.is_dir():
            raise FileNotFoundError(f"--input {path}: is a directory; give a .txt or .jsonl file")
        try:
            raw_lines = file.read_bytes().splitlines()
        except OSError as error:
            raise FileNotFoundError(f"--input {path}: cannot read it ({error.strerror})") from error
        name, jsonl = path, file.suffix.lower() in (".jsonl", ".json", ".ndjson")
    index = 0
    for line_number, raw in enumerate(raw_lines, start=1):
        location = f"{name}:{line_number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield InputRow(
                index,
                None,
                location,
                f"{location}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                "save the file as UTF-8",
            )
            index += 1
            continue
        line = line.rstrip("\r\n")
        is_json = jsonl if jsonl is not None else line.lstrip()[:1] in ("{", '"')
        if not is_json:
            if not line.strip():
                continue  # blank lines separate prompts in .txt files
            yield InputRow(index, line, location)
            index += 1
            continue
        if not line.strip():
            continue
        yield _parse_json_row(index, line, location)
        index += 1


def _parse_json_row(index: int, line: str, location: str) -> InputRow:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        return InputRow(index, None, location, f"{location}: invalid JSON ({error.msg} at column {error.colno})")
    if isinstance(value, str):
        return InputRow(index, value, location)
    if isinstance(value, dict):
        prompt = value.get("prompt", value.get("simple"))
        row_id = value.get("id")
        if isinstance(prompt, str):
            return InputRow(index, prompt, location, row_id=str(row_id) if row_id is not None else None)
        return InputRow(index, None, location, f'{location}: no "prompt" (or "simple") string in this row')
    return InputRow(index, None, location, f"{location}: expected a JSON object or string, got {type(value).__name__}")


def completed_indices(output_path: str) -> set[int]:
    """Indices already written to `output_path`; a torn last line (a killed run) is cut off the file."""
    if output_path == "-" or not Path(output_path).exists():
        return set()
    cut_torn_tail(output_path)  # truncated, never rewritten: the rows before it stay as they are
    done = set()
    for row in read_jsonl(output_path):
        try:
            done.add(int(row["index"]))
        except (ValueError, KeyError, TypeError):
            continue
    return done


def enhance_file(
    enhancer, input_path: str, output_path: str, *, resume: bool, options: dict, chunk_size: int = 16
) -> BatchSummary:
    if output_path != "-" and Path(output_path).exists() and not resume:
        existing = Path(output_path).read_text(encoding="utf-8", errors="replace").strip()
        if existing:
            raise FileExistsError(f"--output {output_path} exists: add --resume to continue it, or remove it")
    done = completed_indices(output_path) if resume else set()
    rows = list(read_inputs(input_path))
    todo = [row for row in rows if row.index not in done]
    summary = BatchSummary(skipped=len(rows) - len(todo))
    to_stdout = output_path == "-"
    if not to_stdout:
        Path(output_path).touch()  # the file exists from the start, rows or not
    with tqdm(total=len(todo), desc="enhancing", unit="prompt", file=sys.stderr, disable=None) as progress:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            readable = [row for row in chunk if row.error is None]
            results = enhancer.enhance([row.prompt for row in readable], **options) if readable else []
            by_index = {row.index: result for row, result in zip(readable, results, strict=True)}
            records = []
            for row in chunk:
                result = by_index.get(row.index) or Enhancement(
                    prompt="", enhanced="", status="error", message=row.error or "", target=options["target"]
                )
                if result.status == "error" and row.location not in result.message:
                    result.message = f"{row.location}: {result.message}"
                records.append({"index": row.index, **({"id": row.row_id} if row.row_id else {}), **result.to_dict()})
                summary.written += 1
                setattr(summary, result.status, getattr(summary, result.status) + 1)
            if to_stdout:
                sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
                sys.stdout.flush()
            else:
                append_jsonl(output_path, records)  # the chunk's rows whole, after cutting a torn line
            progress.update(len(chunk))
    return summary
