"""`enhancer export --adapter DIR --merge OUT`: fold a LoRA adapter into its base model and save a plain
Hugging Face model directory (safetensors + tokenizer), for vLLM, llama.cpp converters and other engines.

    enhancer export --adapter runs/demo/stage1/adapter --merge out/merged             # base from the adapter
    enhancer export --model embedded --adapter runs/demo/stage1/adapter --merge out/merged
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from enhancer import logs


def merge_adapter(adapter: str, out: str, model: str | None = None, dtype: str = "float32", log=logs.info) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from enhancer.models import METADATA_FILE, resolve_model

    adapter_path = Path(adapter)
    config_file = adapter_path / "adapter_config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"--adapter {adapter}: no adapter_config.json there; give a PEFT adapter directory")
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        raise FileExistsError(f"--merge {out}: the folder exists and is not empty; choose a new one")
    base = model or json.loads(config_file.read_text())["base_model_name_or_path"]
    resolved = resolve_model(base, "none" if base == "embedded" else None, log=log)
    log(f"export: merging {adapter} into {resolved.path}")
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(resolved.path, dtype=getattr(torch, dtype)), adapter
    ).merge_and_unload()
    merged.save_pretrained(out_path)
    tokenizer_source = adapter if (adapter_path / "tokenizer_config.json").exists() else resolved.path
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(out_path)
    if (adapter_path / METADATA_FILE).is_file():  # the prompt format the adapter was trained with goes along
        shutil.copy2(adapter_path / METADATA_FILE, out_path / METADATA_FILE)
    (out_path / "enhancer_export.json").write_text(
        json.dumps({"base_model": resolved.path, "adapter": str(adapter_path.resolve())}, indent=2), encoding="utf-8"
    )
    log(f"export: wrote {out_path}")
    return out_path
