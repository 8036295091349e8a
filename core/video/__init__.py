"""Videos: reading and writing mp4 files (`io`, re-exported here) and the service every backend goes through
(`service`: content-addressed cache, retries, a budget shared across processes)."""

from __future__ import annotations

from enhancer.video.io import parse_size, read_frames, stable_seed, write_mp4

__all__ = ["parse_size", "read_frames", "stable_seed", "write_mp4"]
