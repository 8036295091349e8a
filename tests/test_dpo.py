"""`enhancer train dpo`: preference pairs from stage-2 traces, and TRL's DPOTrainer on a tiny random model, the
result folded with the SFT adapter into one adapter."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from enhancer.train.dpo import DPOSettings, TracesError, preference_pairs, train_dpo

from conftest import BIN


def _trace(step, simple, detailed, reward):
    return json.dumps({"step": step, "simple_prompt": simple, "detailed_prompt": detailed, "reward": reward})


@pytest.fixture()
def traces(tmp_path):
    rows = [
        _trace(0, "a fox in snow", "A red fox in deep snow at dawn, slow dolly.", 0.9),
        _trace(0, "a fox in snow", "Snow.", 0.2),
        _trace(1, "a fox in snow", "A fox, snow, wide shot.", 0.6),
        _trace(0, "a heron", "A grey heron in reeds at dusk.", 0.55),
        _trace(0, "a heron", "A heron.", 0.5),  # a gap of 0.05: below the margin
        _trace(1, "a kite", "A kite over a beach.", 0.7),  # one rewrite only
        _trace(1, "a kite", "A kite over a beach.", 0.1),  # the same text again: keeps its best reward
        _trace(1, "a boat", "A boat.", None),  # not scored
        '{"step": 2, "simple_prompt": "torn',  # a kill mid-write
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_best_over_worst_per_prompt_above_the_margin(traces):
    pairs, counts = preference_pairs([traces], min_margin=0.1)
    assert [(p.simple, p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("a fox in snow", "A red fox in deep snow at dawn, slow dolly.", "Snow.", 0.7)
    ]
    assert counts == {
        "rows": 8,
        "unscored": 1,
        "unreadable": 1,
        "prompts": 3,
        "single_rewrite": 1,
        "below_margin": 1,
    }
    assert len(preference_pairs([traces], min_margin=0.0)[0]) == 2
    with pytest.raises(TracesError, match="no such traces file"):
        preference_pairs([traces.parent / "missing.jsonl"])


def test_train_dpo_on_a_tiny_model_folds_with_the_sft_adapter(traces, tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    # an SFT adapter with non-zero weights to start from
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    sft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    sft.save_pretrained(tmp_path / "sft")
    settings = DPOSettings(max_steps=2, batch_size=2, learning_rate=1e-2, min_margin=0.0, max_length=512)
    final = train_dpo(str(tiny_model_dir), str(tmp_path / "sft"), [traces], tmp_path / "dpo", settings, log=print)
    with pytest.raises(TracesError, match="fits max_length=64"):  # the instruction alone is longer
        train_dpo(str(tiny_model_dir), None, [traces], tmp_path / "short", DPOSettings(max_length=64, min_margin=0))
    record = json.loads((final / "enhancer.json").read_text())
    assert record["dpo"]["pairs"] == 2 and record["dpo"]["steps"] == 2 and len(record["dpo"]["losses"]) == 2
    assert record["stage"].startswith("stage 2, DPO on 2 best-versus-worst pairs")
    assert len((tmp_path / "dpo" / "pairs.jsonl").read_text().splitlines()) == 2

    from peft import PeftModel

    ids = torch.tensor([[1, 42, 7, 99, 5, 3]])
    with torch.no_grad():
        folded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), final)(ids).logits
        start = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "sft")
        start = start(ids).logits
    assert json.loads((final / "adapter_config.json").read_text())["r"] == 4 + 16  # both LoRAs, stacked
    assert not torch.allclose(folded, start, atol=1e-5)  # DPO moved the policy away from the SFT one


def test_cli_explains_traces_without_pairs(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text(_trace(0, "a fox", "A fox.", 0.5) + "\n")
    result = subprocess.run(
        [str(BIN / "enhancer"), "train", "dpo", "--traces", str(path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "no preference pairs" in result.stderr and "single_rewrite" in result.stderr
