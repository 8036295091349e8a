"""Scale-out benchmark: a GRPO update of `enhancer run` on 2 CPU processes (torchrun, gloo) against 1 process, at
the same global batch (the update's rewrites are split over the processes), same recipe, prompts and seed.

    .venv/bin/python bench/scale.py                              # the embedded model + its adapter, 4 rewrites
    .venv/bin/python bench/scale.py --latency 3                  # a video backend that takes 3 s per video
    .venv/bin/python bench/scale.py --model tiny --steps 8       # a tiny random policy: the machinery alone

One process gets every core (torch's default threads); each of the 2 gets half (torchrun sets
OMP_NUM_THREADS=1), so on a 2-core machine the comparison is "the same cores, split by process or by thread".
The figure is the steady-state time per update: the median gap between one step's rewards and the next's in
traces.jsonl (model loading, the first step's warm-up and the final save left out). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_case(processes: int, recipe: Path, out: Path) -> dict:
    command = [str(BIN / "enhancer"), "run", "--recipe", str(recipe), "--out", str(out)]
    if processes > 1:
        command = [str(BIN / "torchrun"), "--nproc_per_node", str(processes), "--master_port", str(_port())]
        command += ["-m", "enhancer.cli", "run", "--recipe", str(recipe), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    finished = sorted({row["step"]: row["time"] for row in rows}.items())
    gaps = [b - a for (_, a), (_, b) in zip(finished, finished[1:], strict=False)]
    summary = json.loads((out / "summary.json").read_text())
    return {
        "processes": processes,
        "updates": len(finished),
        "rewrites": len(rows),
        "seconds_per_update": round(statistics.median(gaps), 2),
        "stage2_seconds": summary["stage2_seconds"],
        "mean_reward": round(statistics.mean(r["reward"] for r in rows if r["reward"] is not None), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="'embedded' (with its adapter) or 'tiny'")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per update")
    parser.add_argument("--samples", type=int, default=2, help="rewrites per prompt (a GRPO group)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the synthetic backend takes per video")
    parser.add_argument("--json", help="also write the results here")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="enhancer-bench-scale-") as tmp:
        tmp = Path(tmp)
        if options.model == "tiny":
            from enhancer.testing import tiny_causal_lm

            model, adapter = str(tiny_causal_lm(tmp / "tiny")), None
        else:
            model, adapter = "embedded", "embedded"
        recipe = tmp / "recipe.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "model": model,
                    "adapter": adapter,
                    "backend": "synthetic",
                    "backend_options": {"latency_s": options.latency},
                    "rewards": ["keep", "coverage", "budget", "clean"],
                    "trainer": "trl_grpo",
                    "trainer_options": {"save_steps": 1000},  # no checkpoint inside the timed steps
                    "stage1_data": [str(REPO / "data" / "stage1" / "starter.jsonl")],
                    "stage2_data": [str(REPO / "data" / "stage2")],
                    "sft": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1},
                    "rl": {
                        "max_steps": options.steps,
                        "prompts_per_step": options.prompts,
                        "samples_per_prompt": options.samples,
                        "max_new_tokens": options.max_new_tokens,
                        "video_seconds": 1.0,
                        "video_size": "64x48",
                    },
                }
            )
        )
        results = [run_case(n, recipe, tmp / f"run-{n}") for n in (1, 2)]

    one, two = results
    print(
        f"GRPO, {options.model} policy, {options.prompts * options.samples} rewrites per update "
        f"(max_new_tokens {options.max_new_tokens}), video latency {options.latency} s, {options.steps} updates; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {date.today()}\n"
    )
    print("| processes | s per update (median) | stage 2 s | mean reward |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['processes']} | {row['seconds_per_update']} | {row['stage2_seconds']} | {row['mean_reward']} |")
    print(f"\n2 processes / 1 process, time per update: {two['seconds_per_update'] / one['seconds_per_update']:.2f}")
    if options.json:
        Path(options.json).write_text(json.dumps({"options": vars(options), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
