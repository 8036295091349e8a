"""The full two-stage loop, offline: stage 1 SFT (TRL + PEFT) on a tiny random model, stage 2 through stub
plugins loaded the way a one-off plugin is (`plugins: [stub_plugins]`), checking what every hook received."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from enhancer import run
from enhancer.config import RunConfig
from enhancer.contracts import Sample
from enhancer.registry import PluginError, UnknownPluginError
from enhancer.scoring import KeepScorer
from enhancer.video import read_frames

from conftest import BIN, REPO
from stub_plugins import known_score


def _config(tiny_model_dir: Path, out: Path, **overrides) -> RunConfig:
    values = dict(
        model=str(tiny_model_dir),
        backend="stub_video",
        rewards=["stub_score", "keep"],
        reward_weights={"stub_score": 3.0, "keep": 1.0},
        trainer="stub_trainer",
        plugins=["stub_plugins"],
        stage1_data=[str(REPO / "data" / "stage1")],
        stage2_data=[str(REPO / "data" / "stage2")],
        out=str(out),
        sft={"max_steps": 3, "batch_size": 4, "gradient_accumulation": 1, "max_length": 256, "learning_rate": 5e-3},
        rl={"max_steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "learning_rate": 1e-2},
    )
    values.update(overrides)
    return RunConfig.from_dict(values)


def test_two_stage_loop_offline(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    summary = run(_config(tiny_model_dir, out))

    # stage 1: a real LoRA adapter whose B matrices (initialised to zero by PEFT) moved, and a falling loss
    adapter = Path(summary["stage1_adapter"])
    weights = load_file(adapter / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().sum()) > 0 for t in lora_b)
    metrics = json.loads((adapter / "train_metrics.json").read_text())
    assert metrics["train_loss"] > 0

    # stage 2: the trainer got the stage-1 adapter and the RL prompts
    record = json.loads((out / "stub_trainer.json").read_text())
    assert record["policy"]["adapter"] == str(adapter)
    rl_prompts = [
        json.loads(line)["simple"]
        for file in sorted((REPO / "data/stage2").glob("*.jsonl"))
        for line in file.read_text().splitlines()
        if line.strip()
    ]
    assert record["dataset"] == rl_prompts
    assert record["changed"] is True
    assert Path(summary["checkpoint"], "adapter_model.safetensors").exists()
    # the stage-2 adapter carries the prompt format its policy was trained with, and says which stage made it
    stage2 = json.loads(Path(summary["checkpoint"], "enhancer.json").read_text())
    assert stage2["prompt_format"] == json.loads((adapter / "enhancer.json").read_text())["prompt_format"]
    assert stage2["stage"].startswith("stage 2, stub_trainer from the stage-1 adapter")
    assert stage2["stage1_adapter"] == str(adapter) and stage2["rewards"] == summary["rewards"]
    assert (
        Path(summary["checkpoint"], "train_metrics.json").read_text() == (adapter / "train_metrics.json").read_text()
    )

    # the rollout: one trace per sample, rewards = the weighted mean of the scorers, real mp4 files
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 2 * 2 * 2
    assert [t["step"] for t in traces] == [0, 0, 0, 0, 1, 1, 1, 1]
    backend_calls = [
        json.loads(line) for line in (out / "videos" / "stub_backend_calls.jsonl").read_text().splitlines()
    ]
    assert {c["prompt"] for c in backend_calls} == {t["detailed_prompt"] for t in traces}
    keep = KeepScorer()
    for trace, step_completion in zip(traces, [c for s in record["steps"] for c in s["completions"]], strict=True):
        assert trace["detailed_prompt"] == step_completion
        assert trace["rewards"]["stub_score"] == known_score(trace["detailed_prompt"])
        expected_keep = keep.score([Sample(trace["simple_prompt"], trace["detailed_prompt"])])[0]
        assert trace["rewards"]["keep"] == expected_keep
        parts = [(3.0, trace["rewards"]["stub_score"])] + ([(1.0, expected_keep)] if expected_keep is not None else [])
        assert trace["reward"] == pytest.approx(sum(w * s for w, s in parts) / sum(w for w, _ in parts))
        frames = read_frames(trace["video_path"])
        assert frames.shape[1:] == (16, 16, 3)
        assert set(trace) >= {
            "step",
            "simple_prompt",
            "detailed_prompt",
            "reward",
            "rewards",
            "seed",
            "video_path",
            "backend",
            "latency_s",
            "cost_usd",
            "time",
        }
    assert traces[0]["time"] <= traces[-1]["time"]  # when each step's rewards were in
    returned = [r for s in record["steps"] for r in s["rewards"]]
    assert returned == [t["reward"] for t in traces]

    assert [s["step"] for s in summary["steps"]] == [0, 1]
    assert json.loads((out / "summary.json").read_text())["checkpoint"] == summary["checkpoint"]
    assert (out / "config.yaml").exists()


def test_rerun_skips_finished_stage1_and_reuses_videos(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    run(_config(tiny_model_dir, out, rl={"max_steps": 1, "prompts_per_step": 1, "samples_per_prompt": 2}))
    adapter = out / "stage1" / "adapter" / "adapter_model.safetensors"
    stamp = adapter.stat().st_mtime_ns
    calls_before = len((out / "videos" / "stub_backend_calls.jsonl").read_text().splitlines())
    summary = run(_config(tiny_model_dir, out, rl={"max_steps": 1, "prompts_per_step": 1, "samples_per_prompt": 2}))
    assert adapter.stat().st_mtime_ns == stamp  # stage 1 was not trained again
    # the stub trainer keeps no checkpoint, so the rerun trains its update 0 again: the first attempt's rows are
    # set aside, and traces.jsonl holds each step once, for the policy that was saved
    first = [json.loads(line) for line in (out / "traces.discarded.jsonl").read_text().splitlines()]
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [(t["step"], t["index"]) for t in first] == [(t["step"], t["index"]) for t in traces] == [(0, 0), (0, 1)]
    calls_after = len((out / "videos" / "stub_backend_calls.jsonl").read_text().splitlines())
    new_prompts = {t["detailed_prompt"] for t in traces} - {t["detailed_prompt"] for t in first}
    assert calls_after - calls_before == len(new_prompts)  # cached videos are not generated again
    assert summary["videos"] == calls_after
    # the same folder with another trainer or rewards is another run: refused before anything loads or is written
    saved = (out / "config.yaml").read_text()
    with pytest.raises(
        ValueError, match=r"holds another run \(rewards: \['stub_score', 'keep'\] there, \['keep'\] now"
    ):
        run(_config(tiny_model_dir, out, rewards=["keep"], reward_weights={}))
    assert (out / "config.yaml").read_text() == saved


def test_a_trainer_without_a_context_still_runs(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"  # a stage-1 adapter to start from, so the run goes straight to stage 2
    lora = LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora).save_pretrained(adapter)
    out = tmp_path / "run"
    summary = run(_config(tiny_model_dir, out, trainer="stub_trainer_v1", adapter=str(adapter)))
    assert json.loads(Path(summary["checkpoint"]).read_text())["rewards"][0] is not None
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [(t["step"], t["index"]) for t in traces] == [(0, 0)]


def test_budget_stops_before_the_cap(tiny_model_dir, tmp_path):
    from enhancer.train.rollout import BudgetExceeded

    config = _config(
        tiny_model_dir,
        tmp_path / "run",
        backend_options={"cost_per_video": 0.5},
        rl={"max_steps": 3, "prompts_per_step": 1, "samples_per_prompt": 2, "max_cost_usd": 1.5},
    )
    with pytest.raises(BudgetExceeded, match="max_cost_usd=1.5"):
        run(config)  # the stub trainer does not catch it; trl_grpo does and checkpoints
    traces = [json.loads(line) for line in (tmp_path / "run" / "traces.jsonl").read_text().splitlines()]
    assert sum(t["cost_usd"] for t in traces) <= 1.5


def test_unknown_plugin_names_fail_before_any_model_loads(tmp_path):
    config = RunConfig.from_dict({"model": str(tmp_path / "nowhere"), "backend": "nope", "out": str(tmp_path)})
    with pytest.raises(UnknownPluginError, match=r"no backend named 'nope'.*registered backends: .*synthetic"):
        run(config)


def test_cli_run_reports_unknown_trainer(cli_env, tmp_path):
    result = subprocess.run(
        [
            str(BIN / "enhancer"),
            "run",
            "--backend",
            "stub_video",
            "--reward",
            "stub_score",
            "--trainer",
            "ppo_typo",
            "--plugin",
            "stub_plugins",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no trainer named 'ppo_typo'" in result.stderr
    assert "stub_trainer" in result.stderr and "trl_grpo" in result.stderr


def test_a_misspelled_plugin_option_fails_before_stage_1(cli_env, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    out = tmp_path / "run"
    recipe.write_text(
        f"model: {tmp_path / 'no-model-needed'}\nbackend: synthetic\nrewards: [keep]\ntrainer: trl_grpo\n"
        f"trainer_options: {{save_step: 5}}\nout: {out}\n"
    )
    result = subprocess.run(
        [str(BIN / "enhancer"), "run", "--recipe", str(recipe)],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "trainer_options: trainer 'trl_grpo' has no option 'save_step'; its options: " in result.stderr
    assert "save_steps" in result.stderr and not out.exists()  # nothing loaded, nothing written

    recipe.write_text(f"backend: synthetic\nrewards: [keep]\nreward_options: {{clean: {{}}}}\nout: {out}\n")
    with pytest.raises(PluginError, match="reward_options for scorers the run does not use: clean"):
        run(RunConfig.from_yaml(str(recipe)))


def test_numbers_yaml_reads_as_strings_are_numbers(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("sft:\n  learning_rate: 2e-4\nrl:\n  learning_rate: 1e-5\n  max_cost_usd: 5e1\n")
    config = RunConfig.from_yaml(str(recipe))  # PyYAML gives '2e-4' (no dot) as a string
    assert (config.sft.learning_rate, config.rl.learning_rate, config.rl.max_cost_usd) == (2e-4, 1e-5, 50.0)
    recipe.write_text("sft:\nrl:\n")  # sections with nothing under them: the defaults
    assert RunConfig.from_yaml(str(recipe), rl={"max_steps": 3}).rl.max_steps == 3
    recipe.write_text("sft:\n  learning_rate: fast\n")
    with pytest.raises(ValueError, match=r"sft\.learning_rate: expected a number \(float\), got 'fast'"):
        RunConfig.from_yaml(str(recipe))


def test_recipe_rejects_unknown_options(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("backend: synthetic\nrl:\n  max_step: 3\n")
    with pytest.raises(ValueError, match=r"rl\.unknown option\(s\) max_step; valid: .*max_steps"):
        RunConfig.from_yaml(str(recipe))


def test_adapter_embedded_means_the_shipped_one_and_needs_the_embedded_model(tiny_model_dir, tmp_path):
    from enhancer.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="adapter: embedded means the adapter shipped with model: embedded"):
        run(_config(tiny_model_dir, tmp_path / "run", adapter="embedded"))
