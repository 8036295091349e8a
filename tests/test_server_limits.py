"""The standard-library servers (`enhancer video serve`, `enhancer reward serve`) under the probes of issue 20: each
probe is a real request to a real server on 127.0.0.1, answered with the right 4xx, and the server goes on
serving; the video server's memory, read from /proc, stays under 300 MB through the oversize probes."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import numpy as np

from enhancer.contracts import Video
from enhancer.plugins import synthetic
from enhancer.serve.videos import VideoProtocolServer, VideoServeLimits
from enhancer.video.io import write_mp4

from raw_http import enhancer_server, get, memory_kb, post_json, request

KEY = "k3y-for-tests"
MiB = 1 << 20


def write_test_video(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """A real mp4 of moving colour bands."""
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    video = np.stack([np.roll(np.stack([ramp] * height), 5 * i, axis=1) for i in range(frames)])
    return write_mp4(np.repeat(video[..., None], 3, axis=-1).astype(np.uint8), path)


def synthetic_backend(tmp_path: Path):
    return synthetic.SyntheticBackend(str(tmp_path / "videos"))


def head(port: int, *, length: str | None, key: str | None = KEY, content_type="application/json", extra=""):
    lines = ["POST /v1/videos HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + extra).encode()


def wait_for(condition) -> None:
    """Poll until `condition()`. No clock here: a server that never gets there is ended by pytest's own timeout
    (pyproject.toml), so a busy machine is only slower, never a failure."""
    while not condition():
        time.sleep(0.05)


def make_one_video(port: int, key: str | None = KEY) -> bytes:
    status, _, job = post_json(port, "/v1/videos", {"prompt": "a red fox", "seconds": "1", "size": "64x48"}, key=key)
    assert status == 200, job
    wait_for(lambda: get(port, f"/v1/videos/{job['id']}", key=key)[2]["status"] == "completed")
    status, headers, content = get(port, f"/v1/videos/{job['id']}/content", key=key)
    assert status == 200 and headers["content-type"] == "video/mp4" and content[4:8] == b"ftyp"
    return content


def test_video_server_probes_get_4xx_and_memory_stays_bounded(tmp_path):
    command = ["video", "serve", "--backend", "synthetic", "--out", str(tmp_path / "videos"), "--api-key", KEY]
    with enhancer_server(*command) as (process, port):
        # The key is checked before the body: 40 MiB announced, 1 MiB sent, and the 401 is already there.
        status, headers, answer = request(
            port, head(port, length=str(40 * MiB), key="wrong"), [b"x" * MiB], timeout=30
        )
        assert status == 401 and "API key" in answer["error"]["message"] and headers["connection"] == "close"
        # A header that is not ASCII is a wrong key, not a dropped connection.
        status, _, answer = request(
            port, head(port, length="2", key=None) + b"\r\nAuthorization: Bearer \xe9\xff", b"{}"
        )
        assert status == 401
        # Content-Length: -1 with 3 MiB behind it, "abc", a chunked body, no length at all, too long.
        for length, code in (("-1", 400), ("abc", 400), ("+5", 400), (str(2 * MiB), 413)):
            status, _, answer = request(port, head(port, length=length), [b"{" + b" " * (3 * MiB)])
            assert status == code, (length, answer)
            assert "Content-Length" in answer["error"]["message"] or "limit" in answer["error"]["message"]
        status, _, answer = request(
            port, head(port, length=None, extra="\r\nTransfer-Encoding: chunked"), b"0\r\n\r\n"
        )
        assert status == 411 and "Content-Length" in answer["error"]["message"]
        status, _, answer = request(port, head(port, length=None), b"")
        assert status == 411
        # Only JSON or multipart: a text/plain POST (what a cross-site form can send without asking) is refused.
        status, _, answer = request(port, head(port, length="20", content_type="text/plain"), b'{"prompt": "a fox"}  ')
        assert status == 415 and "multipart/form-data" in answer["error"]["message"]
        # Every numeric field has a limit, named in the answer.
        for fields, field in (
            ({"seconds": "100", "size": "4000x4000"}, "seconds"),
            ({"size": "4000x4000"}, "size"),
            ({"size": "64x48; rm"}, "size"),
            ({"seconds": "-1"}, "seconds"),
            ({"seconds": "inf"}, "seconds"),
            ({"seconds": "nan"}, "seconds"),
            ({"seed": 2**64}, "seed"),
            ({"seed": "x"}, "seed"),
            ({"prompt": "a fox " * 5000}, "prompt"),
            ({"prompt": ""}, "prompt"),
        ):
            status, _, answer = post_json(port, "/v1/videos", {"prompt": "a fox", **fields}, key=KEY)
            assert status == 422 and answer["error"]["message"].startswith(f"{field}:"), (fields, answer)
        status, _, answer = post_json(
            port, "/v1/videos", {"prompt": "a fox"}, key=KEY, extra="Idempotency-Key: \x7f\r\n"
        )
        assert status == 400 and "Idempotency-Key" in answer["error"]["message"]
        status, _, answer = request(port, head(port, length="7"), b"[1,2,3]")
        assert status == 400 and "object" in answer["error"]["message"]
        status, _, answer = request(port, head(port, length="7"), b"\xff\xfe{bad}")
        assert status == 400 and "JSON" in answer["error"]["message"]
        # Still serving, and through all of it the process never held 300 MB.
        assert len(make_one_video(port)) > 1000
        peak_mb = memory_kb(process.pid, "VmHWM") / 1024
        assert peak_mb < 300, f"the video server peaked at {peak_mb:.0f} MB"
        assert process.poll() is None


def test_a_keyless_server_answers_only_local_names_and_no_web_page(tmp_path):
    with VideoProtocolServer(synthetic_backend(tmp_path)) as server:
        port = server.httpd.server_address[1]
        body = b'{"prompt": "a fox", "seconds": "1", "size": "64x48"}'
        rebound = b"POST /v1/videos HTTP/1.1\r\nHost: attacker.example:%d\r\nContent-Type: application/json\r\n" % port
        status, _, answer = request(port, rebound + b"Content-Length: %d" % len(body), body)
        assert status == 403 and "Host" in answer["error"]["message"] and not server.jobs
        for header in (b"Origin: http://attacker.example", b"Sec-Fetch-Site: cross-site", b"Origin: null"):
            page = b"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (port, header)
            status, _, answer = request(
                port, page + b"Content-Type: application/json\r\nContent-Length: %d" % len(body), body
            )
            assert status == 403 and "web pages" in answer["error"]["message"], header
        assert not server.jobs
        for host in (b"localhost:%d" % port, b"[::1]:%d" % port, b"127.0.0.1"):
            status, _, job = request(
                port,
                b"POST /v1/videos HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d"
                % (host, len(body)),
                body,
            )
            assert status == 200 and job["status"] in ("queued", "in_progress", "completed"), (host, job)
    with VideoProtocolServer(synthetic_backend(tmp_path), api_key=KEY) as server:  # with a key, the key guards
        port = server.httpd.server_address[1]
        status, _, job = request(
            port,
            b"POST /v1/videos HTTP/1.1\r\nHost: videos.internal:8100\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d" % (KEY.encode(), len(body)),
            body,
        )
        assert status == 200, job


class Gated:
    """A video backend whose jobs wait for the test to open the gate; it writes a real mp4 when they may go."""

    name = model = "gated"

    def __init__(self, out: Path):
        self.out, self.gate, self.started = out, threading.Event(), 0

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None) -> Video:
        self.started += 1
        await asyncio.to_thread(self.gate.wait)
        path = self.out / f"gated-{seed}.mp4"
        write_test_video(path, frames=4, size=(48, 32))
        return Video(str(path), self.name, self.model, seconds, 0.0, 0.0, seed)


def test_pending_jobs_are_capped_and_finished_ones_forgotten(tmp_path):
    backend = Gated(tmp_path)
    limits = VideoServeLimits(max_pending=2, keep_jobs=3)
    with VideoProtocolServer(backend, concurrency=2, limits=limits) as server:
        port = server.httpd.server_address[1]
        ids = []
        for seed in (1, 2):
            status, _, job = post_json(
                port, "/v1/videos", {"prompt": "a fox", "seed": seed}, extra=f"Idempotency-Key: k{seed}\r\n"
            )
            assert status == 200
            ids.append(job["id"])
        status, headers, answer = post_json(port, "/v1/videos", {"prompt": "a fox", "seed": 3})
        assert status == 429 and headers["retry-after"] == "5" and "--max-pending" in answer["error"]["message"]
        status, _, again = post_json(
            port, "/v1/videos", {"prompt": "a fox", "seed": 1}, extra="Idempotency-Key: k1\r\n"
        )
        assert status == 200 and again["id"] == ids[0]  # a retry of an accepted job is no new job
        backend.gate.set()
        wait_for(lambda: all(server.jobs[i].status == "completed" for i in ids))
        for seed in range(4, 9):
            status, _, job = post_json(
                port, "/v1/videos", {"prompt": "a fox", "seed": seed}, extra=f"Idempotency-Key: k{seed}\r\n"
            )
            assert status == 200, job
            ids.append(job["id"])
            wait_for(lambda job=job: server.jobs[job["id"]].status == "completed")
        assert list(server.jobs) == ids[-3:]  # the oldest finished ones went first
        assert set(server.by_idempotency_key) == {"k6", "k7", "k8"}
        status, _, answer = get(port, f"/v1/videos/{ids[0]}")
        assert status == 404 and "last 3 finished" in answer["error"]["message"]
        assert get(port, f"/v1/videos/{ids[-1]}/content")[0] == 200


def test_synthetic_rendering_runs_off_the_event_loop(tmp_path, monkeypatch):
    threads = []
    real_render = synthetic.render

    def render(*args, **kwargs):
        threads.append(threading.current_thread())
        return real_render(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render", render)
    with VideoProtocolServer(synthetic_backend(tmp_path)) as server:
        port = server.httpd.server_address[1]
        make_one_video(port, key=None)
        loop_thread = server._threads[0]
    assert threads and all(thread is not loop_thread for thread in threads)


def test_connections_over_the_cap_get_503_and_the_server_recovers(tmp_path):
    with VideoProtocolServer(synthetic_backend(tmp_path), limits=VideoServeLimits(max_connections=2)) as server:
        port = server.httpd.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # each holds a handler thread
        try:
            wait_for(lambda: server.httpd.slots._value == 0)
            status, headers, answer = get(port, "/v1/videos/video_" + "0" * 24)
            assert status == 503 and headers["retry-after"] == "1" and "connections" in answer["error"]["message"]
        finally:
            for connection in idle:
                connection.close()
        wait_for(lambda: server.httpd.slots._value == 2)
        status, _, answer = get(port, "/v1/videos/video_" + "0" * 24)
        assert status == 404


def multipart_upload(port: int, video_chunks, video_size: int, *, key=KEY, prompt="a red fox"):
    boundary = "probe-boundary-1234"
    text = f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n{prompt}\r\n'.encode()
    file_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="v.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(text) + len(file_head) + video_size + len(tail)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head_bytes = (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}"
    ).encode()
    return request(port, head_bytes, [text, file_head, *video_chunks, tail])


def test_reward_server_streams_uploads_and_refuses_before_reading(tmp_path):
    video = tmp_path / "real.mp4"
    write_test_video(video, frames=8, size=(64, 48))
    command = ["reward", "serve", "video_metrics", "--api-key", KEY, "--max-video-bytes", str(80 * MiB)]
    with enhancer_server(*command) as (process, port):
        data = video.read_bytes()
        status, _, answer = multipart_upload(port, [data], len(data))
        assert status == 200 and 0 <= answer["score"] <= 1, answer
        status, _, answer = multipart_upload(port, [b"x" * MiB], 40 * MiB, key="wrong")
        assert status == 401
        status, _, answer = multipart_upload(port, [b"x" * MiB], 100 * MiB)  # over --max-video-bytes
        assert status == 413 and "limit" in answer["error"]["message"]
        status, _, answer = request(
            port,
            f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: -1".encode(),
            b"--b--" * 1000,
        )
        assert status == 400 and "Content-Length" in answer["error"]["message"]
        status, _, answer = post_json(port, "/v1/score", {"prompt": "a fox"}, key=KEY)
        assert status == 415 and "multipart" in answer["error"]["message"]
        status, _, answer = multipart_upload(port, [], 0)
        assert status == 422 and answer["error"]["message"].startswith("video:")
        # A 64 MiB upload streams to disk: memory grows by a small part of it, not by ten times it.
        before = memory_kb(process.pid, "VmHWM")
        status, _, answer = multipart_upload(port, (b"\0" * MiB for _ in range(64)), 64 * MiB)
        assert status == 200 and answer["score"] is None  # zeros are no mp4: the scorer could not score it
        grown_mb = (memory_kb(process.pid, "VmHWM") - before) / 1024
        assert grown_mb < 16, f"a 64 MiB upload grew the reward server by {grown_mb:.0f} MB"
        status, _, answer = multipart_upload(port, [data], len(data))
        assert status == 200 and process.poll() is None
