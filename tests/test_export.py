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


@pytest.mark.slow  # the GGUF tests merge the adapter by default (test_the_adapter_is_merged_and_errors_are_clear)
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


def test_ship_embedded_copies_the_adapter_and_writes_its_card(adapter_dir, tmp_path):
    import json

    from enhancer.eval import evaluate, parse_variant
    from enhancer.export.modelcard import model_card, ship_embedded

    with pytest.raises(FileNotFoundError, match="missing enhancer.json, train_metrics.json"):
        ship_embedded(adapter_dir, dest=tmp_path / "assets", log=lambda m: None)
    info = {"prompt_format": "compact", "base_model": "embedded", "pairs": 4, "data_sha256": "ab" * 32, "steps": 3}
    info |= {"sft": {"lora_r": 4, "epochs": 1.0}, "command": "enhancer train sft --recipe r.yaml", "seed": 0}
    (adapter_dir / "enhancer.json").write_text(json.dumps(info))
    (adapter_dir / "train_metrics.json").write_text(json.dumps({"losses": [3.5, 1.25], "eval_loss": 1.5}))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps(
            {"id": "p1", "simple": "a red kite", "keep": ["kite"], "style": None, "quote": [], "kind": "normal"}
        )
        + "\n"
    )
    evaluate([str(prompts)], [parse_variant("raw")], tmp_path / "eval", command="enhancer eval x", log=lambda m: None)
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "stale.safetensors").write_text("old")  # an older adapter's file must not linger

    dest = ship_embedded(adapter_dir, tmp_path / "eval", dest=tmp_path / "assets", log=lambda m: None)
    assert sorted(p.name for p in dest.iterdir()) == [
        "MODEL_CARD.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "enhancer.json",
        "train_metrics.json",
    ]
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == "embedded"
    card = (dest / "MODEL_CARD.md").read_text()
    assert "`enhancer train sft --recipe r.yaml`" in card and "abab" in card and "3.500" in card
    assert "Command: `enhancer eval x` on 1 prompts" in card and "| keep | 1.000" in card
    assert "prompt_format='compact'" in card
    assert "- Stage: stage 1, supervised fine-tuning (LoRA)" in card and "- Stage 2:" not in card

    # a stage-2 adapter (enhancer run writes this record into it): the card names the stage and what it did
    stage2 = info | {"stage": "stage 2, trl_grpo from the stage-1 adapter", "trainer": "trl_grpo"}
    stage2 |= {"rl": {"max_steps": 90, "prompts_per_step": 2, "samples_per_prompt": 8, "learning_rate": 3e-5}}
    stage2 |= {"rewards": ["echo", "keep"], "reward_weights": {"echo": 3.0}, "stage2_data": ["data/stage2/x.jsonl"]}
    stage2 |= {"stage1_adapter": "/runs/sft/adapter"}
    (adapter_dir / "enhancer.json").write_text(json.dumps(stage2))
    card = (ship_embedded(adapter_dir, dest=tmp_path / "assets", log=lambda m: None) / "MODEL_CARD.md").read_text()
    assert "- Stage: stage 2, trl_grpo from the stage-1 adapter" in card
    assert "- Stage 2: `trl_grpo` from that adapter, 90 updates of 2 prompts x 8 rewrites" in card
    assert (
        "- Stage 1 (below it): `enhancer train sft --recipe r.yaml`" in card and "then `make embedded-stage2`" in card
    )

    # a second stage-2 phase started from that stage-2 adapter (enhancer run with adapter: <a stage-2 adapter>): the
    # record keeps the first phase and the SFT adapter both started from, and the card lists both phases in order
    from enhancer.config import RunConfig
    from enhancer.train.orchestrator import _record_stage2

    second = tmp_path / "second"
    second.mkdir()
    config = RunConfig(model="embedded", trainer="trl_grpo", rewards=["keep", "style"], stage2_data=["y.jsonl"])
    config.rl.max_steps = 40
    _record_stage2(second, str(adapter_dir), config, "compact")
    record = json.loads((second / "enhancer.json").read_text())
    assert record["stage"].startswith("stage 2, trl_grpo from the stage-2 adapter (40 updates")
    assert record["started_from"] == str(adapter_dir) and record["earlier_stage2"]["rl"]["max_steps"] == 90
    # the weights it started from, by content: the path may hold another adapter after the next ship
    import hashlib

    weights = hashlib.sha256((adapter_dir / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert record["started_from_sha256"] == weights
    assert record["stage1_adapter_sha256"] is None  # the first phase's record (written by hand above) has none
    assert record["stage1_adapter"] == "/runs/sft/adapter" and record["pairs"] == 4
    card = model_card(record, {"losses": [1.0]}, None)
    first, then = card.index("- Stage 2: `trl_grpo` from that adapter, 90"), card.index("- Stage 2, then: `trl_grpo`")
    assert first < then and "from the adapter above, 40 updates" in card and "on y.jsonl" in card
    # from a DPO adapter: the same, with the DPO line first
    dpo_record = info | {"stage": "stage 2, DPO", "dpo": {"pairs": 7, "traces": ["t.jsonl"], "stage1_adapter": "/sft"}}
    (adapter_dir / "enhancer.json").write_text(json.dumps(dpo_record))
    (second / "enhancer.json").unlink()
    _record_stage2(second, str(adapter_dir), config, "compact")
    record = json.loads((second / "enhancer.json").read_text())
    assert record["stage"].startswith("stage 2, trl_grpo from the stage-2 adapter") and "dpo" not in record
    assert record["stage1_adapter"] == "/sft" and record["earlier_stage2"]["dpo"]["pairs"] == 7
    # a first phase from the SFT adapter names its weights as both the start and stage 1
    (adapter_dir / "enhancer.json").write_text(json.dumps(info))
    (second / "enhancer.json").unlink()
    _record_stage2(second, str(adapter_dir), config, "compact")
    first_phase = json.loads((second / "enhancer.json").read_text())
    assert first_phase["stage1_adapter_sha256"] == first_phase["started_from_sha256"] == weights
    card = model_card(record, {"losses": [1.0]}, None)
    assert card.index("- Stage 2: DPO from that adapter on 7") < card.index("- Stage 2, then: `trl_grpo`")

    info["base_model"] = "/some/other/model"
    (adapter_dir / "enhancer.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="not the embedded model"):
        ship_embedded(adapter_dir, dest=tmp_path / "assets", log=lambda m: None)


def test_the_model_card_reads_issue_5s_bar_from_the_eval_summary():
    from enhancer.export.modelcard import acceptance_table

    def stat(value):
        return {"mean": value}

    summary = {
        "variants": ["raw", "embedded", "base", "baseline"],
        "win_rates": {"embedded": {"base": {"rate": 0.81}, "baseline": {"rate": 0.64}}},
        "means": {"embedded": {"keep": stat(0.93), "style": stat(0.5), "quote": stat(0.875)}},
        "checks": {
            "embedded": {
                "chatter": 0,
                "loop_share": 0.0046,
                "adversarial_video_prompt": 0.9,
                "median_in_budget": True,
            }
        },
    }
    rows = dict(line.split(" | ")[0:3:2] for line in (r.strip("| ") for r in acceptance_table(summary)[2:]))
    assert rows["paired win rate over base (composite)"] == "yes"
    assert rows["paired win rate over baseline (composite)"] == "no"
    assert rows["keep"] == "yes" and rows["style kept"] == "no" and rows["quoted text kept"] == "yes"
    assert rows["outputs with chatter"] == "yes" and rows["median words inside the budget"] == "yes"
    assert acceptance_table({"variants": ["raw"]}) == []
