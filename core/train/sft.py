"""Stage 1: supervised fine-tuning with LoRA through TRL's SFTTrainer and PEFT.

Rows become prompt/completion conversations built by `enhancer.prompts.build_messages`, the code inference
uses, so training and serving never drift; the loss covers the completion only (TRL's default for
prompt/completion data). A run killed mid-way resumes from its newest complete checkpoint.

    enhancer train sft --recipe recipes/sft/smollm2-135m-cpu.yaml                                    # one process
    torchrun --nproc_per_node 2 -m enhancer.cli train sft --recipe recipes/sft/smollm2-135m-cpu.yaml  # 2 on a CPU
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m enhancer.cli train sft --recipe R  # GPUs

Under several processes `batch_size` is per process (the effective batch grows with them), transformers splits
the data, and the main process alone writes the adapter and its metadata.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import time
from pathlib import Path

from enhancer import logs
from enhancer.data import Pair
from enhancer.models import METADATA_FILE
from enhancer.prompts import build_messages
from enhancer.train.checkpoints import resume_point
from enhancer.train.distributed import ProcessContext

FORM_PROFILES = {"structured": "sora", "paragraph": "generic"}  # which profile's instruction each form trains


def data_hash(pairs: list[Pair]) -> str:
    """sha256 over the pairs in order: the same data gives the same hash wherever its files lie."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps([pair.simple, pair.detailed, pair.form], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def batching_args(batching: str) -> dict:
    """SFTConfig arguments for each `sft.batching` (bench/sft.py measures what each costs on a CPU)."""
    if batching == "grouped":
        return {"train_sampling_strategy": "group_by_length"}
    if batching == "packed":
        # best-fit packing into max_length rows; position_ids restart at every pair, and transformers builds a
        # block-diagonal mask from them, so pairs packed together do not attend to each other (tests/test_sft.py)
        return {"packing": True, "packing_strategy": "bfd"}
    return {}


def count_too_long(tokenizer, rows: list[dict], max_length: int) -> int:
    """Rows longer than max_length; the trainer cuts them, and a cut completion loses its end-of-turn token."""
    too_long = 0
    for row in rows:
        text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        too_long += len(tokenizer(text, add_special_tokens=False)["input_ids"]) > max_length
    return too_long


def to_conversations(pairs: list[Pair], prompt_format: str = "chat") -> list[dict]:
    return [
        {
            "prompt": build_messages(pair.simple, FORM_PROFILES[pair.form], prompt_format),
            "completion": [{"role": "assistant", "content": pair.detailed}],
        }
        for pair in pairs
    ]


def build_trainer(
    model_path: str, pairs: list[Pair], config, out_dir: Path, *, seed: int, use_cpu: bool, log=logs.info
):
    """The SFTTrainer for `pairs` (also used by bench/sft.py); returns (trainer, tokenizer, n_train, n_eval)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = to_conversations(pairs, config.prompt_format)
    random.Random(seed).shuffle(rows)
    n_eval = min(int(len(rows) * config.eval_fraction), config.max_eval_rows) if len(rows) >= 10 else 0
    train_rows, eval_rows = rows[n_eval:], rows[:n_eval]

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    too_long = count_too_long(tokenizer, rows, config.max_length)
    if too_long:
        log(f"stage 1: {too_long} of {len(rows)} pairs exceed max_length {config.max_length} tokens and will be cut")
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
        eval_steps=config.eval_steps,
        max_length=config.max_length,
        seed=seed,
        report_to=config.report_to,
        use_cpu=use_cpu,
        bf16=(not use_cpu) if config.bf16 is None else config.bf16,
        disable_tqdm=True,
        **batching_args(config.batching),
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
    return trainer, tokenizer, len(train_rows), len(eval_rows)


def train_sft(
    model_path: str,
    pairs: list[Pair],
    config,
    out_dir: str | Path,
    *,
    seed: int = 0,
    use_cpu: bool | None = None,
    metadata: dict | None = None,
    log=logs.info,
    process: ProcessContext | None = None,
) -> Path:
    """Train a LoRA adapter on `pairs`; returns the adapter directory (`out_dir/adapter`), which also holds
    enhancer.json: the prompt format inference must use, the data hash, wall time, machine and `metadata`.
    Under several processes every one calls it; the main one writes the files, the others wait for them."""
    import torch

    process = process or ProcessContext()
    out_dir = Path(out_dir)
    adapter_dir = out_dir / "adapter"
    if (adapter_dir / METADATA_FILE).exists():  # written last: the adapter is whole
        log(f"stage 1: adapter already trained in {adapter_dir}; skipping")
        return adapter_dir
    if not pairs:
        raise ValueError("stage 1 has no training pairs")
    started = time.perf_counter()
    use_cpu = (not torch.cuda.is_available()) if use_cpu is None else use_cpu
    trainer, tokenizer, n_train, n_eval = build_trainer(
        model_path, pairs, config, out_dir, seed=seed, use_cpu=use_cpu, log=log
    )
    step, checkpoint = resume_point(out_dir / "checkpoints", process, log)
    log(
        f"stage 1: SFT on {n_train} pairs ({n_eval} held out)"
        + (f"; resuming at step {step} from {checkpoint}" if checkpoint else "")
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if n_eval:
        metrics.update(trainer.evaluate())
    trainer.save_model(str(adapter_dir))  # the main process writes; transformers knows which one that is
    if not process.is_main:
        process.barrier()  # wait for the main process's files below
        return adapter_dir
    tokenizer.save_pretrained(str(adapter_dir))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    (adapter_dir / "train_metrics.json").write_text(
        json.dumps({"losses": losses, **metrics}, indent=2), encoding="utf-8"
    )
    info = {
        "prompt_format": config.prompt_format,
        "base_model": model_path,
        "pairs": len(pairs),
        "data_sha256": data_hash(pairs),
        "sft": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "steps": trainer.state.global_step,
        "wall_seconds_this_run": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {platform.system()}, "
        + (torch.cuda.get_device_name(0) if not use_cpu else f"CPU, {torch.get_num_threads()} threads"),
        "torch": torch.__version__,
        "processes": process.world_size,
        **(metadata or {}),
    }
    (adapter_dir / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    process.barrier()
    log(
        f"stage 1: done; loss {losses[0] if losses else float('nan'):.3f} -> {losses[-1] if losses else float('nan'):.3f}"
    )
    return adapter_dir
