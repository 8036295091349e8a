"""`enhancer run`, `train sft` and `train dpo` on two real processes (CPU, gloo), launched the way users launch
them: `accelerate launch --multi_gpu --num_processes 2` (on a machine without GPUs accelerate's torchrun path
runs each process on the CPU; `--cpu --num_processes 2` would quietly start one) or `torchrun`. One process is
SIGKILLed mid-run, the launcher takes the other down, and the resumed run must continue without a duplicate
trace row, a second copy of a video or a second charge."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from enhancer.files import read_jsonl

from conftest import BIN, REPO


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(args: list[str], env: dict, launcher: str = "accelerate") -> subprocess.Popen:
    if launcher == "accelerate":
        command = [
            str(BIN / "accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(_free_port()),
        ]
    else:
        command = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port())]
    return subprocess.Popen(
        [*command, "-m", "enhancer.cli", *args],
        env={**env, "OMP_NUM_THREADS": "1"},  # two processes on two cores
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the launcher's worker process with RANK=`rank` (workers run in sessions of their own, so they
    are found through their parents)."""
    parents, environs = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                environs[int(entry.name)] = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
    for pid, environ in environs.items():
        ancestor = pid
        while ancestor not in (0, 1, launcher.pid):
            ancestor = parents.get(ancestor, 0)
        if ancestor == launcher.pid and f"RANK={rank}".encode() in environ:
            return pid
    return None


