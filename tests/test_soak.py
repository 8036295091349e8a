"""Soak (slow): 500 mixed good, bad and abandoned requests against `enhancer serve` and `enhancer video serve`, both
real processes on 127.0.0.1, from 12 clients at once. No answer is a 5xx, every good request is answered (after
429s, when a queue is full, as its Retry-After says), and neither server's memory grows without bound.

    .venv/bin/python -m pytest -m slow tests/test_soak.py
"""

from __future__ import annotations

import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chat_server import ChatServer
from raw_http import enhancer_server, get, memory_kb, post_json, request

pytestmark = pytest.mark.slow

KEY = "soak-key"
REQUESTS = 500
RETRIED: list[str] = []  # the Retry-After of every 429 a good request met (the queue did fill)
CLIENTS = 12  # under both servers' connection caps: a 503 here would be a failure of the test's own making


def answered(call, attempts: int = 60):
    """A good request: retried on 429 after its Retry-After (capped), answered with 200 in the end."""
    for _ in range(attempts):
        status, headers, body = call()
        if status != 429:
            return status, body
        RETRIED.append(headers.get("retry-after"))
        time.sleep(min(float(headers.get("retry-after", "1")), 2.0))
    return status, body


def abandon(port: int, payload: bytes, path: str, *, partial: bool) -> None:
    """A client that leaves: mid-body, or right after sending the whole request."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        connection.sendall(head + (payload[: len(payload) // 2] if partial else payload))


def enhance_kinds(port: int, rng: random.Random):
    good = {"prompt": f"a red fox number {rng.randrange(1000)} crossing a snowy field", "seed": rng.randrange(9)}
    return [
        ("good", lambda: answered(lambda: post_json(port, "/v1/enhance", good, key=KEY))),
        ("good", lambda: answered(lambda: post_json(port, "/v1/enhance", {**good, "n": 3}, key=KEY))),
        ("bad", lambda: post_json(port, "/v1/enhance", good, key="wrong")),
        ("bad", lambda: post_json(port, "/v1/enhance", {**good, "seed": 2**64}, key=KEY)),
        ("bad", lambda: post_json(port, "/v1/enhance", {**good, "n": 99}, key=KEY)),
        ("bad", lambda: post_json(port, "/v1/enhance", {"prompt": "x" * 70_000}, key=KEY)),
        (
            "bad",
            lambda: request(
                port,
                f"POST /v1/enhance HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 5".encode(),
                b"{bad}",
            ),
        ),  # fmt: skip
        ("gone", lambda: abandon(port, json.dumps({**good, "n": 8}).encode(), "/v1/enhance", partial=False)),
        ("gone", lambda: abandon(port, json.dumps(good).encode(), "/v1/enhance", partial=True)),
    ]


def video_kinds(port: int, rng: random.Random):
    good = {"prompt": f"a boat at dawn {rng.randrange(50)}", "seconds": "1", "size": "64x48", "seed": rng.randrange(4)}

    def make_video():
        status, body = answered(lambda: post_json(port, "/v1/videos", good, key=KEY))
        if status != 200:
            return status, body
        while True:  # until the job ends; pytest's own timeout ends a job that never does
            status, _, job = get(port, f"/v1/videos/{body['id']}", key=KEY)
            if status != 200 or job["status"] in ("completed", "failed"):
                break
            time.sleep(0.05)
        if job.get("status") != "completed":
            return 599, job  # a failed good job (or its status lost) counts as unanswered
        status, _, content = get(port, f"/v1/videos/{body['id']}/content", key=KEY)
        return status, {"bytes": len(content)}

    return [
        ("good", make_video),
        ("bad", lambda: post_json(port, "/v1/videos", good, key="wrong")),
        ("bad", lambda: post_json(port, "/v1/videos", {**good, "seconds": "100", "size": "4000x4000"}, key=KEY)),
        ("bad", lambda: post_json(port, "/v1/videos", {**good, "seconds": "nan"}, key=KEY)),
        (
            "bad",
            lambda: request(
                port,
                f"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: -1".encode(),
                b"{}" * 1000,
            ),
        ),  # fmt: skip
        ("bad", lambda: get(port, "/v1/videos/video_" + "0" * 24, key=KEY)),
        ("gone", lambda: abandon(port, json.dumps(good).encode(), "/v1/videos", partial=True)),
        ("gone", lambda: abandon(port, json.dumps(good).encode(), "/v1/videos", partial=False)),
    ]


def test_500_mixed_requests_no_5xx_every_good_one_answered_bounded_memory(tmp_path):
    rng = random.Random(20)
    with (
        ChatServer(delay_s=0.1) as upstream,  # a model that takes a moment, so the queue fills and 429s happen
        enhancer_server(
            "serve", "--engine", "openai", "--base-url", upstream.base_url, "--model", "test-model",
            "--api-key", KEY, "--max-queue", "8",
        ) as (enhance_process, enhance_port),
        enhancer_server(
            "video", "serve", "--backend", "synthetic", "--out", str(tmp_path / "videos"), "--api-key", KEY,
            "--concurrency", "2", "--keep-jobs", "50",
        ) as (video_process, video_port),
    ):  # fmt: skip
        # warm both up, then take the memory they hold at rest as the baseline
        assert answered(lambda: post_json(enhance_port, "/v1/enhance", {"prompt": "a cat"}, key=KEY))[0] == 200
        assert video_kinds(video_port, rng)[0][1]()[0] == 200
        baseline = {p.pid: memory_kb(p.pid, "VmRSS") for p in (enhance_process, video_process)}
        plan = []
        for _ in range(REQUESTS):
            kinds = enhance_kinds(enhance_port, rng) if rng.random() < 0.5 else video_kinds(video_port, rng)
            plan.append(rng.choice(kinds))
        with ThreadPoolExecutor(CLIENTS) as pool:
            outcomes = list(pool.map(lambda item: (item[0], item[1]()), plan))
        server_errors = [(kind, result) for kind, result in outcomes if result and result[0] >= 500]
        assert not server_errors, server_errors[:5]
        unanswered = [result for kind, result in outcomes if kind == "good" and result[0] != 200]
        assert not unanswered, unanswered[:5]
        refused = [result for kind, result in outcomes if kind == "bad"]
        assert refused and all(400 <= result[0] < 500 for result in refused)
        counts = {kind: sum(k == kind for k, _ in outcomes) for kind in ("good", "bad", "gone")}
        assert min(counts.values()) > 50, counts
        assert all(value and value.isdigit() for value in RETRIED)  # every 429 said when to come back
        # still serving, and memory at rest is close to where it started
        assert answered(lambda: post_json(enhance_port, "/v1/enhance", {"prompt": "a dog"}, key=KEY))[0] == 200
        assert video_kinds(video_port, rng)[0][1]()[0] == 200
        for process in (enhance_process, video_process):
            grown_mb = (memory_kb(process.pid, "VmRSS") - baseline[process.pid]) / 1024
            peak_mb = memory_kb(process.pid, "VmHWM") / 1024
            assert grown_mb < 64 and peak_mb < 400, (process.args[1:3], grown_mb, peak_mb)
            assert process.poll() is None
