"""The card's recipe across real process boundaries: `enhancer run --backend sora --reward visionreward`, with
the sora plugin talking to `enhancer video serve` (the OpenAI videos protocol in front of the synthetic
renderer) and the visionreward scorer talking to `enhancer reward serve visionreward` in its own process, its
VLM replaced by a stand-in judge that answers from the real frames (tests/frame_judge.py). Everything the real
setup runs is real here except the two models behind the servers."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml

from conftest import BIN, REPO


def _serve(args, env, pattern):
    """Start an `enhancer ... serve` process on a free port; return it and the URL it prints."""
    process = subprocess.Popen(
        [str(BIN / "enhancer"), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline, lines = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return process, found.group(1)
    process.kill()
    raise AssertionError("the server did not start:\n" + "".join(lines))


@pytest.mark.parametrize("trainer", ["trl_ppo", pytest.param("trl_grpo", marks=pytest.mark.slow)])
def test_run_with_sora_and_visionreward_behind_servers(trainer, tiny_model_dir, tmp_path, cli_env):
    questions, weights = tmp_path / "qa.txt", tmp_path / "weight.json"
    questions.write_text("Is the video bright enough to see [[prompt]]?\nDoes [[prompt]] move?\nNo black areas?\n")
    weights.write_text(json.dumps([0.5, 1.0, 1.5]))
    servers = []
    try:
        video_server, video_url = _serve(
            ["video", "serve", "--backend", "synthetic", "--port", "0", "--api-key", "vk"]
            + ["--out", str(tmp_path / "served")],
            cli_env,
            r" at (http://127\.0\.0\.1:\d+/v1)",
        )
        servers.append(video_server)
        reward_server, reward_url = _serve(
            ["reward", "serve", "visionreward", "--port", "0", "--api-key", "rk"]
            + ["--option", f"questions={questions}", "--option", f"weights={weights}"]
            + ["--option", "judge=frame_judge:FrameJudge"],
            cli_env,
            r" at (http://127\.0\.0\.1:\d+)/v1/score",
        )
        servers.append(reward_server)
        out = tmp_path / "run"
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "model": str(tiny_model_dir),
                    "stage1_data": [str(REPO / "data" / "stage1" / "starter.jsonl")],
                    "stage2_data": [str(REPO / "data" / "stage2")],
                    "out": str(out),
                    "trainer_options": {"num_ppo_epochs": 1} if trainer == "trl_ppo" else {},
                    "backend_options": {"base_url": video_url, "api_key": "vk", "poll_interval_s": 0.05},
                    "reward_options": {"visionreward": {"url": reward_url, "api_key": "rk"}},
                    "sft": {"max_steps": 1, "batch_size": 2, "gradient_accumulation": 1, "max_length": 256},
                    "rl": {
                        "max_steps": 2,
                        "prompts_per_step": 1,
                        "samples_per_prompt": 2,
                        "max_new_tokens": 8,
                        "video_seconds": 1.0,
                        "video_size": "64x48",
                    },
                }
            ),
            encoding="utf-8",
        )
        result = subprocess.run(
            [str(BIN / "enhancer"), "run", "--recipe", str(recipe)]
            + ["--backend", "sora", "--reward", "visionreward", "--trainer", trainer],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        for server in servers:
            server.kill()
            server.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traces] == [0, 0, 1, 1]
    assert all(t["backend"] == "sora" for t in traces)
    # the judge ran in the reward server's process on the mp4s the video server rendered: real checklist scores
    scores = [t["rewards"]["visionreward"] for t in traces]
    assert all(isinstance(s, float) and -1 <= s <= 1 for s in scores), scores
    assert len(list((tmp_path / "served").glob("*.mp4"))) == len({t["detailed_prompt"] for t in traces})
    assert (out / "stage2" / "adapter" / "adapter_model.safetensors").exists()
