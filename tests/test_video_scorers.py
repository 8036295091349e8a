"""Video scorers on real small mp4 files rendered here: the CPU metrics, `video_metrics` and `clip_fallback`
(with a tiny random CLIP built from a config, so nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest

from enhancer.contracts import Sample
from enhancer.plugins.clip_fallback import ClipFallbackScorer, VideoMetricsScorer
from enhancer.plugins.clip_fallback.metrics import sample_frames, video_metrics
from enhancer.video import write_mp4

SIZE = 64


def _moving_colourful(t_count=16):
    """A sharp, colourful checkerboard sliding 6 px a frame."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    frames = []
    for t in range(t_count):
        board = ((xs + 6 * t) // 8 + ys // 8) % 2
        frame = np.zeros((SIZE, SIZE, 3), np.uint8)
        frame[board == 1] = (240, 220, 40)  # yellow and dark blue: colourful, and far apart in brightness
        frame[board == 0] = (20, 30, 140)
        frames.append(frame)
    return np.stack(frames)


def _static_dark(t_count=16):
    return np.full((t_count, SIZE, SIZE, 3), 4, np.uint8)


def _flicker(t_count=16):
    return np.stack([np.full((SIZE, SIZE, 3), 20 if t % 2 else 220, np.uint8) for t in range(t_count)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {
        name: str(write_mp4(make(), folder / f"{name}.mp4", fps=8))
        for name, make in (("good", _moving_colourful), ("dark", _static_dark), ("flicker", _flicker))
    }


def test_metrics_measure_what_they_say(videos):
    good, dark, flicker = (video_metrics(sample_frames(videos[n])) for n in ("good", "dark", "flicker"))
    assert good["dynamic_degree"] == 1.0 and dark["dynamic_degree"] == 0.0
    assert dark["temporal_flicker"] > 0.99 > 0.5 > flicker["temporal_flicker"]
    assert good["sharpness"] > 0.5 > dark["sharpness"]
    assert good["colourfulness"] > 0.5 > dark["colourfulness"]
    assert good["exposure"] > 0.95 and dark["exposure"] < 0.05


def test_frames_are_sampled_evenly(videos):
    frames = sample_frames(videos["good"], count=4)
    assert frames.shape == (4, SIZE, SIZE, 3)


def test_video_metrics_scorer_good_beats_bad(videos):
    scorer = VideoMetricsScorer()
    good, bad, missing = scorer.score(
        [Sample("x", "y", videos["good"]), Sample("x", "y", videos["dark"]), Sample("x", "y", "/nowhere.mp4")]
    )
    assert good > bad and missing is None
    only_flicker = VideoMetricsScorer(metrics=["temporal_flicker"]).score([Sample("x", "y", videos["flicker"])])
    assert only_flicker == [video_metrics(sample_frames(videos["flicker"]))["temporal_flicker"]]
    assert scorer.last_details[1]["dynamic_degree"] == 0.0  # per-metric values of the last call are kept
    with pytest.raises(ValueError, match="unknown video metric"):
        VideoMetricsScorer(metrics=["beauty"])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "a", "red", "blue", "fox", "in", "the", "snow", "board", "sliding"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "bos_token_id": 1,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def test_clip_fallback_blends_clip_and_metrics(tiny_clip, videos):
    scorer = ClipFallbackScorer(model=tiny_clip, frames=4, clip_weight=0.2)
    good, bad, missing = scorer.score(
        [
            Sample("a red board sliding", "e", videos["good"]),
            Sample("a red board sliding", "e", videos["dark"]),
            Sample("a red board sliding", "e", None),
        ]
    )
    assert missing is None
    assert good > bad  # with a random CLIP the metrics decide; the blend below checks the CLIP part
    frames = sample_frames(videos["good"], 4)
    clip = min(1.0, 2.5 * max(0.0, scorer.clip_similarity(frames, "a red board sliding")))
    quality = float(np.mean(list(video_metrics(frames).values())))
    assert good == pytest.approx(round(0.2 * clip + 0.8 * quality, 4))
    assert -1 <= scorer.clip_similarity(frames, "a fox in the snow") <= 1
    assert scorer.clip_similarity(frames, "a fox in the snow") == scorer.clip_similarity(frames, "a fox in the snow")
    with pytest.raises(ValueError, match="clip_weight"):
        ClipFallbackScorer(model=tiny_clip, clip_weight=2)


def test_clip_fallback_without_its_weights_says_what_to_do(tmp_path, cli_env):
    """Offline and without the CLIP weights: one clear line and exit 2, not an OSError traceback."""
    import subprocess

    from conftest import BIN

    empty = tmp_path / "clip"
    empty.mkdir()
    done = subprocess.run(
        [str(BIN / "enhancer"), "reward", "score", "--prompt", "a kite", "--reward", "clip_fallback"]
        + ["--option", f"clip_fallback.model={empty}"],
        env={**cli_env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"clip_fallback: the CLIP weights '{empty}' are not on this machine" in done.stderr
    assert "--option clip_fallback.model=/path/to/clip" in done.stderr
