"""LoRA adapters across stages. Stage 2 (PPO, DPO) trains a fresh LoRA on the SFT policy with the stage-1 adapter
merged in, so the trainer's reference model (the same network with the new LoRA switched off) is the SFT policy;
`fold_adapters` then stacks both LoRAs into one adapter on the base model."""

from __future__ import annotations

import shutil
from pathlib import Path


def merged_policy(model_path: str, adapter: str | None, dtype):
    """The base model with the stage-1 adapter merged into its weights (a plain transformers model)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def fold_adapters(trained, sft_adapter: str | None, out: Path, base_path: str) -> None:
    """Save `trained` (a PeftModel whose LoRA was trained on the merged SFT policy, see `merged_policy`) folded
    with the stage-1 adapter into one adapter on the base model at `base_path`. PEFT's "cat" combination stacks
    the two: the ranks add up and the weight update is exactly the sum of both, so the result loads on the base
    with plain `PeftModel.from_pretrained`. Without a stage-1 adapter, the trained LoRA alone."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    if not sft_adapter:
        trained.save_pretrained(str(out))
        return
    staging = out.parent / f".{out.name}-trained-lora"
    trained.save_pretrained(str(staging))
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    both = PeftModel.from_pretrained(base, sft_adapter, adapter_name="sft")
    both.load_adapter(str(staging), adapter_name="trained")
    both.add_weighted_adapter(["sft", "trained"], [1.0, 1.0], adapter_name="folded", combination_type="cat")
    both.set_adapter("folded")
    both.delete_adapter("sft")
    both.delete_adapter("trained")
    both.save_pretrained(str(out / ".folded"))
    # PEFT writes a non-default adapter into a subfolder named after it; lift its files into `out`
    for file in (out / ".folded" / "folded").iterdir():
        shutil.move(str(file), out / file.name)
    shutil.rmtree(out / ".folded")
    shutil.rmtree(staging, ignore_errors=True)
