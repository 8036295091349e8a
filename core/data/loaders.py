"""Load data for training and evaluation: enhancer's JSONL, Hugging Face `datasets`, and the original research
project's JSON formats. A bad row raises `DataError` naming `file:line` (or `file:key`); none is dropped silently.

    pairs = load_pairs(["data/stage1"])               # every *.jsonl under the folder, sorted
    prompts = load_prompts(["data/stage2"])
    rows = load_eval(["data/eval"])
    pairs = load_original_pairs("stage1_pairs.json")  # {"pair_01": {"lay": ..., "elaborate": ...}, ...}
    prompts = load_original_prompts("prompts.json")   # ["a cat ...", ...]
    pairs = load_hf_pairs("path/to/saved_dataset", simple="input", detailed="output")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from enhancer.data.schema import FORMS, SECTIONS, STYLES


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
    form: str = "paragraph"  # how `detailed` is laid out: "structured" or "paragraph" (the "target" key in JSONL)
    style: str | None = None
    negative: str | None = None
    id: str | None = None


@dataclass
class EvalPrompt:
    id: str
    simple: str
    keep: list[str] = field(default_factory=list)
    style: str | None = None
    quote: list[str] = field(default_factory=list)
    kind: str = "normal"
    lang: str = "en"  # the language `simple` is written in; keep words are English whatever it is


@dataclass
class Line:
    where: str  # "file:line"
    data: dict


def jsonl_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    paths = list(paths)
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


def read_lines(paths: Iterable[str | Path], problems: list[str]) -> Iterator[Line]:
    """JSON objects of every non-blank line; unreadable lines go to `problems` as `file:line: ...`."""
    for file in jsonl_files(paths):
        for number, raw in enumerate(file.read_bytes().splitlines(), start=1):
            where = f"{file}:{number}"
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                problems.append(f"{where}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})")
                continue
            except json.JSONDecodeError as error:
                problems.append(f"{where}: invalid JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{where}: expected a JSON object, got {type(row).__name__}")
                continue
            yield Line(where, row)


def _text(row: dict, key: str, where: str, problems: list[str]) -> str | None:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: missing or empty {key!r}")
        return None
    return value.strip()


def guess_form(detailed: str) -> str:
    """ "structured" when the text is labelled sections (Subject:, Camera:, ...), else "paragraph"."""
    labels = {line.split(":", 1)[0].strip() for line in detailed.splitlines() if ":" in line}
    return "structured" if len(labels & set(SECTIONS)) >= 4 else "paragraph"


def make_pair(row: dict, where: str, problems: list[str], simple_key="simple", detailed_key="detailed") -> Pair | None:
    simple = _text(row, simple_key, where, problems)
    detailed = _text(row, detailed_key, where, problems)
    style, target = row.get("style"), row.get("target")
    if style is not None and style not in STYLES:
        problems.append(f"{where}: unknown style {style!r}; valid: {', '.join(STYLES)}")
        return None
    if target is not None and target not in FORMS:
        problems.append(f"{where}: target must be one of {', '.join(FORMS)}, got {target!r}")
        return None
    if not (simple and detailed):
        return None
    return Pair(simple, detailed, target or guess_form(detailed), style, row.get("negative"), row.get("id"))


def load_pairs(paths: Iterable[str | Path]) -> list[Pair]:
    problems: list[str] = []
    pairs = [p for line in read_lines(paths, problems) if (p := make_pair(line.data, line.where, problems))]
    if problems:
        raise DataError(problems)
    return pairs


def load_prompts(paths: Iterable[str | Path]) -> list[str]:
    problems: list[str] = []
    prompts = [t for line in read_lines(paths, problems) if (t := _text(line.data, "simple", line.where, problems))]
    if problems:
        raise DataError(problems)
    return prompts


def load_eval(paths: Iterable[str | Path]) -> list[EvalPrompt]:
    from enhancer.data.schema import check_eval

    problems: list[str] = []
    rows = []
    for line in read_lines(paths, problems):
        found = check_eval(line.data)
        if found:
            problems += [f"{line.where}: {p}" for p in found]
            continue
        data = line.data
        rows.append(
            EvalPrompt(
                data["id"], data["simple"], data["keep"], data["style"], data["quote"], data["kind"],
                data.get("lang") or "en",
            )
        )  # fmt: skip
    if problems:
        raise DataError(problems)
    return rows


# ------------------------------------------------------------------------------ the original project's formats


def _read_json(path: str | Path):
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DataError([f"{path}: not UTF-8 (byte at offset {error.start})"]) from error
    except json.JSONDecodeError as error:
        raise DataError([f"{path}:{error.lineno}: invalid JSON ({error.msg})"]) from error


def load_original_pairs(path: str | Path) -> list[Pair]:
    """The research project's stage-1 shards: {"pair_01": {"lay": simple, "elaborate": detailed}, ...}."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError([f"{path}: expected an object of pair_NN entries, got {type(data).__name__}"])
    problems: list[str] = []
    pairs = []
    for key, row in data.items():
        where = f"{path}:{key}"
        if not isinstance(row, dict):
            problems.append(f"{where}: expected an object with 'lay' and 'elaborate'")
            continue
        pair = make_pair(row, where, problems, simple_key="lay", detailed_key="elaborate")
        if pair:
            pair.id = key
            pairs.append(pair)
    if problems:
        raise DataError(problems)
    return pairs


def load_original_prompts(path: str | Path) -> list[str]:
    """The research project's RL prompts: a JSON list of strings."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataError([f"{path}: expected a JSON list of prompts, got {type(data).__name__}"])
    problems = [
        f"{path}:[{i}]: expected a non-empty string"
        for i, p in enumerate(data)
        if not isinstance(p, str) or not p.strip()
    ]
    if problems:
        raise DataError(problems)
    return [p.strip() for p in data]


# ------------------------------------------------------------------------------------- Hugging Face datasets


def load_hf_pairs(source, split: str = "train", simple: str = "simple", detailed: str = "detailed") -> list[Pair]:
    """Pairs from a `datasets.Dataset`, a folder saved with `save_to_disk`, or local data files (json, csv,
    parquet). Column names are configurable; a missing column or an empty cell is an error naming the row."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        source = source[split]
    if not isinstance(source, datasets.Dataset):
        path = Path(str(source))
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            source = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        elif path.is_file():
            kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix)
            if kind is None:
                raise ValueError(f"{path}: unsupported file type; use .jsonl, .json, .csv or .parquet")
            source = datasets.load_dataset(kind, data_files=str(path), split="train")
        else:
            raise FileNotFoundError(
                f"{source}: not a dataset folder or data file (hub datasets: load them with "
                "datasets.load_dataset and pass the Dataset)"
            )
    missing = [c for c in (simple, detailed) if c not in source.column_names]
    if missing:
        raise DataError([f"dataset: no column(s) {', '.join(missing)}; it has {', '.join(source.column_names)}"])
    problems: list[str] = []
    pairs = [p for i, row in enumerate(source) if (p := make_pair(row, f"dataset[{i}]", problems, simple, detailed))]
    if problems:
        raise DataError(problems)
    return pairs
