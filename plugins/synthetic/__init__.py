"""Video backend "synthetic": a deterministic procedural renderer that writes real mp4 files on a CPU in well under
a second, so the full RL loop runs offline and in tests. The same (prompt, seed) always gives the same video;
colours and motion follow the prompt's words, so different prompts give different videos.

    enhancer run --backend synthetic ...
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from enhancer import Video, hookimpl
from enhancer.video import parse_size, stable_seed, write_mp4


class SyntheticBackend:
    """Procedural mp4 renderer: deterministic, CPU-only, free; for offline runs and tests."""

    name = "synthetic"

    def __init__(self, out_dir: str, fps: int = 8, latency_s: float = 0.0):
        self.out_dir = Path(out_dir)
        self.fps = fps
        self.latency_s = latency_s  # simulated service latency, for benchmarking concurrent rollouts

    def estimate_cost(self, *, seconds: float, size: str) -> float:
        return 0.0

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None) -> Video:
        started = time.perf_counter()
        path = self.out_dir / f"synthetic-{stable_seed(prompt, seed, seconds, size):08x}.mp4"
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if not path.exists():
            frames = render(prompt, seed=seed, seconds=seconds, size=size, fps=self.fps)
            await asyncio.to_thread(write_mp4, frames, path, self.fps)
        return Video(str(path), self.name, "procedural-v1", seconds, time.perf_counter() - started, 0.0, seed)


def render(prompt: str, *, seed: int, seconds: float, size: str, fps: int = 8) -> np.ndarray:
    """Frames (T, H, W, 3): a background gradient and one moving disc per distinct word (up to 6)."""
    width, height = parse_size(size)
    rng = np.random.default_rng(stable_seed(prompt, seed))
    words = list(dict.fromkeys(w.strip(".,;:!?\"'").lower() for w in prompt.split()))[:6] or ["empty"]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp).astype(np.float32) * np.ones((1, width, 1), np.float32)
    discs = []
    for word in words:
        word_rng = np.random.default_rng(stable_seed(word, seed))
        discs.append(
            (
                word_rng.uniform(0, width),
                word_rng.uniform(0, height),
                word_rng.uniform(-40, 40),
                word_rng.uniform(-30, 30),
                word_rng.uniform(6, max(8, height / 6)),
                word_rng.integers(0, 256, 3),
            )
        )
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(max(1, int(round(seconds * fps)))):
        frame = background.copy()
        for x0, y0, vx, vy, radius, colour in discs:
            cx, cy = (x0 + vx * t / fps) % width, (y0 + vy * t / fps) % height
            frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = colour
        frames.append(frame.astype(np.uint8))
    return np.stack(frames)


@hookimpl
def enhancer_video_backends():
    return {"synthetic": SyntheticBackend}
