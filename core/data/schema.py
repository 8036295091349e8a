"""The rows of enhancer's data and the checks each must pass. One function per split returns the problems of
one row as strings (empty when the row is fine), so loaders and `enhancer data validate` share them.

    stage 1  {"id", "simple", "detailed", "style", "target", "negative"}   data/stage1/*.jsonl
    stage 2  {"id", "simple"}                                            data/stage2/*.jsonl
    eval     {"id", "simple", "keep", "style", "quote", "kind"}           data/eval/*.jsonl

Stage-1 and eval rows may add `"lang"`, the ISO 639-1 code of `simple` (data/stage1/multilingual.jsonl,
data/eval/multilingual.jsonl). A row in another language than "en" keeps its facts translated: its `detailed`
and its `keep` words are English, so they are not looked for in `simple`.
"""

from __future__ import annotations

import json
import re

STYLES = (
    "realistic",
    "cinematic",
    "anime",
    "3d-animation",
    "2d-cartoon",
    "pixel-art",
    "claymation",
    "watercolor",
    "low-poly",
    "film-noir",
)
FORMS = ("structured", "paragraph")
KINDS = ("normal", "edge", "adversarial", "multilingual")  # multilingual: keep words are English translations
SECTIONS = ("Subject", "Action", "Scene", "Camera", "Lens", "Lighting", "Palette", "Motion", "Atmosphere")
OPTIONAL_SECTIONS = ("Audio",)
# Word budgets of `detailed` per form: a structured prompt carries labels, so it runs longer.
LENGTHS = {"structured": (70, 150), "paragraph": (60, 120)}
FIELDS = {
    "stage1": ("id", "simple", "detailed", "style", "target", "negative"),
    "stage2": ("id", "simple"),
    "eval": ("id", "simple", "keep", "style", "quote", "kind"),
}
OPTIONAL_FIELDS = {"stage1": ("lang",), "eval": ("lang",)}


def split_of(path: str) -> str:
    """The split a file belongs to, from its folder name (stage1, stage2, eval)."""
    parts = re.split(r"[\\/]", path)
    for split in FIELDS:
        if split in parts:
            return split
    raise ValueError(f"{path}: cannot tell the split; put the file under a stage1/, stage2/ or eval/ folder")


def quoted(text: str) -> list[str]:
    """Strings the user put in double quotes (straight or curly): text the video must render verbatim.
    A prompt that is itself a JSON object has quotes as syntax, not as text to render: none count."""
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            json.loads(stripped)
            return []
        except ValueError:
            pass
    return [a or b for a, b in re.findall(r'"([^"]+)"|“([^”]+)”', text)]


def _text(row: dict, key: str) -> list[str]:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        return [f"missing or empty {key!r}"]
    return []


def translated(row: dict) -> bool:
    """Whether the row's `simple` is in another language than English (its `lang` says so)."""
    return row.get("lang", "en") != "en"


def _keys(row: dict, split: str) -> list[str]:
    expected, optional = FIELDS[split], OPTIONAL_FIELDS.get(split, ())
    missing = [k for k in expected if k not in row]
    extra = [k for k in row if k not in expected + optional]
    problems = []
    if missing:
        problems.append(f"missing field(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unknown field(s) {', '.join(extra)}; {split} rows have {', '.join(expected + optional)}")
    if "lang" in row and not (isinstance(row["lang"], str) and re.fullmatch(r"[a-z]{2}", row["lang"])):
        problems.append(f"lang {row['lang']!r} is not an ISO 639-1 code (two lowercase letters)")
    return problems


def check_detailed(detailed: str, form: str) -> list[str]:
    """Form and length of a detailed prompt."""
    problems = []
    words = len(detailed.split())
    low, high = LENGTHS[form]
    if not low <= words <= high:
        problems.append(f"{form} detailed prompt has {words} words; expected {low}-{high}")
    if form == "paragraph" and "\n" in detailed.strip():
        problems.append("paragraph detailed prompt has line breaks; write one paragraph")
    if form == "structured":
        labels = [line.split(":", 1)[0].strip() for line in detailed.strip().splitlines() if ":" in line]
        required = [label for label in labels if label not in OPTIONAL_SECTIONS]
        if required != list(SECTIONS):
            problems.append(
                f"structured sections are {', '.join(labels)}; expected {', '.join(SECTIONS)} "
                f"(then optional {', '.join(OPTIONAL_SECTIONS)})"
            )
    return problems


def check_stage1(row: dict) -> list[str]:
    problems = _keys(row, "stage1")
    for key in ("id", "simple", "detailed", "negative"):
        problems += _text(row, key)
    if row.get("style") not in STYLES:
        problems.append(f"unknown style {row.get('style')!r}; valid: {', '.join(STYLES)}")
    if row.get("target") not in FORMS:
        problems.append(f"unknown target {row.get('target')!r}; valid: {', '.join(FORMS)}")
    if problems:
        return problems
    problems += check_detailed(row["detailed"], row["target"])
    for quote in quoted(row["simple"]):
        if quote not in row["detailed"]:
            problems.append(f'quoted text "{quote}" from simple is not verbatim in detailed')
    return problems


def check_stage2(row: dict) -> list[str]:
    return _keys(row, "stage2") + _text(row, "id") + _text(row, "simple")


def check_eval(row: dict) -> list[str]:
    problems = _keys(row, "eval") + _text(row, "id") + _text(row, "simple")
    if problems:
        return problems
    simple = row["simple"].lower()
    keep, quotes = row.get("keep"), row.get("quote")
    if not isinstance(keep, list) or not all(isinstance(k, str) and k for k in keep):
        problems.append("keep must be a list of words")
    elif not translated(row):  # in a translated row the keep words are English and simple is not
        problems += [f"keep word {k!r} does not occur in simple" for k in keep if k.lower() not in simple]
    if not isinstance(quotes, list) or not all(isinstance(q, str) and q for q in quotes):
        problems.append("quote must be a list of strings")
    else:
        problems += [f"quote {q!r} is not verbatim in simple" for q in quotes if q not in row["simple"]]
    if row.get("style") is not None and row.get("style") not in STYLES:
        problems.append(f"unknown style {row.get('style')!r}; valid: {', '.join(STYLES)} or null")
    if row.get("kind") not in KINDS:
        problems.append(f"unknown kind {row.get('kind')!r}; valid: {', '.join(KINDS)}")
    return problems


CHECKS = {"stage1": check_stage1, "stage2": check_stage2, "eval": check_eval}
