"""`enhancer train sft`: LoRA weights change and the loss falls on a tiny random model; a killed run resumes."""

from __future__ import annotations

import json
import shutil
import subprocess

from safetensors.torch import load_file

from conftest import BIN, REPO


def _train(tiny_model_dir, out, steps, extra=()):
    # four pairs and a batch of four: every step sees the same batch, so the loss can only fall by learning
    data = out.parent / "pairs.jsonl"
    data.write_text("".join((REPO / "data/stage1/starter.jsonl").read_text().splitlines(keepends=True)[:4]))
    recipe = out.parent / "sft.yaml"
    recipe.write_text(
        f"model: {tiny_model_dir}\nstage1_data: [{data}]\nout: {out}\nseed: 0\n"
        "sft:\n  batch_size: 4\n  gradient_accumulation: 1\n  learning_rate: 1.0e-2\n  max_length: 256\n"
        "  save_steps: 2\n"
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


def test_a_killed_sft_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_model_dir, out, 2).returncode == 0
    checkpoints = out / "stage1" / "checkpoints"
    assert (checkpoints / "checkpoint-2").exists()
    shutil.rmtree(out / "stage1" / "adapter")  # killed after the checkpoint, before the final save
    resumed = _train(tiny_model_dir, out, 4)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    state = json.loads((checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == [1, 2, 3, 4]  # steps 1-2 from the first run, 3-4 after the resume: none trained twice
