"""`enhancer data stats`: counts, lengths and diversity of enhancer's data, written to data/CARD.md."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from pathlib import Path

from enhancer.data.loaders import read_lines
from enhancer.data.schema import split_of

HOW_MADE = """\
## How the data was made

Every stage-1 pair was written for this project, one at a time, by LLM writing agents working to a written
brief (data/README.md sums it up): real-user style inputs (short, lowercase, typos, numbers, colours, quoted
text, camera hints, negations, other languages, already-detailed prompts, prompt injections and off-task
inputs), and detailed prompts that keep every fact of the input, add shot, camera move, lens, lighting,
palette, motion and atmosphere in words that fit the style, in either labelled sections (the form Sora and Veo
prompts take) or one paragraph (the form Wan, LTX-Video, CogVideoX and HunyuanVideo read). No row was
assembled by code from templates or fragment lists. A revision (2026-12-02) had agents rewrite the 1,236 pairs
whose detailed prompt dropped words of its simple one (synonyms, left-out actions) or took a style the simple
one never asked for (its simple prompt now names the style), and write 140 pairs with quoted text; the one
code step replaced 46 misspelt words the agents had copied into detailed prompts by their correct spelling,
from a list an agent made. After the retrain, 178 pairs whose simple prompt names a realistic or a cinematic look
(named-realistic.jsonl, named-cinematic.jsonl) were added for the style the adapter kept least. `enhancer data
validate data/` checks the schema, lengths, kept quotes, counts,
words and style, and duplicates and near-duplicates (MiniLM cosine > 0.92) within and across splits.
Stage-2 prompts and the annotated eval prompts were written the same way and are disjoint from stage 1, except
stage2/instructions.jsonl: ideas carrying an instruction for the model, assembled by a seeded script from
instructions, topics and scenes written for it (data/README.md); eval/adversarial.jsonl, its held-out test, was
written by hand before any training on it.
`enhancer data synth` can grow the data with a teacher model; such rows carry an id starting with "synth".
"""


def looks_non_english(text: str) -> bool:
    from enhancer.data.validate import FOREIGN_MARKERS

    words = re.findall(r"\w+", text.lower())
    non_latin = any(ord(ch) > 0x24F and ch.isalpha() for ch in text)
    return non_latin or bool(FOREIGN_MARKERS.intersection(words))


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (1.0 = no n-gram repeats)."""
    grams = [
        tuple(words[i : i + n]) for words in (t.lower().split() for t in texts) for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


def collect(paths: list[str]) -> dict:
    problems: list[str] = []
    rows = {"stage1": [], "stage2": [], "eval": []}
    for line in read_lines(paths, problems):
        rows[split_of(str(Path(line.where.rsplit(":", 1)[0]).resolve()))].append(line.data)
    if problems:
        raise ValueError("unreadable rows; run `enhancer data validate` first:\n" + "\n".join(problems[:10]))
    return rows


def card(paths: list[str]) -> str:
    rows = collect(paths)
    pairs = rows["stage1"]
    detailed = [r["detailed"] for r in pairs]
    out = ["# enhancer data card", "", "Written by `enhancer data stats`; do not edit by hand.", ""]
    out += ["## Splits", "", "| split | rows |", "|---|---|"]
    out += [f"| {split} | {len(items)} |" for split, items in rows.items()]
    out += [
        "",
        "## Stage 1 pairs by style and target",
        "",
        "| style | structured | paragraph | total |",
        "|---|---|---|---|",
    ]
    by_style = Counter((r["style"], r["target"]) for r in pairs)
    for style in sorted({s for s, _ in by_style}, key=lambda s: -sum(v for (k, _), v in by_style.items() if k == s)):
        structured, paragraph = by_style[(style, "structured")], by_style[(style, "paragraph")]
        out.append(f"| {style} | {structured} | {paragraph} | {structured + paragraph} |")
    out.append(
        f"| **all** | {sum(v for (_, t), v in by_style.items() if t == 'structured')} | "
        f"{sum(v for (_, t), v in by_style.items() if t == 'paragraph')} | {len(pairs)} |"
    )

    out += ["", "## Lengths in words", "", "| text | min | median | p90 | max |", "|---|---|---|---|---|"]
    series = {
        "stage 1 simple": [len(r["simple"].split()) for r in pairs],
        "stage 1 detailed, structured": [len(r["detailed"].split()) for r in pairs if r["target"] == "structured"],
        "stage 1 detailed, paragraph": [len(r["detailed"].split()) for r in pairs if r["target"] == "paragraph"],
        "stage 2 simple": [len(r["simple"].split()) for r in rows["stage2"]],
        "eval simple": [len(r["simple"].split()) for r in rows["eval"]],
    }
    for name, values in series.items():
        if values:
            out.append(
                f"| {name} | {min(values)} | {statistics.median(values):g} | {_percentile(values, 0.9)} | "
                f"{max(values)} |"
            )
    simple_words = series["stage 1 simple"]
    if pairs:
        foreign = sum(1 for r in pairs if looks_non_english(r["simple"]))
        out += [
            "",
            f"Stage-1 simple prompts not in English (estimated: non-Latin script or another language's "
            f"function words): {foreign} ({foreign / len(pairs):.1%}).",
        ]
    if simple_words:
        buckets = Counter("1-2" if n <= 2 else "3-15" if n <= 15 else "16+" for n in simple_words)
        out += [
            "",
            "Stage-1 simple prompts by length: "
            + ", ".join(
                f"{k} words {buckets[k]} ({buckets[k] / len(simple_words):.0%})" for k in ("1-2", "3-15", "16+")
            ),
        ]

    out += ["", "## Diversity of stage-1 detailed prompts", "", "| measure | value |", "|---|---|"]
    for n in (1, 2, 3):
        out.append(f"| distinct-{n} | {distinct_n(detailed, n):.3f} |")
    openings = Counter(" ".join(t.lower().split()[:5]) for t in detailed)
    if openings:
        top, count = openings.most_common(1)[0]
        out.append(
            f'| most common five-word opening | "{top}": {count} of {len(detailed)} ({count / len(detailed):.1%}) |'
        )
    labelled = Counter(r["kind"] for r in rows["eval"])
    if labelled:
        out += ["", "## Eval prompts by kind", "", "| kind | rows |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in sorted(labelled.items())]
        styled = sum(1 for r in rows["eval"] if r["style"])
        quoted = sum(1 for r in rows["eval"] if r["quote"])
        out += ["", f"{styled} eval prompts name a style; {quoted} carry quoted text to render."]
    out += ["", HOW_MADE]
    return "\n".join(out)


def write_card(paths: list[str], out: str | Path) -> Path:
    out = Path(out)
    out.write_text(card(paths), encoding="utf-8")
    return out
