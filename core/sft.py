"""Stage 1: supervised fine-tuning with LoRA through TRL's SFTTrainer and PEFT.

Rows become prompt/completion conversations built by `enhancer.prompts.build_messages`, the code inference
uses, so training and serving never drift; the loss covers the completion only (TRL's default for
prompt/completion data). A run killed mid-way resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from enhancer.data import Pair
from enhancer.prompts import build_messages

FORM_TARGETS = {"structured": "sora", "paragraph": "generic"}  # which profile's instruction each form trains


def to_conversations(pairs: list[Pair]) -> list[dict]:
    return [
        {
            "prompt": build_messages(pair.simple, FORM_TARGETS[pair.target]),
            "completion": [{"role": "assistant", "content": pair.detailed}],
        }
        for pair in pairs
    ]


def train_sft(
    model_path: str,
    pairs: list[Pair],
    config,
    out_dir: str | Path,
    *,
    seed: int = 0,
    use_cpu: bool | None = None,
    log=print,
) -> Path:
    """Train a LoRA adapter on `pairs`; returns the adapter directory (`out_dir/adapter`)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir)
    adapter_dir = out_dir / "adapter"
    if (adapter_dir / "adapter_config.json").exists():
        log(f"stage 1: adapter already trained in {adapter_dir}; skipping")
        return adapter_dir
    if not pairs:
        raise ValueError("stage 1 has no training pairs")
    rows = to_conversations(pairs)
    random.Random(seed).shuffle(rows)
    n_eval = min(int(len(rows) * config.eval_fraction), config.max_eval_rows) if len(rows) >= 10 else 0
    train_rows, eval_rows = rows[n_eval:], rows[:n_eval]
    use_cpu = (not torch.cuda.is_available()) if use_cpu is None else use_cpu

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32 if use_cpu else torch.bfloat16)
    args = SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        max_steps=config.max_steps or -1,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        logging_steps=1 if 0 < config.max_steps <= 20 else 5,  # short runs log every step, so the loss shows
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if eval_rows else "no",
        eval_steps=20,
        max_length=config.max_length,
        seed=seed,
        report_to=config.report_to,
        use_cpu=use_cpu,
        bf16=(not use_cpu) if config.bf16 is None else config.bf16,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora,
    )
    resume = any((out_dir / "checkpoints").glob("checkpoint-*"))
    log(f"stage 1: SFT on {len(train_rows)} pairs ({len(eval_rows)} held out){'; resuming' if resume else ''}")
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    metrics = dict(result.metrics)
    if eval_rows:
        metrics.update(trainer.evaluate())
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    (adapter_dir / "train_metrics.json").write_text(
        json.dumps({"losses": losses, **metrics}, indent=2), encoding="utf-8"
    )
    log(
        f"stage 1: done; loss {losses[0] if losses else float('nan'):.3f} -> {losses[-1] if losses else float('nan'):.3f}"
    )
    return adapter_dir
