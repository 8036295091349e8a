"""`enhancer export --merge`: the merged model computes what base + adapter computes, and loads without PEFT."""

from __future__ import annotations

import subprocess

import pytest
import torch

from conftest import BIN


@pytest.fixture()
def adapter_dir(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    # init_lora_weights=False starts B non-zero, so the adapter really changes the model
    peft_model = get_peft_model(
        base,
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    path = tmp_path / "adapter"
    peft_model.save_pretrained(path)
    return path


def test_merged_model_matches_base_plus_adapter(tiny_model_dir, adapter_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    result = subprocess.run(
        [str(BIN / "enhancer"), "export", "--adapter", str(adapter_dir), "--merge", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (out / "adapter_config.json").exists()

    tokens = torch.tensor([[1, 20, 300, 4000, 77, 9]])
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, adapter_dir).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = with_adapter(tokens).logits
        assert torch.allclose(merged(tokens).logits, expected, atol=1e-4)
        assert not torch.allclose(plain(tokens).logits, expected, atol=1e-4)  # the adapter mattered

    again = subprocess.run(
        [str(BIN / "enhancer"), "export", "--adapter", str(adapter_dir), "--merge", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "not empty" in again.stderr
    missing = subprocess.run(
        [str(BIN / "enhancer"), "export", "--adapter", str(tmp_path), "--merge", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no adapter_config.json" in missing.stderr
