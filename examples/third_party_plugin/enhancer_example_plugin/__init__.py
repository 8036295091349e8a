"""An example third-party enhancer plugin: the video backend "solid_color", which writes an mp4 of a single
colour whatever the prompt says. It is useless for training and exists to show the shape of a plugin package:

* a class with `name`, `estimate_cost(*, seconds, size)` and `async generate(prompt, *, seed, seconds, size,
  negative_prompt=None) -> enhancer.Video`;
* a factory that takes `out_dir` (the core always passes it) plus the options a recipe may give under
  `backend_options:` (here `color`);
* one `@enhancer.hookimpl` function returning {name: factory};
* an entry point in the group "enhancer" (see pyproject.toml).

    pip install examples/third_party_plugin
    enhancer plugins list
    enhancer run --backend solid_color ...
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

import enhancer
from enhancer.video import parse_size, stable_seed, write_mp4

__version__ = "0.1.0"

FPS = 4


def parse_color(color: str) -> tuple[int, int, int]:
    """ "#3366cc" (or "3366cc") -> (0x33, 0x66, 0xcc)."""
    text = str(color).strip().lstrip("#")
    if len(text) != 6:
        raise ValueError(f"color must look like #3366cc, got {color!r}")
    try:
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    except ValueError as error:
        raise ValueError(f"color must look like #3366cc, got {color!r}") from error


class SolidColorBackend:
    """One-colour mp4 files (option `color`, default #3366cc): a minimal example of a third-party backend.

    Options (recipe `backend_options:`): color, a hex RGB string.
    """

    name = "solid_color"

    def __init__(self, out_dir: str, color: str = "#3366cc"):
        self.out_dir = Path(out_dir)
        self.color = "#" + str(color).strip().lstrip("#").lower()
        self.rgb = parse_color(color)  # a bad colour fails when the backend is built, before any video is made

    def estimate_cost(self, *, seconds: float, size: str) -> float:
        return 0.0  # local and free

    async def generate(
        self, prompt: str, *, seed: int, seconds: float, size: str, negative_prompt: str | None = None
    ) -> enhancer.Video:
        started = time.perf_counter()
        width, height = parse_size(size)
        frame_count = max(1, round(seconds * FPS))
        # One file per (prompt, seed, length, size, colour): concurrent calls never write the same path.
        key = stable_seed(prompt, seed, seconds, size, self.color)
        path = self.out_dir / f"solid_color-{key:08x}.mp4"
        if not path.exists():
            frames = np.empty((frame_count, height, width, 3), dtype=np.uint8)
            frames[...] = self.rgb
            await asyncio.to_thread(write_mp4, frames, path, FPS)  # encoding is blocking work: keep the loop free
        return enhancer.Video(
            path=str(path),
            backend=self.name,
            model=f"solid-color-{self.color}",
            seconds_of_video=frame_count / FPS,
            latency_s=time.perf_counter() - started,
            cost_usd=0.0,
            seed=seed,
        )


@enhancer.hookimpl
def enhancer_video_backends():
    return {"solid_color": SolidColorBackend}
