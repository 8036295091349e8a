"""`enhancer train dpo --traces traces.jsonl`: preference training on rewards already paid for.

Every stage-2 run leaves traces.jsonl: simple prompt, enhanced prompt, reward (a video was made and scored for
each). Per simple prompt, the best and the worst rewrite become a preference pair when their rewards differ by
at least `min_margin`; TRL's DPOTrainer then trains a fresh LoRA on the SFT policy (stage-1 adapter merged in,
so DPO's reference is the SFT policy) and the result is folded with the stage-1 adapter into one adapter, as
trl_ppo does. The expensive part of RL, the videos and their scores, is reused instead of paid again (the idea
of VPO's offline preference stage).

    enhancer train dpo --traces runs/rl/traces.jsonl --out runs/dpo                                  # one process
    torchrun --nproc_per_node 2 -m enhancer.cli train dpo --traces runs/rl/traces.jsonl --out runs/dpo   # two

It checkpoints every `save_steps` and a rerun into the same OUT resumes from the newest complete checkpoint.
Under several processes `batch_size` is per process and the main process alone writes files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from enhancer import logs
from enhancer.files import read_jsonl
from enhancer.train.checkpoints import resume_point
from enhancer.train.distributed import ProcessContext


@dataclass
class PreferencePair:
    simple: str
    chosen: str
    rejected: str
    margin: float


class TracesError(ValueError):
    """A traces file that gives no usable preference pairs."""


def preference_pairs(paths: list[str | Path], min_margin: float = 0.1) -> tuple[list[PreferencePair], dict]:
    """Best versus worst rewrite per simple prompt, over every trace row with a reward; rows without one, torn
    lines and identical rewrites are skipped. Returns the pairs and counts of what was skipped and why."""
    by_prompt: dict[str, dict[str, float]] = {}
    counts = {"rows": 0, "unscored": 0, "unreadable": 0}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise TracesError(f"{path}: no such traces file (stage 2 writes OUT/traces.jsonl)")
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        rows = read_jsonl(path)
        counts["unreadable"] += len(lines) - len(rows)  # torn or not JSON objects
        for row in rows:
            try:
                simple, detailed, reward = row["simple_prompt"], row["detailed_prompt"], row.get("reward")
            except KeyError:
                counts["unreadable"] += 1
                continue
            counts["rows"] += 1
            if reward is None or not isinstance(detailed, str) or not detailed.strip():
                counts["unscored"] += 1
                continue
            rewrites = by_prompt.setdefault(simple, {})
            rewrites[detailed] = max(float(reward), rewrites.get(detailed, float("-inf")))
    pairs = []
    counts.update(prompts=len(by_prompt), single_rewrite=0, below_margin=0)
    for simple, rewrites in by_prompt.items():
        if len(rewrites) < 2:
            counts["single_rewrite"] += 1
            continue
        ranked = sorted(rewrites.items(), key=lambda item: item[1])
        (worst, low), (best, high) = ranked[0], ranked[-1]
        if high - low < min_margin:
            counts["below_margin"] += 1
            continue
        pairs.append(PreferencePair(simple, best, worst, round(high - low, 4)))
    return pairs, counts


@dataclass
class DPOSettings:
    """`enhancer train dpo`'s settings (the command's flags come from these fields)."""

    beta: float = field(default=0.1, metadata={"help": "DPO's beta: how far the policy may move from the SFT one."})
    learning_rate: float = field(default=5e-6, metadata={"help": "Learning rate of the new LoRA."})
    max_steps: int = field(default=0, metadata={"help": "Optimizer steps; 0: `epochs` passes over the pairs."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs when max_steps is 0."})
    batch_size: int = field(default=4, metadata={"help": "Pairs per process per step."})
    lora_r: int = field(default=16, metadata={"help": "Rank of the new LoRA (folded with the SFT one at the end)."})
    lora_alpha: int = field(default=32, metadata={"help": "Scale of the LoRA update (alpha / r = 2)."})
    max_length: int = field(
        default=512, metadata={"help": "Longest prompt + rewrite in tokens; longer pairs left out."}
    )
    min_margin: float = field(default=0.1, metadata={"help": "Least reward gap between a pair's best and worst."})
    save_steps: int = field(default=20, metadata={"help": "Checkpoint every N steps; a rerun resumes there."})

    def __post_init__(self):
        from enhancer.config import coerce_numbers

        coerce_numbers(self, "dpo.")
        for name in ("beta", "learning_rate", "batch_size", "lora_r", "lora_alpha", "max_length", "save_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"dpo.{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0) or self.min_margin < 0:
            raise ValueError("dpo: max_steps >= 0 (with epochs > 0 when it is 0) and min_margin >= 0")


def train_dpo(
    model_path: str,
    adapter: str | None,
    traces: list[str | Path],
    out: str | Path,
    settings: DPOSettings | None = None,
    *,
    target: str = "generic",
    seed: int = 0,
    metadata: dict | None = None,
    log=logs.info,
    process: ProcessContext | None = None,
) -> Path:
    """Train on the preference pairs of `traces`; returns OUT/adapter (folded with `adapter` when given).
    Under several processes every one calls it; the main one writes the files, the others wait for them."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from enhancer.models import METADATA_FILE, read_metadata, weights_sha256
    from enhancer.prompts import build_messages
    from enhancer.train.adapters import fold_adapters, merged_policy

    settings = settings or DPOSettings()
    process = process or ProcessContext()
    out = Path(out)
    pairs, counts = preference_pairs(traces, settings.min_margin)
    if not pairs:
        raise TracesError(
            f"no preference pairs in {', '.join(map(str, traces))}: {counts}; a pair needs two different scored "
            f"rewrites of one prompt whose rewards differ by at least min_margin={settings.min_margin}"
        )
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "pairs.jsonl.partial"
        partial.write_text("".join(json.dumps(p.__dict__, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
        partial.replace(out / "pairs.jsonl")
    log(f"dpo: {len(pairs)} preference pairs from {counts['rows']} trace rows ({counts})")

    prompt_format = (read_metadata(adapter).get("prompt_format") if adapter else None) or "chat"
    rows = [
        {
            "prompt": build_messages(p.simple, target, prompt_format),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    use_cpu = not torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = merged_policy(model_path, adapter, torch.float32 if use_cpu else torch.bfloat16)
    args = DPOConfig(
        output_dir=str(out / "checkpoints"),
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        max_steps=settings.max_steps if settings.max_steps > 0 else -1,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        max_length=settings.max_length,
        logging_steps=1,
        save_steps=settings.save_steps,
        save_total_limit=2,
        seed=seed,
        report_to="none",
        use_cpu=use_cpu,
        bf16=not use_cpu,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    started = time.perf_counter()
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora
    )
    kept = len(trainer.train_dataset)
    if kept < len(rows):  # TRL drops pairs that do not fit max_length
        log(f"dpo: {len(rows) - kept} of {len(rows)} pairs do not fit max_length={settings.max_length}; left out")
    if kept == 0:
        raise TracesError(f"no preference pair fits max_length={settings.max_length} tokens; raise it")
    step, checkpoint = resume_point(out / "checkpoints", process, log)
    if checkpoint:
        log(f"dpo: resuming at step {step} from {checkpoint}")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final = out / "adapter"
    if not process.is_main:
        process.barrier()  # the main process folds and writes the adapter
        return final
    fold_adapters(trainer.model, adapter, final, model_path)
    tokenizer.save_pretrained(str(final))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    record = {
        **(read_metadata(adapter) if adapter else {}),
        **(metadata or {}),
        "prompt_format": prompt_format,
        "stage": f"stage 2, DPO on {len(pairs)} best-versus-worst pairs of stage-2 traces, from the stage-1 adapter",
        "dpo": {
            **settings.__dict__,
            "pairs": len(pairs),
            "counts": counts,
            "traces": [str(t) for t in traces],
            "stage1_adapter": adapter,
            "stage1_adapter_sha256": weights_sha256(adapter),
            "steps": result.global_step,
            "processes": process.world_size,
            "losses": losses,
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    }
    (final / METADATA_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    process.barrier()
    log(f"dpo: {result.global_step} steps, loss {losses[0] if losses else '?'} -> {losses[-1] if losses else '?'}")
    return final
