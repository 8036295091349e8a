"""`enhancer data validate PATH...`: every problem in enhancer's data files as `file:line: problem`.

Checks: the row schema of its split (stage1/, stage2/, eval/ from the folder name), form and length of
detailed prompts, quoted text, numbers, content words and style of the simple prompt kept in the detailed one
(a pair that drops them teaches the model to drop them), duplicate ids, duplicate and near-duplicate `simple` prompts
(MiniLM cosine > 0.92) within and across splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from enhancer.data.loaders import Line, read_lines
from enhancer.data.schema import CHECKS, split_of, translated

NEAR_DUPLICATE = 0.92
DEFAULT_STYLES = ("realistic", "cinematic")  # what a rewrite may choose when the user names no style
NUMBER_WORDS = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "hundred": "100",
}


@dataclass
class Report:
    files: int
    rows: dict[str, int]
    problems: list[str]

    def summary(self) -> str:
        counts = ", ".join(f"{split} {n}" for split, n in sorted(self.rows.items()))
        return f"{sum(self.rows.values())} rows ({counts}) in {self.files} files: {len(self.problems)} problem(s)"


def _normal(text: str) -> str:
    """Case and punctuation folded; a prompt of emoji or symbols only is kept as it is (folding would empty it)."""
    folded = re.sub(r"[^\w]+", " ", text.lower()).strip()
    return folded or text.strip()


# Function words of other languages: where they occur, English number words are not numbers ("du four" is an oven).
FOREIGN_MARKERS = frozenset(
    "le la les du des une qui et el los las del que y der das und ein eine il lo che di uma os da".split()
)  # not "die", "do", "um": English words too


def numbers_in(text: str) -> set[str]:
    """Counts a rewrite must keep, as digits: "three" and "3" are the same count."""
    words = re.findall(r"[\w]+", text.lower())
    english = not FOREIGN_MARKERS.intersection(words)
    return {NUMBER_WORDS.get(w, w) for w in words if w.isdigit() or (english and w in NUMBER_WORDS)}


def facts_dropped(row: dict) -> list[str]:
    """What a stage-1 pair loses of its simple prompt, judged as the eval scorers judge it: content words (up to
    a plural ending; a corrected spelling counts), and the style; plus a detailed prompt in a non-default style the user never asked for."""
    from enhancer.contracts import Sample
    from enhancer.scoring.text import StyleScorer, content_words, dropped, style_asked

    problems = []
    # a translated pair (`lang` other than "en") keeps the facts in English words, not in the words of simple; nor
    # do the style names (English) show in simple when the user named the style in their own language
    foreign = translated(row)
    missing = set() if foreign else dropped(content_words(row["simple"]), row["detailed"])
    if missing:
        problems.append(f"word(s) of simple missing in detailed: {', '.join(sorted(missing))}")
    asked = style_asked(Sample(row["simple"], row["detailed"]))
    if asked is not None and StyleScorer().score([Sample(row["simple"], row["detailed"], style=asked)]) == [0.0]:
        problems.append(f"simple asks for {asked} but detailed never names it")
    elif asked is None and not foreign and row.get("style") not in (None, *DEFAULT_STYLES):
        problems.append(
            f"detailed is {row['style']} but simple never asks for it: name the style in simple, "
            "or the model learns to impose styles"
        )
    return problems


def validate(paths: list[str], near_duplicate: float | None = NEAR_DUPLICATE) -> Report:
    problems: list[str] = []
    lines: list[tuple[str, Line]] = []
    files = set()
    for line in read_lines(paths, problems):
        file = line.where.rsplit(":", 1)[0]
        files.add(file)
        split = split_of(str(Path(file).resolve()))
        lines.append((split, line))
        problems += [f"{line.where}: {p}" for p in CHECKS[split](line.data)]
        if (
            split == "stage1"
            # off-task inputs carry numbers that are instructions ("repeat it 500 times"), not facts to keep
            and not str(line.data.get("id", "")).startswith("offtask-")
            and isinstance(line.data.get("simple"), str)
            and isinstance(line.data.get("detailed"), str)
        ):
            lost = numbers_in(line.data["simple"]) - numbers_in(line.data["detailed"])
            if lost:
                problems.append(f"{line.where}: count(s) {', '.join(sorted(lost))} from simple missing in detailed")
            problems += [f"{line.where}: {p}" for p in facts_dropped(line.data)]

    first_id: dict[str, str] = {}
    first_simple: dict[str, str] = {}
    texts: list[str] = []
    where: list[str] = []
    for split, line in lines:
        row_id, simple = line.data.get("id"), line.data.get("simple")
        if isinstance(row_id, str):
            if row_id in first_id:
                problems.append(f"{line.where}: duplicate id {row_id!r} (first at {first_id[row_id]})")
            first_id.setdefault(row_id, line.where)
        if isinstance(simple, str) and simple.strip():
            key = _normal(simple)
            if key in first_simple:
                problems.append(f"{line.where}: duplicate simple prompt (first at {first_simple[key]})")
                continue
            first_simple[key] = line.where
            if not re.search(r"\w", simple):
                continue  # emoji or symbols only: MiniLM maps them all alike, so only exact duplicates count
            texts.append(simple)
            where.append(f"{split}|{line.where}")

    if near_duplicate is not None:
        from enhancer.data.embeddings import embed, similar_pairs

        for i, j, cosine in similar_pairs(embed(texts), near_duplicate):
            split_i, at_i = where[i].split("|", 1)
            split_j, at_j = where[j].split("|", 1)
            scope = "across splits" if split_i != split_j else "near-duplicate"
            problems.append(f"{at_j}: {scope}: simple is {cosine:.2f} similar to {at_i} ({texts[i]!r})")

    rows: dict[str, int] = {}
    for split, _ in lines:
        rows[split] = rows.get(split, 0) + 1
    return Report(len(files), rows, sorted(problems, key=_sort_key))


def _sort_key(problem: str):
    file, _, rest = problem.partition(":")
    number = rest.split(":", 1)[0]
    return (file, int(number) if number.isdigit() else 0, problem)
