"""Reward scorers for when VisionReward cannot run (no big GPU):

- "video_metrics": CPU video metrics (dynamic degree, temporal flicker, sharpness, colourfulness, exposure; see
  metrics.py), averaged; no model.
- "clip_fallback": CLIP similarity between sampled frames and the user's simple prompt (CLIP-S scaling:
  2.5 * max(cos, 0), capped at 1), blended with the video metrics (`clip_weight`, default 0.6).

    enhancer run --backend synthetic --reward keep,video_metrics ...
    enhancer run ... --reward clip_fallback     # recipe: reward_options: {clip_fallback: {model: DIR_OR_HUB_ID}}

Both return None for a sample whose video is missing or unreadable: never a fake 0.
"""

from __future__ import annotations

import numpy as np

from enhancer import hookimpl
from enhancer.plugins.clip_fallback.metrics import METRICS, sample_frames, video_metrics

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class VideoMetricsScorer:
    """Mean of CPU video metrics (dynamic degree, flicker, sharpness, colourfulness, exposure); no model."""

    name = "video_metrics"

    def __init__(self, metrics: list[str] | None = None, frames: int = 16):
        unknown = sorted(set(metrics or []) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown video metric(s) {', '.join(unknown)}; valid: {', '.join(METRICS)}")
        self.metrics = list(metrics or METRICS)
        self.frames = frames
        self.last_details: list[dict | None] = []  # per-sample metric values of the last call, for traces

    def details(self, video_path) -> dict | None:
        if not video_path:
            return None
        try:
            frames = sample_frames(video_path, self.frames)
        except Exception:
            return None
        return video_metrics(frames) if len(frames) else None

    def score(self, samples):
        self.last_details = [self.details(s.video_path) for s in samples]
        return [
            None if d is None else round(float(np.mean([d[m] for m in self.metrics])), 4) for d in self.last_details
        ]


class ClipFallbackScorer:
    """CLIP frame-prompt similarity blended with CPU video metrics."""

    name = "clip_fallback"

    def __init__(
        self, model: str = DEFAULT_CLIP, frames: int = 8, clip_weight: float = 0.6, device: str | None = None
    ):
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        if not 0 <= clip_weight <= 1:
            raise ValueError(f"clip_weight must be in [0, 1], got {clip_weight}")
        from enhancer.models import ModelNotFoundError

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model = CLIPModel.from_pretrained(model).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.image_processor = AutoImageProcessor.from_pretrained(model)
        except OSError as error:  # offline, or no such folder: say which weights and how to get them
            raise ModelNotFoundError(
                f"clip_fallback: the CLIP weights {model!r} are not on this machine and cannot be downloaded "
                f"({str(error).splitlines()[0]}). Download them once where the hub is reachable, or point the "
                "scorer at a local copy: --option clip_fallback.model=/path/to/clip"
            ) from error
        self.frames = frames
        self.clip_weight = clip_weight
        self.metrics = VideoMetricsScorer(frames=max(frames, 8))

    def clip_similarity(self, frames: np.ndarray, text: str) -> float:
        import torch

        max_length = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        text_inputs = self.tokenizer(
            [text], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)
        image_inputs = self.image_processor(images=list(frames), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            text_features = self.model.get_text_features(**text_inputs)
            image_features = self.model.get_image_features(**image_inputs)
        text_features = getattr(text_features, "pooler_output", text_features)
        image_features = getattr(image_features, "pooler_output", image_features)
        text_features = torch.nn.functional.normalize(text_features, dim=-1)
        image_features = torch.nn.functional.normalize(image_features, dim=-1)
        return float((image_features @ text_features.T).mean())

    def score(self, samples):
        scores = []
        for sample in samples:
            if not sample.video_path:
                scores.append(None)
                continue
            try:
                frames = sample_frames(sample.video_path, self.frames)
            except Exception:
                scores.append(None)
                continue
            clip = min(1.0, 2.5 * max(0.0, self.clip_similarity(frames, sample.simple)))
            quality = float(np.mean(list(video_metrics(frames).values())))
            scores.append(round(self.clip_weight * clip + (1 - self.clip_weight) * quality, 4))
        return scores


@hookimpl
def enhancer_reward_scorers():
    return {"video_metrics": VideoMetricsScorer, "clip_fallback": ClipFallbackScorer}
