"""`enhancer serve`: the enhancer over HTTP (FastAPI on uvicorn).

    POST /v1/enhance            {"prompt", "target", "n", "seed", "temperature", "negative"} -> an Enhancement
    POST /v1/chat/completions   OpenAI-compatible: the last user message is the simple prompt; `stream: true`
                                sends server-sent events (chat.completion.chunk) as the rewrite is written
    GET  /v1/models             the served model, OpenAI-style
    GET  /healthz               liveness (never needs the key)
    GET  /                      the web page: enhance, compare variants side by side, edit, copy

Requests that arrive within a short window (`batch_window_ms`) and ask for the same target, n, seed,
temperature and negative are answered by one batched generate call, so throughput grows with load. Engines that
decode several requests at once (llama.cpp's slots, a remote endpoint) take that many calls together; the
transformers engine runs one batch at a time, in a worker thread. A streamed request whose client hangs up stops
its generation at the next token. With an API key every route but /healthz needs
`Authorization: Bearer KEY`. Bodies over `max_body_bytes` get 413, malformed JSON and invalid fields 422 with
what is wrong, a request that waits longer than `request_timeout_s` 504; the server keeps serving. No route
reads or writes a path the client names.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from enhancer.prompts import PROFILES, check_prompt
from enhancer.serve.limits import ServeLimits

SEED = Field(None, ge=0, le=2**32 - 1)  # what every engine's sampler takes; 2**64 was a 500 before


class EnhanceRequest(BaseModel):
    prompt: str
    target: str = "generic"
    n: int = Field(1, ge=1)
    seed: int | None = SEED
    temperature: float | None = Field(None, ge=0, le=2)
    negative: bool = False


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]]


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage]
    n: int = Field(1, ge=1)
    seed: int | None = SEED
    temperature: float | None = Field(None, ge=0, le=2)
    target: str = "generic"  # extra_body={"target": "wan"} from the OpenAI client
    stream: bool = False


OPEN_PATHS = ("/", "/healthz")  # the page (static, no data) and liveness need no key; the page asks for one


@dataclass
class _Job:
    prompt: str
    key: tuple
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for `window` seconds (or `max_batch` of them) and runs each group of compatible ones
    (same target, n, seed, temperature, negative) as one `enhancer.enhance(list)` call in a worker thread."""

    def __init__(self, enhancer, window_s: float, max_batch: int):
        self.enhancer = enhancer
        self.window_s = window_s
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # generate calls made, for tests and /healthz
        self.requests = 0
        # How many model calls may run at once: llama.cpp decodes its slots together, so several calls (and
        # streamed requests) overlap there; the transformers engine takes one batch at a time.
        self.concurrency = max(1, int(getattr(getattr(enhancer, "engine", None), "concurrency", 1)))
        self.gate: asyncio.Semaphore | None = None
        self.running: set[asyncio.Task] = set()

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.gate = asyncio.Semaphore(self.concurrency)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def submit(self, prompt: str, key: tuple):
        job = _Job(prompt, key, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            deadline = time.perf_counter() + self.window_s
            while len(jobs) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                if not job.future.done():  # its client gave up (timeout): do not spend the model on it
                    groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                await self.gate.acquire()  # waits while `concurrency` calls run
                task = asyncio.get_running_loop().create_task(self._generate(key, group))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def _generate(self, key: tuple, group: list[_Job]) -> None:
        try:
            await self._generate_group(key, group)
        finally:
            self.gate.release()

    async def _generate_group(self, key: tuple, group: list[_Job]) -> None:
        target, n, seed, temperature, negative = key
        started = time.perf_counter()
        try:
            rows = await asyncio.to_thread(
                self.enhancer.enhance,
                [job.prompt for job in group],
                target=target,
                n=n,
                seed=seed,
                temperature=temperature,
                negative=negative,
            )
        except Exception as error:  # the whole call failed: every request in it says why
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        self.batches += 1
        self.requests += len(group)
        generate_s = time.perf_counter() - started
        for job, row in zip(group, rows, strict=True):
            if not job.future.done():
                job.future.set_result((row, started - job.queued, generate_s, len(group)))


class BodyLimit:
    """ASGI middleware: counts a request body as it arrives and stops at `max_bytes` with a 413, so a chunked body
    (no Content-Length to check up front) is never held whole. The error surfaces where the route reads the body
    and reaches the app's exception handler like any HTTPException."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.exceptions import HTTPException

        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body too large; the limit is {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


def create_app(enhancer, limits: ServeLimits | None = None, api_key: str | None = None):
    """The FastAPI app around an `Enhancer` (anything with `.enhance(list, ...)` and `.model_label`)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = limits or ServeLimits()
    batcher = Batcher(enhancer, limits.batch_window_ms / 1000, limits.max_batch)
    model_label = getattr(enhancer, "model_label", "enhancer")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="enhancer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.state.batcher = batcher

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path not in OPEN_PATHS and api_key:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return JSONResponse(
                    {"error": "missing or wrong API key: send Authorization: Bearer KEY"}, status_code=401
                )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return JSONResponse(
                {"error": f"request body of {declared} bytes; the limit is {limits.max_body_bytes}"}, status_code=413
            )
        # A body without Content-Length (chunked) is counted as it arrives, by BodyLimit.
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {item.get('msg')}")
        return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, status_code=422)

    def checked(prompt: str, target: str, n: int) -> str:
        if n > limits.max_n:
            raise HTTPException(422, f"invalid request: n: at most {limits.max_n} variants per request, got {n}")
        if target not in PROFILES:
            raise HTTPException(422, f"unknown target {target!r}; valid targets: {', '.join(PROFILES)}")
        try:
            return check_prompt(prompt)
        except ValueError as error:
            raise HTTPException(422, str(error)) from error

    async def enhance_one(prompt: str, target: str, n: int, seed, temperature, negative: bool):
        prompt = checked(prompt, target, n)
        started = time.perf_counter()
        try:
            row, queue_s, generate_s, batch = await asyncio.wait_for(
                batcher.submit(prompt, (target, n, seed, temperature, negative)), limits.request_timeout_s
            )
        except TimeoutError as error:
            raise HTTPException(504, f"no answer within {limits.request_timeout_s} s; try again later") from error
        except Exception as error:  # the model call failed for the whole batch
            raise HTTPException(500, f"enhancing failed: {type(error).__name__}: {error}") from error
        timings = {
            "queue_s": round(queue_s, 3),
            "generate_s": round(generate_s, 3),
            "total_s": round(time.perf_counter() - started, 3),
            "batch": batch,
        }
        return row, timings

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and BodyLimit's
    async def http_error(request: Request, error: StarletteHTTPException):
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    page = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
    page = page.replace("__TARGETS__", json.dumps(list(PROFILES)))

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": model_label, "batches": batcher.batches, "requests": batcher.requests}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_label, "object": "model", "owned_by": "enhancer"}]}

    @app.post("/v1/enhance")
    async def enhance(body: EnhanceRequest):
        row, timings = await enhance_one(body.prompt, body.target, body.n, body.seed, body.temperature, body.negative)
        return {**row.to_dict(), "variants": row.variants or [row.enhanced], "timings": timings}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise HTTPException(422, "messages: no user message; the last user message is the prompt to enhance")
        content = users[-1].content
        if isinstance(content, list):  # OpenAI content parts: the text ones
            content = " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
        if body.stream:
            return stream_chat(checked(content, body.target, body.n), body)
        row, timings = await enhance_one(content, body.target, body.n, body.seed, body.temperature, False)
        variants = row.variants or [row.enhanced]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": row.model or model_label,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop" if row.status == "ok" else "error",
                }
                for i, text in enumerate(variants)
            ],
            "usage": {
                "prompt_tokens": len(content.split()),
                "completion_tokens": sum(len(t.split()) for t in variants),
                "total_tokens": len(content.split()) + sum(len(t.split()) for t in variants),
            },
            "enhancer": {"status": row.status, "message": row.message, "seed": row.seed, "timings": timings},
        }

    def stream_chat(prompt: str, body: ChatRequest):
        """OpenAI's streaming format: a role chunk, content deltas as the rewrite is written, a last chunk with the
        finish_reason (and enhancer's row), then `data: [DONE]`. Several variants (n > 1) are each sent whole."""
        from fastapi.responses import StreamingResponse

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        left = threading.Event()  # the client hung up: the engine stops at its next token
        identity = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_label,
        }
        streams = body.n == 1 and hasattr(enhancer, "enhance_stream")

        def on_text(piece: str) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, ("text", piece))
            return left.is_set()

        async def produce():
            try:
                if streams:
                    async with batcher.gate:
                        row = await asyncio.to_thread(
                            enhancer.enhance_stream,
                            prompt,
                            on_text,
                            target=body.target,
                            seed=body.seed,
                            temperature=body.temperature,
                        )
                else:
                    row, *_ = await batcher.submit(prompt, (body.target, body.n, body.seed, body.temperature, False))
                queue.put_nowait(("done", row))
            except Exception as error:  # the model call failed
                queue.put_nowait(("error", error))

        def event(choices: list[dict], **extra) -> str:
            return f"data: {json.dumps({**identity, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

        async def events():
            task = loop.create_task(produce())
            batcher.running.add(task)
            task.add_done_callback(batcher.running.discard)
            shown = []
            try:
                yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                while True:
                    kind, value = await queue.get()
                    if kind == "text":
                        shown.append(value)
                        yield event([{"index": 0, "delta": {"content": value}, "finish_reason": None}])
                        continue
                    if kind == "error":
                        message = f"enhancing failed: {type(value).__name__}: {value}"
                        yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
                        break
                    row = value
                    variants = row.variants or [row.enhanced]
                    finish = "stop" if row.status == "ok" else "error"
                    extension = {"status": row.status, "message": row.message, "seed": row.seed}
                    if not shown:  # several variants, an engine that does not stream, or a fallback: whole texts
                        for i, text in enumerate(variants):
                            yield event([{"index": i, "delta": {"content": text}, "finish_reason": None}])
                    elif "".join(shown) != row.enhanced:  # the final cleanup changed shown text (rare), or fallback
                        extension["enhanced"] = row.enhanced
                    yield event(
                        [{"index": i, "delta": {}, "finish_reason": finish} for i in range(len(variants))],
                        enhancer=extension,
                    )
                    yield "data: [DONE]\n\n"
                    break
            finally:
                left.set()  # also when the client hung up mid-stream; the task ends at the engine's next token

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


class Server:
    """uvicorn serving `create_app(...)` in a background thread (for tests and embedding):

    with Server(enhancer, port=0) as server:
        server.url                       # http://127.0.0.1:PORT
    """

    def __init__(self, enhancer, *, host="127.0.0.1", port=0, api_key=None, limits: ServeLimits | None = None):
        import uvicorn

        self.app = create_app(enhancer, limits, api_key)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning"))
        self.thread = None

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Server:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("enhancer serve did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
