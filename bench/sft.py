"""SFT throughput benchmark: training tokens/s of the CPU recipe with padded, length-grouped and packed batches,
and with the full (`chat`) or one-line (`compact`) instruction in every training prompt.

    .venv/bin/python bench/sft.py                            # embedded model, data/stage1, the CPU recipe
    .venv/bin/python bench/sft.py --steps 6 --case compact/packed --case compact/padded

Each case trains for --steps optimizer steps through the real trainer (`enhancer.train.sft.build_trainer`); the first
step is warm-up and not timed. "Real tokens" are tokens of pairs, not padding. Tokens/s alone would flatter the
`chat` format, whose long instruction is cheap tokens nobody needs, so the table also gives the hours one epoch of
data/stage1 takes, which is what a user waits for. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

CASES = ("chat/padded", "compact/padded", "compact/grouped", "compact/packed")


def epoch_tokens(tokenizer, pairs, prompt_format: str, max_length: int) -> int:
    from enhancer.train.sft import to_conversations

    total = 0
    for row in to_conversations(pairs, prompt_format):
        text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        total += min(len(tokenizer(text, add_special_tokens=False)["input_ids"]), max_length)
    return total


def run_case(case: str, model_path: str, pairs, base_config, steps: int, seed: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from enhancer.train.sft import build_trainer

    prompt_format, batching = case.split("/")
    config = replace(
        base_config,
        prompt_format=prompt_format,
        batching=batching,
        max_steps=steps,
        eval_fraction=0.0,
        save_steps=10_000,
        report_to="none",
    )
    marks: list[tuple[float, int]] = []
    counted = {"tokens": 0}

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), counted["tokens"]))

    with tempfile.TemporaryDirectory() as tmp:
        trainer, tokenizer, _, _ = build_trainer(
            model_path, pairs, config, Path(tmp), seed=seed, use_cpu=not torch.cuda.is_available(), log=lambda m: None
        )
        collate = trainer.data_collator

        def counting(features):
            batch = collate(features)
            mask = batch.get("attention_mask")
            counted["tokens"] += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
            return batch

        trainer.data_collator = counting
        trainer.add_callback(StepClock())
        trainer.train()
        total = epoch_tokens(tokenizer, pairs, prompt_format, config.max_length)
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    rate = (n1 - n0) / (t1 - t0)
    return {
        "case": case,
        "timed_steps": len(marks) - 1,
        "seconds_per_step": round((t1 - t0) / (len(marks) - 1), 2),
        "tokens_per_second": round(rate, 1),
        "epoch_tokens": total,
        "epoch_hours": round(total / rate / 3600, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/sft/smollm2-135m-cpu.yaml")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per case (the first is warm-up)")
    parser.add_argument("--case", action="append", choices=CASES, help="FORMAT/BATCHING; default: all")
    parser.add_argument("--bf16", choices=["true", "false", "recipe"], default="recipe")
    parser.add_argument("--json", help="also write the results here")
    options = parser.parse_args()
    if options.steps < 2:
        parser.error("--steps must be at least 2: the first step is warm-up")

    import torch

    from enhancer.config import RunConfig
    from enhancer.data import load_pairs
    from enhancer.models import resolve_model

    config = RunConfig.from_yaml(options.recipe)
    sft = config.sft if options.bf16 == "recipe" else replace(config.sft, bf16=options.bf16 == "true")
    model_path = resolve_model(config.model, "none" if config.model == "embedded" else None, log=lambda m: None).path
    pairs = load_pairs(config.stage1_data)
    results = []
    for case in options.case or CASES:
        print(f"bench: {case} ...", file=sys.stderr, flush=True)
        results.append(run_case(case, model_path, pairs, sft, options.steps, config.seed))
        print(f"bench: {json.dumps(results[-1])}", file=sys.stderr, flush=True)

    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(
        f"SFT throughput, {options.recipe} (batch {sft.batch_size} x {sft.gradient_accumulation}, bf16 {sft.bf16}), "
    )
    print(f"{len(pairs)} pairs, {machine}, {date.today()}; `python bench/sft.py --steps {options.steps}`\n")
    print("| format/batching | s/step | real tokens/s | tokens in one epoch | hours per epoch |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['case']} | {r['seconds_per_step']} | {r['tokens_per_second']} | {r['epoch_tokens']:,} | "
            f"{r['epoch_hours']} |"
        )
    if options.json:
        Path(options.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
