"""RL step benchmark: wall time per stage-2 update with a video backend of fixed latency, when the step's videos
are made one at a time (the original research project's serial loop: generate, wait, score, next) against the
core's concurrent rollout (every video of the step in flight at once). Same trainer, batch, prompts and seed.

    .venv/bin/python bench/rl.py                                  # tiny random policy, latency 2 s, batch 8
    .venv/bin/python bench/rl.py --model embedded --latency 5     # the embedded model as the policy

The backend is the synthetic renderer with `latency_s` (an asyncio sleep standing in for a remote model's queue
and render time). With a tiny random policy the figures isolate the loop's scheduling; with the embedded model
they include CPU generation and the update. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_policy(directory: Path) -> str:
    """A 2-layer random Llama with the embedded model's tokenizer: generation and updates cost almost nothing."""
    from enhancer.testing import tiny_causal_lm

    return str(tiny_causal_lm(directory))


def run_case(model: str, adapter: str | None, trainer: str, concurrency: int, options, tmp: Path) -> dict:
    from enhancer import run
    from enhancer.config import RunConfig

    out = tmp / f"{trainer}-c{concurrency}"
    config = RunConfig.from_dict(
        dict(
            model=model,
            adapter=adapter,
            backend="synthetic",
            backend_options={"latency_s": options.latency},
            rewards=["text"],
            trainer=trainer,
            trainer_options={"num_ppo_epochs": 1} if trainer == "trl_ppo" else {},
            stage1_data=[str(REPO / "data" / "stage1" / "starter.jsonl")],
            stage2_data=[str(REPO / "data" / "stage2")],
            out=str(out),
            sft={"max_steps": 1, "batch_size": 2, "gradient_accumulation": 1, "max_length": 384},
            rl={
                "max_steps": options.steps,
                "prompts_per_step": options.batch // 2,
                "samples_per_prompt": 2,
                "max_new_tokens": options.max_new_tokens,
                "video_seconds": 1.0,
                "video_size": "64x48",
                "concurrency": concurrency,
            },
        )
    )
    with contextlib.redirect_stdout(sys.stderr):  # the trainers' own logs stay out of the table
        summary = run(config, log=lambda m: None)
    rows = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    # steady state: the time between one step's rewards and the next's (model loading and saving left out)
    finished = sorted({row["step"]: row["time"] for row in rows}.items())
    gaps = [b - a for (_, a), (_, b) in zip(finished, finished[1:], strict=False)]
    return {
        "trainer": trainer,
        "concurrency": concurrency,
        "steps": len(summary["steps"]),
        "videos": len(rows),
        "seconds_per_step": round(sum(gaps) / len(gaps), 2),
        "stage2_seconds": summary["stage2_seconds"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (random 2-layer policy) or 'embedded'")
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per video at the backend")
    parser.add_argument("--batch", type=int, default=8, help="rewrites (and videos) per update; even")
    parser.add_argument("--steps", type=int, default=4, help="updates per case (at least 2)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--trainers", default="trl_ppo,trl_grpo")
    options = parser.parse_args()
    if options.steps < 2:
        parser.error("--steps must be at least 2: the figure is the time between updates")
    if options.batch < 2 or options.batch % 2:
        parser.error("--batch must be an even number >= 2 (prompts x 2 samples)")

    rows = []
    with tempfile.TemporaryDirectory(prefix="enhancer-bench-rl-") as tmp:
        tmp = Path(tmp)
        if options.model == "tiny":
            model, adapter = tiny_policy(tmp / "tiny"), None  # stage 1 runs one step to make an adapter
        else:
            model, adapter = options.model, ("embedded" if options.model == "embedded" else None)
        for trainer in options.trainers.split(","):
            for concurrency in (1, options.batch):
                started = time.perf_counter()
                rows.append(run_case(model, adapter, trainer, concurrency, options, tmp))
                rows[-1]["wall_s"] = round(time.perf_counter() - started, 1)
                print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)

    print(
        f"RL step, backend latency {options.latency} s, batch {options.batch}, {options.steps} updates, policy "
        f"{options.model}, {options.max_new_tokens} new tokens; {platform.machine()}, {date.today()}\n"
    )
    print("| trainer | videos in flight | s / update (steady) | speed-up | stage 2 wall s |")
    print("|---|---|---|---|---|")
    for row in rows:
        serial = next(r for r in rows if r["trainer"] == row["trainer"] and r["concurrency"] == 1)
        speedup = serial["seconds_per_step"] / row["seconds_per_step"]
        print(
            f"| {row['trainer']} | {row['concurrency']} | {row['seconds_per_step']} | {speedup:.2f}x "
            f"| {row['stage2_seconds']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
