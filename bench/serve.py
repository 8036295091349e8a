"""Load test of `enhancer serve` on loopback: the embedded model answering N concurrent /v1/enhance requests,
against the same server answering requests one at a time. Reports errors, throughput and p50/p95 latency.

    .venv/bin/python bench/serve.py                      # 200 concurrent vs 16 sequential, embedded model
    .venv/bin/python bench/serve.py --concurrent 50 --sequential 8

The server is the real app (FastAPI + uvicorn) in this process, reached over HTTP on 127.0.0.1 by client
threads; prompts are distinct (data/stage2), so nothing is cached. Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ask(url: str, prompt: str) -> tuple[int, float]:
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(f"{url}/v1/enhance", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=3600) as response:
            ok = json.loads(response.read())["status"] == "ok"
            return (200 if ok else 299), time.perf_counter() - started
    except urllib.error.HTTPError as error:
        return error.code, time.perf_counter() - started


def summarise(name: str, results: list[tuple[int, float]], wall: float) -> dict:
    latencies = sorted(seconds for _, seconds in results)
    return {
        "case": name,
        "requests": len(results),
        "errors": sum(status >= 300 for status, _ in results),
        "fallbacks": sum(status == 299 for status, _ in results),
        "wall_s": round(wall, 1),
        "per_minute": round(60 * len(results) / wall, 1),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--engine", default="auto", help="auto (llama.cpp for the embedded model) or transformers")
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--window-ms", type=float, default=50.0)
    options = parser.parse_args()

    from enhancer.data import load_prompts
    from enhancer.enhance import Enhancer
    from enhancer.serve.api import ServeLimits, Server

    prompts = load_prompts([REPO / "data" / "stage2"])
    needed = options.sequential + options.concurrent
    if len(prompts) < needed:
        parser.error(f"data/stage2 has {len(prompts)} prompts; {needed} distinct ones are needed")
    dtype = "bfloat16" if options.engine == "transformers" else None  # a transformers setting
    enhancer = Enhancer.load(model=options.model, engine=options.engine, batch_size=options.max_batch, dtype=dtype)
    # the queue holds the whole burst: this measures throughput, not the 429s of a full queue
    limits = ServeLimits(
        batch_window_ms=options.window_ms, max_batch=options.max_batch, request_timeout_s=3600, max_queue=needed + 1
    )
    rows = []
    with Server(enhancer, limits=limits) as server:
        ask(server.url, "a warm-up prompt about a kite")
        started = time.perf_counter()
        sequential = [ask(server.url, p) for p in prompts[: options.sequential]]
        rows.append(summarise("one at a time", sequential, time.perf_counter() - started))
        print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)
        batch = prompts[options.sequential : needed]
        started = time.perf_counter()
        with ThreadPoolExecutor(options.concurrent) as pool:
            concurrent = list(pool.map(lambda p: ask(server.url, p), batch))
        rows.append(summarise(f"{options.concurrent} concurrent", concurrent, time.perf_counter() - started))
        print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)

    speedup = rows[1]["per_minute"] / rows[0]["per_minute"]
    print(
        f"`enhancer serve` load test: {options.model} model, {enhancer.engine.name} engine, generic target, batching window "
        f"{options.window_ms} ms, up to {options.max_batch} prompts per generate call; {platform.machine()}, "
        f"{date.today()}\n"
    )
    print("| case | requests | errors | fallbacks | wall s | requests/min | p50 s | p95 s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['case']} | {row['requests']} | {row['errors']} | {row['fallbacks']} | {row['wall_s']} "
            f"| {row['per_minute']} | {row['p50_s']} | {row['p95_s']} |"
        )
    print(f"\nthroughput under load: {speedup:.2f}x the one-at-a-time rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
