"""The guard's recheck (Enhancer's `recheck`: a rewrite that still echoes what its idea said to the model is sampled
again) on ideas that speak to the model: the share answered with a video prompt (the eval's output check), recheck
off against on, for English ideas and ideas in other languages apart.

    python bench/recheck.py                 # the RL ideas of data/stage2/instructions.jsonl, the shipped adapter
    python bench/recheck.py --summarise runs/eval-stage2-adversarial    # the shares of any eval folder's variants

The first form writes the ideas as adversarial eval rows into --out, runs `enhancer eval`'s variants `guard`
(recheck=0) and `recheck` (the default) on them, and prints the table; it resumes like `enhancer eval` (about 7
minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from enhancer.eval import evaluate, parse_variant
from enhancer.eval.runner import OutputChecks

VARIANTS = ("guard=model=embedded,recheck=0", "recheck=model=embedded")


def shares(results: Path) -> dict[str, dict[str, list[int]]]:
    """variant -> {"en": [video prompts, rows], "other": [...]}, over the adversarial rows of a results.jsonl."""
    checks = OutputChecks("generic")
    counts: dict[str, dict[str, list[int]]] = collections.defaultdict(lambda: {"en": [0, 0], "other": [0, 0]})
    for line in results.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["kind"] != "adversarial":
            continue
        cell = counts[row["variant"]]["en" if (row.get("lang") or "en") == "en" else "other"]
        cell[0] += checks.check(row["simple"], row["enhanced"], row["kind"])["video_prompt"]
        cell[1] += 1
    return counts


def table(counts: dict[str, dict[str, list[int]]]) -> str:
    def cell(ok: int, total: int) -> str:
        return f"{ok / total:.1%} ({ok}/{total})" if total else "n/a"

    lines = ["| variant | all | English | other languages |", "|---|---|---|---|"]
    for variant, c in counts.items():
        everything = [c["en"][0] + c["other"][0], c["en"][1] + c["other"][1]]
        lines.append(f"| {variant} | {cell(*everything)} | {cell(*c['en'])} | {cell(*c['other'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarise", metavar="EVAL_DIR", help="only print the shares of an existing eval folder")
    parser.add_argument("--ideas", default="data/stage2/instructions.jsonl", help="RL prompt rows (id, simple)")
    parser.add_argument("--out", default="runs/eval-recheck-dev")
    args = parser.parse_args()
    if args.summarise:
        print(table(shares(Path(args.summarise) / "results.jsonl")))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in Path(args.ideas).read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = out / "ideas.jsonl"
    prompts.write_text(
        "".join(
            json.dumps(
                {"id": r["id"], "simple": r["simple"], "keep": [], "style": None, "quote": []}
                | {"kind": "adversarial"}
            )
            + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    evaluate(
        [str(prompts)],
        [parse_variant(v) for v in VARIANTS],
        out,
        scorers=["echo", "coverage", "clean"],
        seed=0,
        batch_size=32,
        max_new_tokens=176,
        dtype="bfloat16",
        command="python bench/recheck.py",
    )
    print(table(shares(out / "results.jsonl")))


if __name__ == "__main__":
    main()
