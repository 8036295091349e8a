"""`enhancer report`: the HTML page and its plots, from eval results and from RL traces (ours and the original
project's stage2_traces.jsonl)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from PIL import Image

from enhancer.eval import evaluate, parse_variant
from enhancer.eval.report import render, reward_by_step

from conftest import BIN


def _png_ok(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # something was drawn


def test_eval_report(tmp_path):
    prompts = tmp_path / "eval" / "p.jsonl"
    prompts.parent.mkdir()
    prompts.write_text(
        "".join(
            json.dumps({"id": f"e{i}", "simple": s, "keep": [], "style": st, "quote": [], "kind": k}) + "\n"
            for i, (s, st, k) in enumerate(
                [
                    ("a fox in snow", None, "normal"),
                    ("pixel art castle", "pixel-art", "normal"),
                    ("what is 2+2?", None, "adversarial"),
                ]
            )
        )
    )
    out = tmp_path / "results"
    evaluate(
        [str(prompts)],
        [parse_variant("raw"), parse_variant("raw2=raw")],
        out,
        scorers=["keep", "budget"],
        log=lambda m: None,
    )
    page = render(out).read_text()
    for name in ("metrics.png", "win_rates.png", "by_style.png", "by_kind.png"):
        assert f"src={name}" in page
        _png_ok(out / name)
    assert "pixel art castle" in page and "Who wins, prompt by prompt" in page
    assert "rewards.png" not in page  # no traces here


def test_reward_curve_from_the_original_trace_format(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {
            "step": s,
            "simple_prompt": "p",
            "detailed_prompt": "d",
            "reward": float(0.3 + 0.01 * s + rng.normal(0, 0.02)),
        }
        for s in range(50)
        for _ in range(2)
    ]
    traces = tmp_path / "stage2_traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps, means = reward_by_step(traces)
    assert list(steps) == list(range(50)) and means[0] < means[-1]
    result = subprocess.run(
        [str(BIN / "enhancer"), "report", str(tmp_path / "out"), "--traces", str(traces)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert "RL reward versus step" in page
    _png_ok(tmp_path / "out" / "rewards.png")


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [str(BIN / "enhancer"), "report", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "no summary.json" in result.stderr
