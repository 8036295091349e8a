"""The diffusers backend on tiny random Wan, LTX-Video and CogVideoX pipelines built offline (tests/tiny_video.py):
real pipelines, real mp4 files, the text encoder's real input length (max_sequence_length); and `enhancer video
serve` in front of it, reached through the sora plugin."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess

import numpy as np
import pytest

from enhancer.plugins.diffusers import _LOADED, DiffusersBackend, detect_pipeline, frame_count
from enhancer.video import read_frames
from enhancer.video.service import VideoRequest, VideoService

from conftest import BIN
from tiny_video import build


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {kind: build(kind, root / kind) for kind in ("wan", "ltx", "cogvideox")}


@pytest.mark.parametrize("kind", ["wan", "ltx", "cogvideox"])
def test_each_pipeline_makes_a_real_mp4_through_the_video_service(kind, tiny_pipelines, tmp_path):
    backend = DiffusersBackend(str(tmp_path / "out"), model=str(tiny_pipelines[kind]), steps=2, fps=8)
    assert backend.pipeline_name == kind  # read from model_index.json
    service = VideoService(backend, tmp_path / "cache")
    [result] = service.generate([VideoRequest("a red fox in the snow", seed=1, seconds=1, size="32x32")])
    assert result.status == "ok", result.error
    frames = read_frames(result.video.path)
    assert frames.shape == (9, 32, 32, 3)  # 1 s at 8 fps -> 9 frames, the nearest count the model accepts
    assert frames.std() > 0  # random weights still draw something, not a blank
    assert result.video.model == str(tiny_pipelines[kind]) and result.video.backend == "diffusers"
    [again] = service.generate([VideoRequest("a red fox in the snow", seed=1, seconds=1, size="32x32")])
    assert again.cached and again.video.path == result.video.path


def test_seeded_runs_repeat_and_pipelines_are_loaded_once(tiny_pipelines, tmp_path):
    model = str(tiny_pipelines["ltx"])
    first = DiffusersBackend(str(tmp_path / "a"), model=model, steps=2, fps=8)
    second = DiffusersBackend(str(tmp_path / "b"), model=model, steps=2, fps=8)
    options = dict(seed=7, seconds=1, size="32x32", negative_prompt=None)
    a = first.render("a blue boat at dawn", **options)
    b = second.render("a blue boat at dawn", **options)
    c = second.render("a blue boat at dawn", **{**options, "seed": 8})
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sum(1 for key in _LOADED if key[0] == model) == 1  # one pipeline per process, shared
    with pytest.raises(ValueError, match="divisible by 32"):
        asyncio.run(first.generate("a boat", seed=0, seconds=1, size="48x40"))


def test_frame_counts_and_pipeline_detection(tmp_path):
    assert frame_count(5, 16, 4) == 81 and frame_count(1, 8, 8) == 9 and frame_count(0.1, 8, 4) == 5
    assert detect_pipeline("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") == "wan"
    assert detect_pipeline("Lightricks/LTX-Video") == "ltx"
    with pytest.raises(ValueError, match="set --option pipeline="):
        detect_pipeline("someone/some-video-model")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="not one of"):
        detect_pipeline(str(tmp_path))
    with pytest.raises(ValueError, match="needs a model"):
        DiffusersBackend(str(tmp_path))


def test_video_serve_in_front_of_diffusers_reached_through_the_sora_plugin(tiny_pipelines, tmp_path):
    server = subprocess.Popen(
        [str(BIN / "enhancer"), "video", "serve", "--backend", "diffusers", "--port", "0", "--out", str(tmp_path / "s"),
         "--option", f"model={tiny_pipelines['ltx']}", "--option", "steps=2", "--option", "fps=8"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = server.stderr.readline()
        assert "serving diffusers at http://127.0.0.1:" in line, line
        base_url = line.split(" at ")[1].split()[0]
        out = tmp_path / "fox.mp4"
        result = subprocess.run(
            [str(BIN / "enhancer"), "video", "generate", "a fox in the snow", "--backend", "sora",
             "--option", f"base_url={base_url}", "--option", "cost_per_second=0.5", "--max-cost-usd", "1",
             "--seconds", "1", "--size", "32x32", "--cache", str(tmp_path / "cache"), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert read_frames(out).shape == (9, 32, 32, 3)
        assert json.loads(result.stdout)["cost_usd"] == 0.5
    finally:
        server.terminate()
        server.wait(timeout=30)


def _text_lengths(backend, prompt: str) -> list[int]:
    """Renders `prompt` for real and returns the sequence lengths the pipeline's text encoder was given."""
    pipe = backend.pipeline()
    lengths = []
    hook = pipe.text_encoder.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[-1]))
    try:
        backend.render(prompt, seed=0, seconds=0.5, size="32x32", negative_prompt=None)
    finally:
        hook.remove()
    return lengths


def test_ltx_reads_the_whole_ltx_prompt_not_diffusers_128_tokens(tiny_pipelines, tmp_path):
    from diffusers import LTXPipeline, WanPipeline

    from enhancer.prompts import PROFILES

    # diffusers' defaults, read from the installed version: LTX's is shorter than the ltx target's prompts
    assert inspect.signature(LTXPipeline.__call__).parameters["max_sequence_length"].default == 128
    assert inspect.signature(WanPipeline.__call__).parameters["max_sequence_length"].default == 512
    long_prompt = " ".join(["a red fox running over the snow field at dawn"] * 16)  # 160 words, ~170 tokens
    assert len(long_prompt.split()) > PROFILES["ltx"].budget_words()
    ltx = DiffusersBackend(str(tmp_path / "a"), model=str(tiny_pipelines["ltx"]), steps=1, fps=8)
    assert ltx.max_sequence_length == 256 and ltx.cache_identity()["max_sequence_length"] == 256
    assert set(_text_lengths(ltx, long_prompt)) == {256}  # prompt and negative, each padded to 256, none cut at 128
    shorter = DiffusersBackend(str(tmp_path / "b"), model=str(tiny_pipelines["ltx"]), steps=1, fps=8,
                               max_sequence_length=64)  # fmt: skip
    assert set(_text_lengths(shorter, long_prompt)) == {64}  # the backend option wins
    wan = DiffusersBackend(str(tmp_path / "c"), model=str(tiny_pipelines["wan"]), steps=1, fps=8)
    assert wan.max_sequence_length is None and "max_sequence_length" not in wan.cache_identity()
    assert set(_text_lengths(wan, "a red fox in the snow")) == {512}  # diffusers' own default, which holds 120 words
    with pytest.raises(ValueError, match="CogVideoX reads exactly 226"):
        DiffusersBackend(str(tmp_path), model=str(tiny_pipelines["cogvideox"]), max_sequence_length=300)
