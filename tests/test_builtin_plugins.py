"""Built-in plugins: the synthetic backend and the trl_grpo trainer (driven through `enhancer run` on a tiny random
model). The text scorers have their own tests in test_text_rewards.py."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from enhancer import run
from enhancer.config import RunConfig
from enhancer.plugins.synthetic import SyntheticBackend
from enhancer.video import read_frames

from conftest import REPO


def test_synthetic_backend_is_deterministic_and_follows_the_prompt(tmp_path):
    backend = SyntheticBackend(out_dir=str(tmp_path))
    make = lambda prompt, seed: asyncio.run(backend.generate(prompt, seed=seed, seconds=1.0, size="64x48"))  # noqa: E731
    first, again = make("a red kite over dunes", 1), make("a red kite over dunes", 1)
    other_prompt, other_seed = make("a blue boat at night", 1), make("a red kite over dunes", 2)
    assert first.path == again.path and first.backend == "synthetic" and first.cost_usd == 0.0
    frames = read_frames(first.path)
    assert frames.shape == (8, 48, 64, 3)  # 1 s at 8 fps
    assert not np.array_equal(frames[0], frames[-1])  # things move
    assert not np.array_equal(frames, read_frames(other_prompt.path))
    assert not np.array_equal(frames, read_frames(other_seed.path))
    with pytest.raises(ValueError, match="size must look like 320x192"):
        asyncio.run(backend.generate("x", seed=0, seconds=1.0, size="big"))


def test_synthetic_frames_respond_to_colour_light_speed_and_camera():
    from enhancer.plugins.synthetic import render

    def frames(prompt, seed=0):
        return render(prompt, seed=seed, seconds=1.0, size="64x48").astype(np.float32)

    def motion(video):
        return float(np.abs(np.diff(video, axis=0)).mean())

    red, blue = frames("a red kite and a red ball"), frames("a blue kite and a blue ball")
    assert red[..., 0].mean() - red[..., 2].mean() > blue[..., 0].mean() - blue[..., 2].mean() + 20
    assert frames("a harbour at night").mean() < 0.6 * frames("a harbour at noon").mean()
    sunset, moon = frames("a harbour at sunset"), frames("a harbour in moonlight")
    assert sunset[..., 0].mean() - sunset[..., 2].mean() > moon[..., 0].mean() - moon[..., 2].mean()
    assert motion(frames("a dog running, slow motion")) < motion(frames("a dog running, time-lapse"))
    static, panning = frames("a lighthouse, static shot"), frames("a lighthouse, the camera pans left")
    assert motion(static) < motion(panning)
    # panning moves the whole picture: frame 4 is frame 0 shifted sideways, not some other picture
    shift = int(round(0.25 * 64 * 0.5))
    assert np.abs(np.roll(panning[0], shift, axis=1) - panning[4]).mean() < np.abs(panning[0] - panning[4]).mean()


def _grpo_config(tiny_model_dir, out, **rl):
    return RunConfig.from_dict(
        dict(
            model=str(tiny_model_dir),
            backend="synthetic",
            rewards=["keep", "budget"],
            trainer="trl_grpo",
            stage1_data=[str(REPO / "data" / "stage1")],
            stage2_data=[str(REPO / "data" / "stage2")],
            out=str(out),
            sft={"max_steps": 1, "batch_size": 2, "gradient_accumulation": 1, "max_length": 256},
            rl={
                "max_steps": 2,
                "prompts_per_step": 1,
                "samples_per_prompt": 2,
                "max_new_tokens": 8,
                "video_seconds": 0.5,
                "video_size": "32x32",
                **rl,
            },
        )
    )


def test_trl_grpo_trains_through_the_rollout(tiny_model_dir, tmp_path):
    summary = run(_grpo_config(tiny_model_dir, tmp_path / "run"))
    assert (tmp_path / "run" / "stage2" / "adapter" / "adapter_model.safetensors").exists()
    traces = [json.loads(line) for line in (tmp_path / "run" / "traces.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traces] == [0, 0, 1, 1]
    assert all(t["backend"] == "synthetic" and read_frames(t["video_path"]).shape[1:] == (32, 32, 3) for t in traces)
    assert all(set(t["rewards"]) == {"keep", "budget"} for t in traces)
    assert [s["step"] for s in summary["steps"]] == [0, 1]


def test_trl_grpo_stops_cleanly_at_the_video_cap(tiny_model_dir, tmp_path):
    summary = run(_grpo_config(tiny_model_dir, tmp_path / "run", max_steps=5, max_videos=2))
    assert summary["videos"] <= 2
    assert (tmp_path / "run" / "stage2" / "adapter" / "adapter_model.safetensors").exists()  # checkpoint written


def test_trl_grpo_runs_rloo_and_checks_its_options(tiny_model_dir, tmp_path):
    from enhancer.plugins.trl_grpo import GRPOPolicyTrainer

    config = _grpo_config(tiny_model_dir, tmp_path / "run", max_steps=1)
    config.trainer_options = {"algorithm": "rloo"}
    run(config)
    traces = [json.loads(line) for line in (tmp_path / "run" / "traces.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traces] == [0, 0]
    assert (tmp_path / "run" / "stage2" / "adapter" / "adapter_model.safetensors").exists()
    with pytest.raises(ValueError, match="algorithm must be one of grpo, rloo"):
        GRPOPolicyTrainer(algorithm="ppo")
    with pytest.raises(ValueError, match="needs vllm_server_base_url"):
        GRPOPolicyTrainer(use_vllm=True, vllm_mode="server")
