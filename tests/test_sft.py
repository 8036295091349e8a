"""`enhancer train sft`: LoRA weights change and the loss falls on a tiny random model; a killed run resumes."""

from __future__ import annotations

import json
import shutil
import subprocess

from safetensors.torch import load_file

from conftest import BIN, REPO


def _train(tiny_model_dir, out, steps, extra=(), sft_extra=""):
    # four pairs and a batch of four: every step sees the same batch, so the loss can only fall by learning
    data = out.parent / "pairs.jsonl"
    data.write_text("".join((REPO / "data/stage1/starter.jsonl").read_text().splitlines(keepends=True)[:4]))
    recipe = out.parent / "sft.yaml"
    recipe.write_text(
        f"model: {tiny_model_dir}\nstage1_data: [{data}]\nout: {out}\nseed: 0\n"
        "sft:\n  batch_size: 4\n  gradient_accumulation: 1\n  learning_rate: 1.0e-2\n  max_length: 256\n"
        "  save_steps: 2\n" + sft_extra
    )
    return subprocess.run(
        [str(BIN / "enhancer"), "train", "sft", "--recipe", str(recipe), "--max-steps", str(steps), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sft_changes_lora_weights_and_lowers_the_loss(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = _train(tiny_model_dir, out, 8)
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = out / "stage1" / "adapter"
    assert result.stdout.strip().splitlines()[-1] == str(adapter)  # trainer logs come before it
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any(float(t.abs().sum()) > 0 for name, t in weights.items() if "lora_B" in name)  # B starts at zero
    losses = json.loads((adapter / "train_metrics.json").read_text())["losses"]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.05
    assert (out / "config.yaml").exists() and "max_steps: 8" in (out / "config.yaml").read_text()
    info = json.loads((adapter / "enhancer.json").read_text())
    assert info["prompt_format"] == "chat" and info["steps"] == 8 and info["pairs"] == 4
    assert len(info["data_sha256"]) == 64 and info["command"].startswith("enhancer train sft --recipe")


def test_a_compact_packed_run_records_its_prompt_format_and_inference_uses_it(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = _train(tiny_model_dir, out, 2, extra=("--batching", "packed"), sft_extra="  prompt_format: compact\n")
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = out / "stage1" / "adapter"
    assert json.loads((adapter / "enhancer.json").read_text())["prompt_format"] == "compact"
    assert json.loads((adapter / "enhancer.json").read_text())["sft"]["batching"] == "packed"

    from enhancer.enhance import Enhancer

    trained = Enhancer.load(str(tiny_model_dir), adapter=str(adapter), max_new_tokens=8, log=lambda m: None)
    assert trained.prompt_format == "compact"
    assert Enhancer.load(str(tiny_model_dir), adapter=str(adapter), prompt_format="chat").prompt_format == "chat"
    assert Enhancer.load(str(tiny_model_dir), max_new_tokens=8).prompt_format == "chat"  # no adapter, no metadata


def test_packed_pairs_do_not_attend_to_each_other(tiny_model_dir):
    """Packing puts several pairs in one row with position_ids restarting at each; the attention must keep them
    apart (transformers builds a block-diagonal mask from the position_ids), or packed training would learn from
    the wrong context. The second pair's logits must be the same packed or alone."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    first, second = torch.arange(5, 25).unsqueeze(0), torch.arange(40, 52).unsqueeze(0)
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(20), torch.arange(12)]).unsqueeze(0)
    with torch.no_grad():  # use_cache=False as in training: with a cache, transformers does not look for packing
        alone = model(input_ids=second, use_cache=False).logits
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[:, 20:]
        leaky = model(input_ids=packed, use_cache=False).logits[:, 20:]  # one sequence: the second pair sees the first
    assert torch.allclose(alone, together, atol=1e-4)
    assert not torch.allclose(alone, leaky, atol=1e-4)  # the check can fail: context does change the logits


def test_a_killed_sft_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_model_dir, out, 2).returncode == 0
    checkpoints = out / "stage1" / "checkpoints"
    assert (checkpoints / "checkpoint-2").exists()
    shutil.rmtree(out / "stage1" / "adapter")  # killed after the checkpoint, before the final save
    # and two checkpoints cut short by kills mid-save: one with a torn trainer_state.json, one without it
    for number, state in ((3, '{"global_step": 3, "log_hi'), (4, None)):
        shutil.copytree(checkpoints / "checkpoint-2", checkpoints / f"checkpoint-{number}")
        (checkpoints / f"checkpoint-{number}" / "trainer_state.json").unlink()
        if state:
            (checkpoints / f"checkpoint-{number}" / "trainer_state.json").write_text(state)
    resumed = _train(tiny_model_dir, out, 4)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step 2 from {checkpoints / 'checkpoint-2'}" in resumed.stderr
    for number in (3, 4):
        assert f"checkpoint {checkpoints / f'checkpoint-{number}'} is incomplete" in resumed.stderr
        assert (checkpoints / "incomplete" / f"checkpoint-{number}").is_dir()  # set aside, not deleted
    state = json.loads((checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == [1, 2, 3, 4]  # steps 1-2 from the first run, 3-4 after the resume: none trained twice
