"""A server for the OpenAI videos protocol in front of any enhancer video backend, so one trainer can fan out to
several GPU machines through the sora plugin (`enhancer video serve --backend diffusers --model ...`).

    POST /v1/videos                 create a job (multipart form or JSON: prompt, model, seconds, size, and the
                                    extensions seed and negative_prompt); an Idempotency-Key header returns the
                                    job already created for that key instead of a second one
    GET  /v1/videos/{id}            the job: queued, in_progress, completed or failed (with error)
    GET  /v1/videos/{id}/content    the mp4, once completed

Jobs run on the server's own event loop, at most `concurrency` at a time (one per GPU is the usual setting).
It binds 127.0.0.1 unless told otherwise, and asks for a bearer key when given one. Clients never name files:
job ids are the server's, and content comes only from the files its backend wrote.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from enhancer.serve.forms import parse_form

MAX_BODY_BYTES = 1 << 20  # a prompt and a few fields; reference images are not supported
JOB_PATH = re.compile(r"^/v1/videos/(video_[0-9a-f]{24})(/content)?$")


@dataclass
class Job:
    id: str
    prompt: str
    model: str
    seconds: str
    size: str
    seed: int
    negative_prompt: str | None
    status: str = "queued"
    progress: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    error: dict | None = None
    path: str | None = None

    def public(self) -> dict:
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "error": self.error,
            "prompt": self.prompt,
            "seconds": self.seconds,
            "size": self.size,
        }


class VideoProtocolServer:
    """Serve `backend` (an enhancer VideoBackend) over the OpenAI videos protocol on a background thread.

    `faults` is a test seam: a callable (method, path) -> None or an action ("status", code, retry_after),
    ("sleep", seconds), ("hang", seconds) (no answer, then the connection drops) or ("lose_reply",) (the request
    is carried out, then the connection drops before the answer), applied before the request is handled."""

    def __init__(
        self,
        backend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        concurrency: int = 1,
        model: str | None = None,
        faults=None,
        log=None,
    ):
        self.backend = backend
        self.api_key = api_key
        self.model = model or getattr(backend, "model", None) or getattr(backend, "name", "video")
        self.faults = faults
        self.log = log or (lambda message: None)
        self.jobs: dict[str, Job] = {}
        self.by_idempotency_key: dict[str, str] = {}
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.semaphore: asyncio.Semaphore | None = None
        self.concurrency = concurrency
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> VideoProtocolServer:
        loop_thread = threading.Thread(target=self._run_loop, daemon=True)
        http_thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._threads = [loop_thread, http_thread]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.loop.call_soon_threadsafe(self.loop.stop)

    def __enter__(self) -> VideoProtocolServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self.start()
        try:
            self._threads[1].join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.semaphore = asyncio.Semaphore(self.concurrency)
        self.loop.run_forever()

    # ---------------------------------------------------------------------------------------------------- jobs
    def create(self, fields: dict, idempotency_key: str | None) -> Job:
        prompt = str(fields.get("prompt") or "").strip()
        if not prompt:
            raise ValueError("prompt is required")
        seconds = str(fields.get("seconds") or "4")
        try:
            float(seconds)
            seed = int(fields.get("seed") or 0)
        except ValueError as error:
            raise ValueError(f"seconds and seed must be numbers: {error}") from error
        with self.lock:
            if idempotency_key and idempotency_key in self.by_idempotency_key:
                return self.jobs[self.by_idempotency_key[idempotency_key]]
            job = Job(
                id=f"video_{secrets.token_hex(12)}",
                prompt=prompt,
                model=str(fields.get("model") or self.model),
                seconds=seconds,
                size=str(fields.get("size") or "320x192"),
                seed=seed,
                negative_prompt=fields.get("negative_prompt") or None,
            )
            self.jobs[job.id] = job
            if idempotency_key:
                self.by_idempotency_key[idempotency_key] = job.id
        asyncio.run_coroutine_threadsafe(self._run(job), self.loop)
        return job

    async def _run(self, job: Job) -> None:
        async with self.semaphore:
            job.status, job.progress = "in_progress", 1
            try:
                video = await self.backend.generate(
                    job.prompt,
                    seed=job.seed,
                    seconds=float(job.seconds),
                    size=job.size,
                    negative_prompt=job.negative_prompt,
                )
            except Exception as error:  # the job fails; the server goes on
                job.status, job.error = "failed", {"code": "generation_failed", "message": str(error)}
                self.log(f"video serve: {job.id} failed: {error}")
                return
            job.path, job.status, job.progress, job.completed_at = video.path, "completed", 100, int(time.time())

    # -------------------------------------------------------------------------------------------------- HTTP
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet; the server's log() says what matters
                pass

            lose_reply = False

            def _send(self, code: int, payload: dict | bytes, content_type="application/json", headers=None):
                if self.lose_reply:
                    self.close_connection = True
                    return
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, message: str, kind: str = "invalid_request_error", headers=None):
                self._send(code, {"error": {"message": message, "type": kind}}, headers=headers)

            def _guard(self) -> bool:
                """Auth and injected faults; False when the request has been answered already."""
                if server.api_key:
                    given = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(given, f"Bearer {server.api_key}"):
                        self._error(401, "missing or wrong API key: send Authorization: Bearer KEY", "auth_error")
                        return False
                action = server.faults(self.command, self.path) if server.faults else None
                if action is None:
                    return True
                if action[0] == "status":
                    code, retry_after = action[1], action[2] if len(action) > 2 else None
                    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
                    self._error(code, f"injected fault {code}", "server_error", headers)
                    return False
                if action[0] == "sleep":
                    time.sleep(action[1])
                    return True
                if action[0] == "hang":  # accept, then never answer until the client gives up
                    time.sleep(action[1])
                    self.close_connection = True
                    return False
                if action[0] == "lose_reply":
                    self.lose_reply = True
                return True

            def do_POST(self):
                if self.path.split("?")[0].rstrip("/") != "/v1/videos":
                    return self._error(404, f"no such endpoint: POST {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    return self._error(413, f"request body over {MAX_BODY_BYTES} bytes")
                body = self.rfile.read(length)
                if not self._guard():
                    return None
                try:
                    fields = parse_form(self.headers.get("Content-Type", ""), body)
                    job = server.create(fields, self.headers.get("Idempotency-Key"))
                except ValueError as error:
                    return self._error(400, str(error))
                return self._send(200, job.public())

            def do_GET(self):
                match = JOB_PATH.match(self.path.split("?")[0])
                if not match:
                    return self._error(404, f"no such endpoint: GET {self.path}")
                if not self._guard():
                    return None
                job = server.jobs.get(match.group(1))
                if job is None:
                    return self._error(404, f"no video job {match.group(1)}")
                if not match.group(2):
                    return self._send(200, job.public())
                if job.status != "completed" or not job.path:
                    return self._error(409, f"video {job.id} is {job.status}, not completed")
                return self._send(200, Path(job.path).read_bytes(), "video/mp4")

        return Handler
