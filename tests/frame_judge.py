"""A stand-in for VisionReward's VLM judge, importable by `enhancer reward serve --option judge=frame_judge:FrameJudge`
in a subprocess (tests/ is on its PYTHONPATH): yes/no logits computed from the real frames it is given."""

from __future__ import annotations

import numpy as np


class FrameJudge:
    """A test stand-in for the VLM: yes/no logits computed from the frames it receives."""

    def __init__(self):
        self.calls = []

    def answer_logits(self, frames, queries):
        self.calls.append((frames.shape, list(queries)))
        bright = frames.mean() / 255 - 0.35
        moving = float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean()) / 10 - 0.1 if len(frames) > 1 else -1
        dark_area = (frames.max(axis=-1) < 30).mean() - 0.2
        return [(bright, 0.0), (moving, 0.0), (-dark_area, 0.0)]
