"""examples/embed_library.py, run as a user would run it: enhance a list of prompts through the library API (an
empty prompt is an "error" row, the other still goes through), then run a recipe with `enhancer.run()`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "examples" / "embed_library.py"


def _json_rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_embed_library_enhances_and_runs(cli_env, tiny_model_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(f"""\
        model: {tiny_model_dir}
        backend: stub_video
        rewards: [stub_score]
        trainer: stub_trainer
        plugins: [stub_plugins]
        stage1_data: [{REPO / "data" / "stage1"}]
        stage2_data: [{REPO / "data" / "stage2"}]
        out: {tmp_path / "recipe-out"}
        sft:
          max_steps: 1
          batch_size: 2
          max_length: 256
          gradient_accumulation: 1
        rl:
          max_steps: 1
          prompts_per_step: 1
          samples_per_prompt: 2
          video_size: 32x32
          video_seconds: 1
        """)
    )
    out = tmp_path / "embedded-run"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--model",
            str(tiny_model_dir),
            "--prompt",
            "a fox in the snow",
            "--prompt",
            "",
            "--target",
            "wan",
            "--max-new-tokens",
            "16",
            "--run-recipe",
            str(recipe),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = _json_rows(result.stdout)  # stdout is JSON rows only, the run's logs went to stderr
    assert len(rows) == 3, result.stdout

    fox, empty, done = rows
    assert fox["prompt"] == "a fox in the snow"
    assert fox["status"] in ("ok", "fallback")  # a random tiny model writes gibberish: either is right
    assert fox["enhanced"]
    assert empty["prompt"] == "" and empty["status"] == "error" and empty["message"]
    for row in (fox, empty):
        assert row["model"] and row["target"] == "wan" and row["seed"] == 0

    checkpoint = Path(done["checkpoint"])
    assert checkpoint.is_dir() and (checkpoint / "adapter_model.safetensors").exists()
    assert checkpoint.is_relative_to(out)  # --out overrides the recipe's `out`
    assert json.loads(Path(done["summary"]).read_text())["checkpoint"] == done["checkpoint"]
    assert not (tmp_path / "recipe-out").exists()


def test_embed_library_help_lists_the_options():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--model", "--prompt", "--target", "--run-recipe", "--out"):
        assert option in result.stdout
