"""The trl_ppo trainer: the reward-model bridge read through TRL's own get_reward, a two-stage run on a tiny
random model with the synthetic backend, the folded adapter, and resuming from the plugin's checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from enhancer import run
from enhancer.config import RunConfig
from enhancer.contracts import Sample
from enhancer.plugins.synthetic import SyntheticBackend
from enhancer.plugins.trl_ppo import pad_token_for, rollout_reward_model
from enhancer.prompts import build_messages
from enhancer.scoring import KeepScorer
from enhancer.train.rollout import Rollout

from conftest import REPO


def _tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    pad_token_for(tokenizer)
    return tokenizer


def test_pad_token_is_not_the_end_of_turn_token(tiny_model_dir):
    tokenizer = _tokenizer(tiny_model_dir)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id  # SmolLM2 pads with <|im_end|>, which prompts contain
    prompt = tokenizer.apply_chat_template(build_messages("a fox"), add_generation_prompt=True, tokenize=False)
    assert tokenizer.pad_token not in prompt


def test_bridge_gives_trl_the_rollouts_rewards(tiny_model_dir, tmp_path):
    from trl.experimental.utils import get_reward

    tokenizer = _tokenizer(tiny_model_dir)
    simple = ["three red kites over a beach", "a heron in the reeds"]
    enhanced = ["Three red kites over a beach at dawn, wide shot.", "A grey heron stands still."]
    queries, texts = {}, []
    for prompt in simple:
        text = tokenizer.apply_chat_template(build_messages(prompt), add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        queries[tuple(ids)] = prompt
        texts.append(ids)
    # what PPO hands the reward model: left-padded queries, then responses cut at the stop token and padded
    context = max(len(ids) for ids in texts)
    answers = [tokenizer(e, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for e in enhanced]
    width = max(len(a) for a in answers) + 3
    pad = tokenizer.pad_token_id
    rows = [[pad] * (context - len(q)) + q + a + [pad] * (width - len(a)) for q, a in zip(texts, answers, strict=True)]
    rollout = Rollout(
        SyntheticBackend(out_dir=str(tmp_path / "videos")), [KeepScorer()], out_dir=tmp_path, size="32x32"
    )
    bridge = rollout_reward_model(tokenizer, queries, rollout, log=lambda m: None)

    _, scores, _ = get_reward(bridge, torch.tensor(rows), pad, context)

    expected = KeepScorer().score([Sample(s, e) for s, e in zip(simple, enhanced, strict=True)])
    assert expected == [1.0, 0.5]  # "reeds" dropped
    assert scores.tolist() == pytest.approx(expected)
    traces = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert [(t["simple_prompt"], t["detailed_prompt"]) for t in traces] == list(zip(simple, enhanced, strict=True))
    with pytest.raises(ValueError, match="not one of the tokenised RL prompts"):
        get_reward(bridge, torch.tensor([[5, 6, 7, 8, pad]]), pad, 3)


def _config(tiny_model_dir, out, **rl):
    return RunConfig.from_dict(
        dict(
            model=str(tiny_model_dir),
            backend="synthetic",
            rewards=["text"],
            trainer="trl_ppo",
            trainer_options={"save_steps": 1, "num_ppo_epochs": 1},
            stage1_data=[str(REPO / "data" / "stage1" / "starter.jsonl")],
            stage2_data=[str(REPO / "data" / "stage2")],
            out=str(out),
            sft={
                "max_steps": 2,
                "batch_size": 2,
                "gradient_accumulation": 1,
                "max_length": 256,
                "learning_rate": 5e-3,
            },
            rl={
                "max_steps": 2,
                "prompts_per_step": 1,
                "samples_per_prompt": 2,
                "max_new_tokens": 8,
                "learning_rate": 1e-3,
                "video_seconds": 0.5,
                "video_size": "32x32",
                **rl,
            },
        )
    )


def _logits(model_dir, adapters, ids):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for adapter in adapters:  # each merged in turn: the SFT policy, then the PPO LoRA trained on top of it
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with torch.no_grad():
        return model(ids).logits


def test_trl_ppo_trains_folds_and_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    summary = run(_config(tiny_model_dir, out))
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traces] == [0, 0, 1, 1]
    assert all(set(t["rewards"]) == {"text"} and 0 <= t["reward"] <= 1 for t in traces)
    assert [s["step"] for s in summary["steps"]] == [0, 1]
    checkpoints = out / "stage2" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-1", "step-2"]

    # the saved adapter is the SFT adapter and the PPO LoRA folded into one, on the base model
    final = out / "stage2" / "adapter"
    metadata = json.loads((final / "enhancer.json").read_text())
    assert metadata["stage2"] == {"trainer": "trl_ppo", "updates": 2, "stage1_adapter": summary["stage1_adapter"]}
    ids = torch.tensor([[1, 42, 7, 99, 5, 3]])
    folded = _logits(tiny_model_dir, [final], ids)
    stacked = _logits(tiny_model_dir, [summary["stage1_adapter"], checkpoints / "step-2" / "policy"], ids)
    sft_only = _logits(tiny_model_dir, [summary["stage1_adapter"]], ids)
    assert torch.allclose(folded, stacked, atol=1e-4)
    assert not torch.allclose(folded, sft_only, atol=1e-4)  # PPO changed the policy

    # a rerun with more steps resumes after update 2: no step twice, checkpoint numbering continues
    run(_config(tiny_model_dir, out, max_steps=3))
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traces] == [0, 0, 1, 1, 2, 2]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2", "step-3"]  # keeps the newest two
    assert json.loads((final / "enhancer.json").read_text())["stage2"]["updates"] == 3


# slow-marked both: resuming after a kill runs by default in test_multiprocess (a killed rank) and test_sft
@pytest.mark.parametrize(
    "trainer", [pytest.param("trl_ppo", marks=pytest.mark.slow), pytest.param("trl_grpo", marks=pytest.mark.slow)]
)
def test_a_run_killed_mid_step_resumes_without_repeating_work(trainer, tiny_model_dir, tmp_path, cli_env):
    import os
    import signal
    import subprocess
    import time

    import yaml

    from conftest import BIN

    out = tmp_path / "run"
    config = _config(tiny_model_dir, out, max_steps=4, max_videos=20, concurrency=1).to_dict()
    config["trainer"] = trainer
    config["trainer_options"] = {"save_steps": 1, **({"num_ppo_epochs": 1} if trainer == "trl_ppo" else {})}
    config["backend_options"] = {"latency_s": 0.4}  # a step's two videos take ~0.8 s: room to land mid-step
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config), encoding="utf-8")
    traces = out / "traces.jsonl"

    first = subprocess.Popen(
        [str(BIN / "enhancer"), "run", "--recipe", str(recipe)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        rows = traces.read_text().splitlines() if traces.exists() else []
        if any(json.loads(row)["step"] >= 1 for row in rows if row.strip()):
            break  # step 1's rollout is written; its update (or step 2's videos) is running
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "summary.json").exists()

    result = subprocess.run(
        [str(BIN / "enhancer"), "run", "--resume", "--out", str(out)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stderr  # from the checkpoint of update 1 or later, not from scratch
    rows = [json.loads(line) for line in traces.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3]  # the planned 4 updates, each step once
    assert json.loads((out / "summary.json").read_text())["steps"][-1]["step"] == 3
    charges = [json.loads(line)["key"] for line in (out / "video-cache" / "ledger.jsonl").read_text().splitlines()]
    assert len(charges) == len(set(charges)) <= 20  # no video made twice, and the cap held across the kill
