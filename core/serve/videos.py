"""A server for the OpenAI videos protocol in front of any enhancer video backend, so one trainer can fan out to
several GPU machines through the sora plugin (`enhancer video serve --backend diffusers --model ...`).

    POST /v1/videos                 create a job (multipart form or JSON: prompt, model, seconds, size, and the
                                    extensions seed and negative_prompt); an Idempotency-Key header returns the
                                    job already created for that key instead of a second one
    GET  /v1/videos/{id}            the job: queued, in_progress, completed or failed (with error)
    GET  /v1/videos/{id}/content    the mp4, once completed

Jobs run on the server's own event loop, at most `concurrency` at a time (one per GPU is the usual setting);
backends do their heavy work in threads, so jobs overlap their waiting. It binds 127.0.0.1 unless told otherwise,
and asks for a bearer key when given one. Every request is read by enhancer.serve.http (key first, bounded body);
every field has a limit (VideoServeLimits, the command's flags), at most `max_pending` jobs wait or run (429 with
Retry-After beyond), and only the last `keep_jobs` finished jobs are remembered. Clients never name files: job
ids are the server's, and content comes only from the files its backend wrote. docs/security.md lists the limits.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from enhancer.serve.http import BoundedHTTPServer, GuardedHandler, RequestError

JOB_PATH = re.compile(r"^/v1/videos/(video_[0-9a-f]{24})(/content)?$")
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the sora plugin and OpenAI send


@dataclass
class VideoServeLimits:
    """`enhancer video serve`'s limits: each refusal is a 4xx naming the field and the limit (docs/security.md)."""

    max_body_bytes: int = field(default=1 << 20, metadata={"help": "Largest request body; larger ones get 413."})
    max_prompt_chars: int = field(default=20_000, metadata={"help": "Longest prompt or negative_prompt."})
    max_seconds: float = field(default=20.0, metadata={"help": "Longest video a job may ask for, in seconds."})
    max_side: int = field(default=1920, metadata={"help": "Largest width or height a job may ask for, in pixels."})
    max_pending: int = field(default=64, metadata={"help": "Jobs queued or running at once; more get 429."})
    keep_jobs: int = field(
        default=1000, metadata={"help": "Finished jobs remembered for status and content; older ones are forgotten."}
    )
    max_connections: int = field(default=64, metadata={"help": "Connections handled at once; more get 503."})

    def __post_init__(self):
        if min(self.max_body_bytes, self.max_prompt_chars, self.max_side, self.max_pending) < 1:
            raise ValueError("video serve: every limit must be >= 1")
        if not 0 < self.max_seconds < math.inf or self.keep_jobs < 1 or self.max_connections < 1:
            raise ValueError("video serve: max_seconds must be > 0 and finite, keep_jobs and max_connections >= 1")


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
    idempotency_key: str | None = None

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
    is carried out, then the connection drops before the answer), applied after the caller checks."""

    def __init__(
        self,
        backend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        concurrency: int = 1,
        model: str | None = None,
        limits: VideoServeLimits | None = None,
        faults=None,
        log=None,
    ):
        self.backend = backend
        self.limits = limits or VideoServeLimits()
        self.model = model or getattr(backend, "model", None) or getattr(backend, "name", "video")
        self.faults = faults
        self.log = log or (lambda message: None)
        self.jobs: OrderedDict[str, Job] = OrderedDict()  # oldest first, so eviction forgets the oldest finished
        self.by_idempotency_key: dict[str, str] = {}
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.semaphore: asyncio.Semaphore | None = None
        self.concurrency = concurrency
        self.httpd = BoundedHTTPServer(
            (host, port),
            self._handler(),
            api_key=api_key,
            max_connections=self.limits.max_connections,
            log=self.log,
        )
        self._threads: list[threading.Thread] = []

    @property
    def api_key(self) -> str | None:
        return self.httpd.api_key

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
    def checked_fields(self, fields: dict) -> dict:
        """The job's fields, each within its limit; a RequestError (422) naming the field and the limit if not."""
        limits = self.limits

        def text(name: str, required: bool = False) -> str | None:
            value = fields.get(name)
            if value is None or value == "":
                if required:
                    raise RequestError(422, f"{name}: required (the text to make a video of)")
                return None
            if not isinstance(value, str):
                raise RequestError(422, f"{name}: must be text, got {type(value).__name__}")
            if len(value) > limits.max_prompt_chars:
                raise RequestError(422, f"{name}: {len(value)} characters; the limit is {limits.max_prompt_chars}")
            return value.strip() or None

        prompt = text("prompt", required=True)
        if prompt is None:
            raise RequestError(422, "prompt: required (the text to make a video of)")
        seconds_text = str(fields.get("seconds") if fields.get("seconds") not in (None, "") else "4")
        try:
            seconds = float(seconds_text)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds <= limits.max_seconds:  # also refuses nan and inf
            raise RequestError(
                422, f"seconds: {seconds_text[:40]!r} is not a length in (0, {limits.max_seconds:g}] seconds"
            )
        size = str(fields.get("size") or "320x192")
        match = SIZE.match(size)
        if not match or not all(16 <= int(side) <= limits.max_side for side in match.groups()):
            raise RequestError(
                422, f"size: {size[:40]!r} is not WIDTHxHEIGHT with each side from 16 to {limits.max_side} pixels"
            )
        seed = fields.get("seed", 0)
        try:
            seed = int(seed if seed not in (None, "") else 0)
        except (TypeError, ValueError):
            seed = -1
        if isinstance(fields.get("seed"), bool) or not 0 <= seed <= 2**32 - 1:
            raise RequestError(422, f"seed: {str(fields.get('seed'))[:40]!r} is not an integer from 0 to 2**32-1")
        model = fields.get("model")
        if model is not None and (not isinstance(model, str) or len(model) > 200):
            raise RequestError(422, "model: a name of at most 200 characters")
        return {
            "prompt": prompt,
            "model": model or self.model,
            "seconds": seconds_text,
            "size": size,
            "seed": seed,
            "negative_prompt": text("negative_prompt"),
        }

    def create(self, fields: dict, idempotency_key: str | None) -> Job:
        checked = self.checked_fields(fields)
        if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
            raise RequestError(400, "Idempotency-Key: 1 to 255 visible ASCII characters")
        with self.lock:
            if idempotency_key and idempotency_key in self.by_idempotency_key:
                return self.jobs[self.by_idempotency_key[idempotency_key]]
            pending = sum(job.status in ("queued", "in_progress") for job in self.jobs.values())
            if pending >= self.limits.max_pending:
                raise RequestError(
                    429,
                    f"{pending} jobs are queued or running, the limit (--max-pending); retry later",
                    "rate_limit_error",
                    {"Retry-After": "5"},
                )
            job = Job(id=f"video_{secrets.token_hex(12)}", **checked)
            job.idempotency_key = idempotency_key
            self.jobs[job.id] = job
            if idempotency_key:
                self.by_idempotency_key[idempotency_key] = job.id
            self._forget_old_jobs()
        asyncio.run_coroutine_threadsafe(self._run(job), self.loop)
        return job

    def _forget_old_jobs(self) -> None:
        """Keep at most `keep_jobs` finished jobs (with the lock held): the oldest go first, with their idempotency
        keys. Their files stay where the backend wrote them (its cache)."""
        finished = [job for job in self.jobs.values() if job.status in ("completed", "failed")]
        for job in finished[: max(0, len(finished) - self.limits.keep_jobs)]:
            del self.jobs[job.id]
            if job.idempotency_key:
                self.by_idempotency_key.pop(job.idempotency_key, None)

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
            else:
                job.path, job.status, job.progress = video.path, "completed", 100
                job.completed_at = int(time.time())
        with self.lock:
            self._forget_old_jobs()

    # -------------------------------------------------------------------------------------------------- HTTP
    def _handler(self):
        server = self

        class Handler(GuardedHandler):
            lose_reply = False

            def send_bytes(self, code, body, content_type, headers=None):
                if self.lose_reply:
                    self.close_connection = True
                    return
                super().send_bytes(code, body, content_type, headers)

            def faults(self) -> bool:
                """Injected faults; False when the request has been answered already."""
                action = server.faults(self.command, self.path) if server.faults else None
                if action is None:
                    return True
                if action[0] == "status":
                    code, retry_after = action[1], action[2] if len(action) > 2 else None
                    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
                    raise RequestError(code, f"injected fault {code}", "server_error", headers)
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

            def post(self):
                if self.route.rstrip("/") != "/v1/videos":
                    raise RequestError(404, f"no such endpoint: POST {self.route}")
                fields = self.read_form(server.limits.max_body_bytes)
                if not self.faults():
                    return
                job = server.create(fields, self.headers.get("Idempotency-Key"))
                self.send_json(200, job.public())

            def get(self):
                match = JOB_PATH.match(self.route)
                if not match:
                    raise RequestError(404, f"no such endpoint: GET {self.route}")
                if not self.faults():
                    return
                job = server.jobs.get(match.group(1))
                if job is None:
                    raise RequestError(
                        404, f"no video job {match.group(1)} (the last {server.limits.keep_jobs} finished are kept)"
                    )
                if not match.group(2):
                    return self.send_json(200, job.public())
                if job.status != "completed" or not job.path:
                    raise RequestError(409, f"video {job.id} is {job.status}, not completed")
                if self.lose_reply:
                    self.close_connection = True
                    return
                return self.send_file(job.path, "video/mp4")

        return Handler
