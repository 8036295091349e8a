"""Video rollout benchmark: wall time for N videos from a backend with a fixed latency, one at a time (the
original research project's serial loop) against the core's concurrent video service, directly and through the
sora plugin talking to a local OpenAI-videos-protocol server.

    .venv/bin/python bench/video.py                  # 32 videos, latency 1 s, concurrency 1 vs 16
    .venv/bin/python bench/video.py --latency 2 --videos 64 --concurrency 32

The backend is the synthetic renderer with `latency_s` (an asyncio sleep standing in for a remote model's
queue and render time) at a small size, so the figures measure the scheduling, not a renderer. Each case uses a
fresh cache. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def run_case(kind: str, concurrency: int, videos: int, latency: float) -> dict:
    from enhancer.plugins.sora import SoraBackend
    from enhancer.plugins.synthetic import SyntheticBackend
    from enhancer.serve.videos import VideoProtocolServer
    from enhancer.video.service import VideoRequest, VideoService

    requests = [VideoRequest(f"a paper boat number {i} on a pond", seconds=1, size="64x48") for i in range(videos)]
    with tempfile.TemporaryDirectory() as tmp:
        backend = SyntheticBackend(str(Path(tmp) / "render"), latency_s=latency)
        if kind == "direct":
            service = VideoService(backend, Path(tmp) / "cache", concurrency=concurrency)
            started = time.perf_counter()
            results = service.generate(requests)
            seconds = time.perf_counter() - started
        else:
            with VideoProtocolServer(backend, concurrency=concurrency) as server:
                client = SoraBackend(str(Path(tmp) / "client"), base_url=server.base_url, poll_interval_s=0.1)
                service = VideoService(client, Path(tmp) / "cache", concurrency=concurrency)
                started = time.perf_counter()
                results = service.generate(requests)
                seconds = time.perf_counter() - started
    ok = sum(r.status == "ok" for r in results)
    return {"kind": kind, "concurrency": concurrency, "videos": videos, "ok": ok, "seconds": round(seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per video at the backend")
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()

    rows = []
    for kind in ("direct", "sora-protocol"):
        for concurrency in (1, options.concurrency):
            rows.append(run_case(kind, concurrency, options.videos, options.latency))
            print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)
    print(
        f"{options.videos} videos, backend latency {options.latency} s, {platform.machine()}, {date.today()}; "
        f"`python bench/video.py --videos {options.videos} --latency {options.latency} "
        f"--concurrency {options.concurrency}`\n"
    )
    print("| path | concurrency | videos made | wall s | speedup over serial |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        serial = next(r for r in rows if r["kind"] == row["kind"] and r["concurrency"] == 1)["seconds"]
        print(
            f"| {row['kind']} | {row['concurrency']} | {row['ok']} | {row['seconds']} | "
            f"{serial / row['seconds']:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