def _kill_rank_when(launcher: subprocess.Popen, rank: int, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None and not ready():
        time.sleep(0.05)
    pid = _rank_pid(launcher, rank)
    assert launcher.poll() is None and pid is not None, "the run ended before a rank could be killed"
    os.kill(pid, signal.SIGKILL)
    code, _, err = _finish(launcher, timeout=300)
    assert code != 0, "the launcher should stop the run when one of its processes dies"


def _steps_written(traces: Path, step: int):
    def ready() -> bool:
        return any(row.get("step", -1) >= step for row in read_jsonl(traces))

    return ready


@pytest.mark.parametrize("trainer", ["trl_grpo", pytest.param("trl_ppo", marks=pytest.mark.slow)])
def test_run_on_two_processes_survives_a_killed_rank(trainer, tiny_model_dir, tmp_path, cli_env):
    out = tmp_path / "run"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((REPO / "data/stage1/starter.jsonl").read_text().splitlines(keepends=True)[:8]))
    recipe = tmp_path / "recipe.yaml"
    steps, rewrites = 4, 4
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "backend": "synthetic",
                "backend_options": {"latency_s": 0.3},  # room to land the kill inside a step
                "rewards": ["keep", "coverage"],
                "trainer": trainer,
                "trainer_options": {"save_steps": 1, **({"num_ppo_epochs": 1} if trainer == "trl_ppo" else {})},
                "stage1_data": [str(pairs)],
                "stage2_data": [str(REPO / "data" / "stage2")],
                "out": str(out),
                "sft": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "max_length": 256},
                "rl": {
                    "max_steps": steps,
                    "prompts_per_step": 2,
                    "samples_per_prompt": 2,  # 4 rewrites per update: 2 on each process
                    "max_new_tokens": 12,
                    "video_seconds": 0.5,
                    "video_size": "32x32",
                    "max_videos": 40,
                },
            }
        )
    )
    traces = out / "traces.jsonl"
    first = _launch(["run", "--recipe", str(recipe)], cli_env)
    _kill_rank_when(first, rank=1, ready=_steps_written(traces, 1))  # update 1's rollout is written
    assert not (out / "summary.json").exists()
    # stage 1 ran on both processes; its adapter was written once, by the main one, before stage 2 began
    assert json.loads((out / "stage1" / "adapter" / "enhancer.json").read_text())["processes"] == 2

    code, stdout, stderr = _finish(_launch(["run", "--resume", "--out", str(out)], cli_env))
    assert code == 0, stderr[-4000:]
    assert f"[rank 0/2] {trainer}: resuming" in stderr and "[rank 1/2]" in stderr

    rows = read_jsonl(traces)
    assert Counter((r["step"], r["index"]) for r in rows) == Counter(
        (s, i) for s in range(steps) for i in range(rewrites)
    )  # steps x samples rows, each (step, index) once, whatever was written before the kill
    assert {r["rank"] for r in rows} == {0, 1}  # both processes' samples, written by the main one
    assert traces.read_text().count("\n") == len(rows)

    # every video made once across processes and restarts, and paid once
    index = read_jsonl(out / "video-cache" / "index.jsonl")
    made = Counter(r["key"] for r in index if r["status"] == "ok")
    assert made and max(made.values()) == 1
    charges = [r["key"] for r in read_jsonl(out / "video-cache" / "ledger.jsonl")]
    assert sorted(charges) == sorted(made) and len(charges) <= 40
    assert all(Path(r["video_path"]).is_file() for r in rows)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and [s["step"] for s in summary["steps"]] == list(range(steps))
    printed = stdout[stdout.index('{\n  "config"') :]  # after the trainer's log lines
    assert json.loads(printed)["checkpoint"] == summary["checkpoint"] and stdout.count('"config"') == 1  # by rank 0
    assert stderr.count("run: done") == 1
    assert (out / "stage2" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_sft_on_two_processes_resumes_after_a_killed_rank(tiny_model_dir, tmp_path, cli_env):
    out = tmp_path / "run"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((REPO / "data/stage1/starter.jsonl").read_text().splitlines(keepends=True)[:16]))
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        f"model: {tiny_model_dir}\nstage1_data: [{pairs}]\nout: {out}\nseed: 0\n"
        "sft:\n  max_steps: 6\n  batch_size: 2\n  gradient_accumulation: 1\n  learning_rate: 1.0e-2\n"
        "  max_length: 256\n  save_steps: 1\n  eval_fraction: 0.0\n"
    )
    checkpoints = out / "stage1" / "checkpoints"
    first = _launch(["train", "sft", "--recipe", str(recipe)], cli_env, launcher="torchrun")
    _kill_rank_when(first, rank=1, ready=lambda: (checkpoints / "checkpoint-2" / "trainer_state.json").exists())
    assert not (out / "stage1" / "adapter" / "enhancer.json").exists()

    code, stdout, stderr = _finish(_launch(["train", "sft", "--recipe", str(recipe)], cli_env, launcher="torchrun"))
    assert code == 0, stderr[-4000:]
    assert "resuming at step" in stderr
    state = json.loads((checkpoints / "checkpoint-6" / "trainer_state.json").read_text())
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == sorted(set(logged)) and logged[-1] == 6  # no step trained twice
    assert stdout.strip().splitlines()[-1] == str(out / "stage1" / "adapter")  # printed once, by rank 0
    assert json.loads((out / "stage1" / "adapter" / "enhancer.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_dpo_on_two_processes_resumes_after_a_killed_rank(tiny_model_dir, tmp_path, cli_env):
    traces = tmp_path / "traces.jsonl"
    rows = []
    for i in range(16):  # 16 prompts, a good and a poor rewrite each: 16 preference pairs
        rows.append(
            {
                "step": 0,
                "simple_prompt": f"a kite number {i}",
                "detailed_prompt": f"Kite {i} over a windy beach at dawn, wide shot.",
                "reward": 0.9,
            }
        )
        rows.append({"step": 0, "simple_prompt": f"a kite number {i}", "detailed_prompt": f"Kite {i}.", "reward": 0.2})
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo"
    args = ["train", "dpo", "--traces", str(traces), "--model", str(tiny_model_dir), "--out", str(out)]
    args += ["--batch-size", "1", "--max-steps", "6", "--save-steps", "1"]
    checkpoints = out / "checkpoints"
    first = _launch(args, cli_env, launcher="torchrun")
    _kill_rank_when(first, rank=1, ready=lambda: (checkpoints / "checkpoint-2" / "trainer_state.json").exists())

    code, stdout, stderr = _finish(_launch(args, cli_env, launcher="torchrun"))
    assert code == 0, stderr[-4000:]
    assert "dpo: resuming at step" in stderr
    record = json.loads((out / "adapter" / "enhancer.json").read_text())["dpo"]
    assert record["processes"] == 2 and record["steps"] == 6 and record["pairs"] == 16
    state = json.loads((checkpoints / "checkpoint-6" / "trainer_state.json").read_text())
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == sorted(set(logged)) and logged[-1] == 6
    assert stdout.strip().splitlines()[-1] == str(out / "adapter")
