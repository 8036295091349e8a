"""How often rewrites copy the whole idea, and why one variant's held-out answers fail where another's pass.

    python bench/idea_copies.py runs/eval-stage2-instructions/results.jsonl
    python bench/idea_copies.py runs/eval-stage2-adversarial/results.jsonl --lost grpo grpo-mix

A copy: the idea, lower-cased and without its final stop, found whole in the rewrite (ideas of four words or more;
normal and edge prompts, or every prompt of a file with only adversarial ones). --lost A B lists the prompts whose
rewrite by A is a video prompt (the eval's output check) and by B is not, with B's echo problems.
"""

from __future__ import annotations

import argparse
import collections
import json

from enhancer.eval.runner import OutputChecks
from enhancer.scoring.instructions import echo_problems, split_idea


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--lost", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.results, encoding="utf-8") if line.strip()]
    judged = [r for r in rows if r["status"] == "ok" and r["kind"] != "adversarial"] or rows
    seen, copies = collections.Counter(), collections.Counter()
    for row in judged:
        idea = row["simple"].strip().rstrip(".?").lower()
        seen[row["variant"]] += 1
        copies[row["variant"]] += len(idea.split()) >= 4 and idea in row["enhanced"].lower()
    print("whole-idea copies:", {v: f"{copies[v]}/{seen[v]}" for v in seen})
    if args.lost:
        checks = OutputChecks("generic")
        passed = {
            (r["variant"], r["id"]): checks.check(r["simple"], r["enhanced"], r.get("kind"))["video_prompt"]
            for r in rows
        }
        first, second = args.lost
        problems = collections.Counter()
        for row in rows:
            if row["variant"] == second and passed.get((first, row["id"])) and not passed[(second, row["id"])]:
                found = echo_problems(row["simple"], row["enhanced"], split_idea(row["simple"]))
                problems.update(found)
                print(f"{row['id']}: {', '.join(found) or 'no echo problem'} | {row['simple'][:70]}")
        print("problems among them:", dict(problems))


if __name__ == "__main__":
    main()
