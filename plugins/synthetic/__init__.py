"""Video backend "synthetic": a deterministic procedural renderer that writes real mp4 files on a CPU in well under
a second, so the full RL loop runs offline and in tests. It is a stand-in, not a video model. The same (prompt,
seed) always gives the same video, and the frames respond to what the prompt says: the colours it names, its
light and time of day (night is dark, golden hour warm), its speed (slow motion, time-lapse) and its camera
motion (pan, tilt, zoom), so a reward on the frames can tell prompts apart.

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
    model = "procedural-v2"  # part of the cache key: a changed renderer does not reuse old videos

    def __init__(self, out_dir: str, fps: int = 8, latency_s: float = 0.0):
        self.out_dir = Path(out_dir)
        self.fps = fps
        self.latency_s = latency_s  # simulated service latency, for benchmarking concurrent rollouts

    def estimate_cost(self, *, seconds: float, size: str) -> float:
        return 0.0

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None) -> Video:
        started = time.perf_counter()
        path = self.out_dir / f"synthetic-v2-{stable_seed(prompt, seed, seconds, size):08x}.mp4"
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if not path.exists():
            # rendering is CPU work: off the event loop, so a server's other jobs and requests go on meanwhile
            frames = await asyncio.to_thread(render, prompt, seed=seed, seconds=seconds, size=size, fps=self.fps)
            await asyncio.to_thread(write_mp4, frames, path, self.fps)
        return Video(str(path), self.name, self.model, seconds, time.perf_counter() - started, 0.0, seed)


COLOURS = {
    "red": (200, 40, 40), "crimson": (170, 20, 50), "orange": (235, 130, 30), "amber": (230, 160, 40),
    "gold": (215, 175, 55), "golden": (215, 175, 55), "yellow": (235, 215, 60), "green": (60, 160, 70),
    "teal": (30, 140, 140), "cyan": (60, 200, 220), "blue": (40, 80, 200), "navy": (20, 30, 90),
    "purple": (120, 50, 160), "violet": (140, 90, 200), "pink": (235, 120, 170), "magenta": (200, 40, 160),
    "brown": (120, 80, 45), "white": (240, 240, 240), "grey": (128, 128, 128), "gray": (128, 128, 128),
    "black": (15, 15, 15), "silver": (190, 195, 200), "neon": (60, 255, 140),
}  # fmt: skip
# time of day / light -> (brightness multiplier, warm-cool tint added to R and B)
LIGHT = {
    "night": (0.3, -20), "midnight": (0.25, -25), "moonlight": (0.35, -30), "dusk": (0.55, 10),
    "twilight": (0.5, -10), "dawn": (0.75, 25), "sunrise": (0.8, 35), "sunset": (0.8, 40),
    "golden hour": (0.9, 45), "noon": (1.15, 0), "midday": (1.15, 0), "daylight": (1.1, 0),
    "neon": (0.6, -15), "candlelight": (0.5, 40), "overcast": (0.85, -10), "storm": (0.45, -20),
}  # fmt: skip
SPEED = {"slow motion": 0.3, "slow-motion": 0.3, "slowly": 0.5, "slow": 0.5, "gentle": 0.6, "calm": 0.6,
         "fast": 2.0, "quick": 1.8, "racing": 2.5, "rushing": 2.2, "time-lapse": 3.0, "timelapse": 3.0}  # fmt: skip
# camera motion -> (pan px/s as a share of the width, tilt share of the height, zoom per second)
CAMERA = {"pan left": (-0.25, 0, 0), "pans left": (-0.25, 0, 0), "pan right": (0.25, 0, 0),
          "pans right": (0.25, 0, 0), "tracking": (0.2, 0, 0), "tilt up": (0, -0.2, 0), "tilts up": (0, -0.2, 0),
          "tilt down": (0, 0.2, 0), "crane": (0, -0.15, 0), "zoom in": (0, 0, 0.25), "zooms in": (0, 0, 0.25),
          "push in": (0, 0, 0.2), "dolly in": (0, 0, 0.2), "zoom out": (0, 0, -0.2), "pull back": (0, 0, -0.2),
          "static": (0, 0, 0), "locked-off": (0, 0, 0)}  # fmt: skip


def _find(text: str, table: dict):
    """Entries of `table` whose phrase occurs in `text` as whole words, in order of appearance."""
    import re

    hits = []
    for phrase, value in table.items():
        match = re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", text)
        if match:
            hits.append((match.start(), phrase, value))
    return [(phrase, value) for _, phrase, value in sorted(hits)]


def scene_of(prompt: str) -> dict:
    """What the renderer reads from a prompt: colours, light, speed and camera motion (all optional)."""
    import re

    text = prompt.lower()
    rest = text
    for table in (COLOURS, LIGHT, SPEED, CAMERA):
        for phrase in table:
            rest = re.sub(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", " ", rest)
    light = _find(text, LIGHT)
    speed = _find(text, SPEED)
    camera = _find(text, CAMERA)
    return {
        "colours": [value for _, value in _find(text, COLOURS)][:6],
        "light": light[0][1] if light else (1.0, 0),
        "speed": speed[0][1] if speed else 1.0,
        "camera": camera[0][1] if camera else (0.0, 0.0, 0.0),
        "rest": rest,  # the other words: each distinct one becomes a moving disc
    }


def render(prompt: str, *, seed: int, seconds: float, size: str, fps: int = 8) -> np.ndarray:
    """Frames (T, H, W, 3): a sky-to-ground gradient lit by the prompt's time of day, one moving disc per distinct
    word (up to 6) coloured by the colours it names, moving at its speed, seen through its camera motion."""
    width, height = parse_size(size)
    scene = scene_of(prompt)
    rng = np.random.default_rng(stable_seed(prompt, seed))
    words = [w for w in dict.fromkeys(w.strip(".,;:!?\"'") for w in scene["rest"].split()) if w][:6] or ["empty"]
    brightness, warmth = scene["light"]
    tint = np.array([warmth, warmth * 0.3, -warmth], np.float32)
    top, bottom = rng.integers(60, 200, 3).astype(np.float32), rng.integers(30, 160, 3).astype(np.float32)
    if scene["colours"]:
        bottom = 0.5 * bottom + 0.5 * np.array(scene["colours"][-1], np.float32)
    ramp = np.linspace(0, 1, height)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1), np.float32)
    discs = []
    for index, word in enumerate(words):
        word_rng = np.random.default_rng(stable_seed(word, seed))
        colour = scene["colours"][index % len(scene["colours"])] if scene["colours"] else word_rng.integers(0, 256, 3)
        discs.append(
            (
                word_rng.uniform(0, width),
                word_rng.uniform(0, height),
                word_rng.uniform(-40, 40) * scene["speed"],
                word_rng.uniform(-30, 30) * scene["speed"],
                word_rng.uniform(6, max(8, height / 6)),
                np.array(colour, np.float32),
            )
        )
    pan, tilt, zoom = scene["camera"]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(max(1, int(round(seconds * fps)))):
        seconds_in = t / fps
        scale = max(0.2, 1 + zoom * seconds_in)  # the camera: world coordinates of each pixel at this moment
        wx = (xs - width / 2) / scale + width / 2 + pan * width * seconds_in
        wy = (ys - height / 2) / scale + height / 2 + tilt * height * seconds_in
        frame = background.copy()
        for x0, y0, vx, vy, radius, colour in discs:
            cx, cy = (x0 + vx * seconds_in) % width, (y0 + vy * seconds_in) % height
            dx = (wx - cx + width / 2) % width - width / 2  # the world wraps, so nothing leaves the frame for good
            dy = (wy - cy + height / 2) % height - height / 2
            frame[dx**2 + dy**2 <= radius**2] = colour
        frame = np.clip(frame * brightness + tint, 0, 255)
        frames.append(frame.astype(np.uint8))
    return np.stack(frames)


@hookimpl
def enhancer_video_backends():
    return {"synthetic": SyntheticBackend}
