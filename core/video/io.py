"""Writing and reading small mp4 files (imageio-ffmpeg ships its own ffmpeg, so nothing else is needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write uint8 frames shaped (T, H, W, 3) as an H.264 mp4; H and W must be even (yuv420p)."""
    import imageio.v2 as imageio

    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.mp4")
    with imageio.get_writer(
        partial, fps=fps, codec="libx264", quality=6, macro_block_size=2, ffmpeg_log_level="error"
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    partial.replace(path)  # a killed write never leaves a file that looks finished
    return path


def read_frames(path: str | Path, max_frames: int = 64) -> np.ndarray:
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        frames = [frame for _, frame in zip(range(max_frames), reader, strict=False)]  # stop at max_frames
    return np.stack(frames)


def parse_size(size: str) -> tuple[int, int]:
    """ "WIDTHxHEIGHT" -> (width, height)."""
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError as error:
        raise ValueError(f"size must look like 320x192, got {size!r}") from error
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return width, height


def stable_seed(*parts: object) -> int:
    """A seed from text, the same on every machine and Python run (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")
