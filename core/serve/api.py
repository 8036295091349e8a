"""`enhancer serve`: the enhancer over HTTP (FastAPI on uvicorn).

    POST /v1/enhance            {"prompt", "target", "n", "seed", "temperature", "negative"} -> an Enhancement
    POST /v1/chat/completions   OpenAI-compatible: the last user message is the simple prompt; `stream: true`
                                sends server-sent events (chat.completion.chunk) as the rewrite is written
    GET  /v1/models             the served model, OpenAI-style
    GET  /healthz               liveness and the queue: its load, max_queue, clients that hung up (never needs the key)
    GET  /                      the web page: enhance, compare variants side by side, edit, copy

Requests that arrive within a short window (`batch_window_ms`) and ask for the same target, n, seed,
temperature and negative are answered by one batched generate call, so throughput grows with load. Engines that
decode several requests at once (llama.cpp's slots, a remote endpoint) take that many calls together; the
transformers engine runs one batch at a time, in a worker thread.

The queue is bounded: at most `max_queue` rewrites wait or run at once, a request for n variants counting n (streamed
ones too); one that does not fit gets 429 with `Retry-After` (an estimate from recent model calls, 1 to 60 s) and
says which flag raises the limit. A client that hangs up costs nothing more: a request still queued is dropped
before it reaches the model, a model call whose clients have all left stops at the next token (`should_stop`,
threaded to the engines), and a streamed request stops at the next token. /healthz shows the queue.

/v1/chat/completions takes the fields OpenAI clients send: `max_tokens` (or `max_completion_tokens`, 1 to 4096) caps
the rewrite's new tokens; `stop` (a string or up to 4) ends each text before the first stop string, in streaming too
(a tail as long as the longest stop string is held back, so one split across pieces is never sent); system and
developer messages become the enhancer's `instructions` where its `enhance` takes them, else the answer's `enhancer`
field says in `notes` that they were ignored; `stream_options: {"include_usage": true}` adds a last chunk with
`usage`. `usage` counts tokens with the engine's tokenizer (the transformers engine's), else estimates 4 characters a
token and says so in `enhancer.usage_counted_by`; prompt_tokens is the user's prompt, completion_tokens the returned
texts. finish_reason is "length" where the row carries `truncated` (max_tokens cut the rewrite; Enhancement does not
record that yet, so its rows say "stop"), else "stop"; enhancer's own status ("ok", "fallback", "error") and message
are in the `enhancer` field.

With an API key every route but /healthz needs `Authorization: Bearer KEY`; without one, only loopback Host names
are answered (403 otherwise). Bodies over `max_body_bytes` get 413,
malformed JSON and invalid fields 422 with what is wrong, `n` over `max_n` 422, a full queue 429, a request that
waits longer than `request_timeout_s` 504; the server keeps serving. No route reads or writes a path the client names.
Errors on the OpenAI routes (/v1/chat/completions, /v1/models) take OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`, so the openai SDKs raise AuthenticationError, UnprocessableEntityError, RateLimitError... with
the message; the other routes answer `{"error": "message"}`, which the web page reads.

    .venv/bin/enhancer serve --port 8000 --max-queue 64       # CPU or GPU alike; --help lists every limit
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.requests import Request  # here, not in create_app: FastAPI resolves route annotations in this module

from enhancer.contracts import takes_keyword
from enhancer.prompts import PROFILES, check_prompt
from enhancer.serve.batcher import Batcher, until_client_leaves
from enhancer.serve.http import LoopbackHostsOnly
from enhancer.serve.limits import ServeLimits
from enhancer.serve.openai_compat import (
    ApiError,
    StopCutter,
    cut_at_stop,
    finish_reasons,
    message_text,
    openai_error,
    token_counter,
)

SEED = Field(None, ge=0, le=2**32 - 1)  # what every engine's sampler takes; 2**64 was a 500 before


class EnhanceRequest(BaseModel):
    prompt: str
    target: str = "generic"
    n: int = Field(1, ge=1)
    seed: int | None = SEED
    temperature: float | None = Field(None, ge=0, le=2)
    negative: bool = False
    lang: str | None = None  # the language to write in (needs the server's --translator or a multilingual model)
    mode: str | None = None  # concise, cinematic, detailed
    instructions: str | None = None  # the caller's direction, a sentence or two
    passthrough_words: int | None = Field(None, ge=0, le=10_000)
    image: str | None = None  # a data:image/...;base64 URI (this server fetches no URLs); needs the server's --vlm
    max_new_tokens: int | None = Field(None, ge=8, le=4096)  # as --max-new-tokens; the ComfyUI node's max_words

    def options(self) -> dict:
        """The enhance() keywords this request sets."""
        names = ("lang", "mode", "instructions", "passthrough_words", "image", "max_new_tokens")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


MAX_TOKENS = Field(None, ge=1, le=4096)  # as --max-new-tokens allows; the longest target's rewrite needs about 260
MAX_STOP_STRINGS = 4  # as OpenAI allows


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None  # None: an assistant turn that only called tools


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage]
    n: int = Field(1, ge=1)
    seed: int | None = SEED
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = MAX_TOKENS  # OpenAI's older name for max_completion_tokens
    max_completion_tokens: int | None = MAX_TOKENS
    stop: list[str] | str | None = Field(None, validate_default=True)  # a list after validation, [] for none
    target: str = "generic"  # extra_body={"target": "wan"} from the OpenAI client
    lang: str | None = None  # extra_body too, as /v1/enhance's fields
    mode: str | None = None
    passthrough_words: int | None = Field(None, ge=0, le=10_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None  # {"include_usage": true}: a last chunk with usage

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, as OpenAI allows; got {len(stops)}")
        if "" in stops:
            raise ValueError("an empty stop string would end every text before it starts: drop it")
        return stops


OPEN_PATHS = ("/", "/healthz")  # the page (static, no data) and liveness need no key; the page asks for one
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/models")  # errors in OpenAI's shape; /v1/enhance keeps {"error": text}


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
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    limits = limits or ServeLimits()
    batcher = Batcher(enhancer, limits.batch_window_ms / 1000, limits.max_batch, limits.max_queue)
    stream_takes_stop = takes_keyword(getattr(enhancer, "enhance_stream", None), "should_stop")
    # The chat route's keywords each call takes: a stand-in enhancer (or one older than `instructions`) may not.
    takes = {
        method: {
            name: takes_keyword(getattr(enhancer, method, None), name)
            for name in ("max_new_tokens", "instructions", "lang", "mode", "passthrough_words")
        }
        for method in ("enhance", "enhance_stream")
    }
    count_tokens, counted_by = token_counter(enhancer)
    model_label = getattr(enhancer, "model_label", "enhancer")
    started = int(time.time())  # /v1/models' `created`

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="enhancer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    # With a VLM the body may carry an image as base64 (4/3 of its bytes); without one an image is refused anyway.
    body_limit = limits.max_body_bytes + (
        math.ceil(limits.max_image_bytes * 4 / 3) if getattr(enhancer, "vlm", None) else 0
    )
    if hasattr(enhancer, "image_urls"):
        enhancer.image_urls = False  # an image from a client is data, never a URL this server would fetch
    app.add_middleware(BodyLimit, max_bytes=body_limit)
    if not api_key:  # a page that rebinds its DNS name to 127.0.0.1 gets 403, not the model (docs/security.md)
        app.add_middleware(LoopbackHostsOnly)
    app.state.batcher = batcher

    def error_response(request: Request, status: int, message: str, param=None, headers=None) -> JSONResponse:
        """OpenAI's error shape on the OpenAI routes, `{"error": "message"}` on the others (the web page reads it)."""
        body = openai_error(status, message, param) if request.url.path in OPENAI_ROUTES else {"error": message}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path not in OPEN_PATHS and api_key:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error_response(request, 401, "missing or wrong API key: send Authorization: Bearer KEY")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > body_limit:
            message = f"request body of {declared} bytes; the limit is {body_limit}"
            return error_response(request, 413, message)
        # A body without Content-Length (chunked) is counted as it arrives, by BodyLimit.
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems, fields = [], []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {item.get('msg')}")
            if item.get("type") != "json_invalid":  # a JSON error's loc is a position, not a field
                fields.append(where)
        message = "invalid request: " + "; ".join(problems)
        return error_response(request, 422, message, param=fields[0] if fields else None)

    @app.exception_handler(HTTPException)  # FastAPI's HTTPException, ApiError and BodyLimit's
    async def http_error(request: Request, error: HTTPException):
        param = getattr(error, "param", None)
        return error_response(request, error.status_code, error.detail, param=param, headers=error.headers)

    def checked(prompt: str, target: str, n: int, prompt_field: str = "prompt") -> str:
        if n > limits.max_n:
            raise ApiError(422, f"invalid request: n: at most {limits.max_n} variants per request, got {n}", "n")
        if target not in PROFILES:
            raise ApiError(422, f"unknown target {target!r}; valid targets: {', '.join(PROFILES)}", "target")
        try:
            return check_prompt(prompt)
        except ValueError as error:
            raise ApiError(422, str(error), prompt_field) from error

    def admitted(units: int) -> None:
        """Counts a request's rewrites into the queue, or answers 429 when they do not fit."""
        retry_after = batcher.admit(units)
        if retry_after is not None:
            raise ApiError(
                429,
                f"the queue is full: {batcher.load} of max_queue {batcher.max_queue} rewrites are waiting or being "
                f"generated and this request asks for {units} (a request counts its n); retry after {retry_after} s, "
                "or start the server with a larger --max-queue",
                headers={"Retry-After": str(retry_after)},
            )

    async def enhance_one(
        request: Request, prompt: str, target: str, n: int, seed, temperature, negative: bool, options=None
    ):
        prompt = checked(prompt, target, n, "prompt" if request.url.path == "/v1/enhance" else "messages")
        admitted(n)
        started = time.perf_counter()
        key = (target, n, seed, temperature, negative, tuple(sorted((options or {}).items())))
        job = batcher.submit(prompt, key, units=n)
        client_left = asyncio.get_running_loop().create_task(until_client_leaves(request))
        try:
            done, _ = await asyncio.wait(
                {job.future, client_left}, timeout=limits.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            client_left.cancel()
            if not job.future.done():
                job.future.cancel()  # dropped if still queued; its model call stops once all in it have left
        if job.future.cancelled():
            if client_left in done:  # 499 as nginx logs it; no one reads the answer
                batcher.hung_up += 1
                raise ApiError(499, "the client closed the connection before the answer")
            raise ApiError(504, f"no answer within {limits.request_timeout_s} s; try again later")
        try:
            row, queue_s, generate_s, batch = job.future.result()
        except ValueError as error:  # enhance() refuses bad input with a ValueError (e.g. instructions too long)
            param, why = refused_options(options, request.url.path)
            raise ApiError(422, f"invalid request: {error}{why}", param) from error
        except Exception as error:  # the model call failed for the whole batch
            raise ApiError(500, f"enhancing failed: {type(error).__name__}: {error}") from error
        timings = {
            "queue_s": round(queue_s, 3),
            "generate_s": round(generate_s, 3),
            "total_s": round(time.perf_counter() - started, 3),
            "batch": batch,
        }
        return row, timings

    page = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
    page = page.replace("__TARGETS__", json.dumps(list(PROFILES)))

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/healthz")
    async def healthz():
        return {
            "status": "ok",
            "model": model_label,
            "batches": batcher.batches,
            "requests": batcher.requests,
            "queue": batcher.load,  # rewrites waiting or being generated
            "max_queue": batcher.max_queue,
            "hung_up": batcher.hung_up,  # requests whose client closed the connection before the answer
            "dropped": batcher.dropped,  # requests whose client left before the model saw them
            "stopped": batcher.stopped,  # model calls stopped because all their clients had left
        }

    @app.get("/v1/models")
    async def models():
        model = {"id": model_label, "object": "model", "created": started, "owned_by": "enhancer"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/enhance")
    async def enhance(body: EnhanceRequest, request: Request):
        options = body.options()
        if "image" in options and not options["image"].startswith("data:image/"):
            raise ApiError(
                422,
                "invalid request: image: send the image itself as a data URI (data:image/png;base64,...); "
                "this server fetches no URLs",
                "image",
            )
        row, timings = await enhance_one(
            request, body.prompt, body.target, body.n, body.seed, body.temperature, body.negative, options
        )
        return {**row.to_dict(), "variants": row.variants or [row.enhanced], "timings": timings}

    def chat_options(body: ChatRequest, method: str) -> tuple[dict, list[str]]:
        """The keywords for `enhancer.<method>` from the chat fields, and notes on the fields it cannot take."""
        if None not in (body.max_tokens, body.max_completion_tokens) and body.max_tokens != body.max_completion_tokens:
            raise ApiError(
                422,
                f"invalid request: max_tokens ({body.max_tokens}) and max_completion_tokens "
                f"({body.max_completion_tokens}) disagree; they are one limit under two names: send one of them",
                "max_completion_tokens",
            )
        max_tokens = body.max_completion_tokens or body.max_tokens
        instructions = "\n\n".join(
            text
            for m in body.messages
            if m.role in ("system", "developer") and (text := message_text(m.content).strip())
        )
        options, notes = {}, []
        for name in ("lang", "mode", "passthrough_words"):  # enhancer's own fields, sent in extra_body
            if getattr(body, name) is not None:
                if not takes[method][name]:
                    raise ApiError(
                        422, f"invalid request: {name}: the enhancer behind this server takes no {name}", name
                    )
                options[name] = getattr(body, name)
        if max_tokens is not None:
            if takes[method]["max_new_tokens"]:
                options["max_new_tokens"] = max_tokens
            else:
                notes.append("max_tokens ignored: the enhancer behind this server takes no max_new_tokens")
        if instructions:
            if takes[method]["instructions"]:
                options["instructions"] = instructions
            else:
                notes.append(
                    "system message ignored: the enhancer behind this server takes no instructions, so the rewrite "
                    "follows its own system prompt; put what you want in the user message instead"
                )
        return options, notes

    def refused_options(options, request_path: str = "") -> tuple[str | None, str]:
        """The field to blame, and a note for the message, when enhance() refuses a request's options."""
        if request_path == "/v1/enhance":  # its own fields: the message names the one at fault
            return None, ""
        if options and "instructions" in options:  # the one option enhance() checks beyond our own validation
            return "messages", " (the system and developer messages are passed as the enhancer's instructions)"
        return None, ""

    def usage(prompt: str, texts: list[str]) -> dict:
        prompt_tokens, completion_tokens = count_tokens(prompt), sum(count_tokens(text) for text in texts)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise ApiError(
                422, "messages: no user message; the last user message is the prompt to enhance", "messages"
            )
        content = message_text(users[-1].content)
        streams = body.stream and body.n == 1 and hasattr(enhancer, "enhance_stream")
        options, notes = chat_options(body, "enhance_stream" if streams else "enhance")
        if body.stream:
            prompt = checked(content, body.target, body.n, "messages")
            admitted(body.n)
            return stream_chat(prompt, content, body, streams, options, notes, request)
        row, timings = await enhance_one(
            request, content, body.target, body.n, body.seed, body.temperature, False, options
        )
        cut = [cut_at_stop(text, body.stop) for text in row.variants or [row.enhanced]]
        texts = [text for text, _ in cut]
        reasons = finish_reasons(row, [hit for _, hit in cut])
        extension = {"status": row.status, "message": row.message, "seed": row.seed, "timings": timings}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": row.model or model_label,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
            ],
            "usage": usage(content, texts),
            "enhancer": {**extension, "usage_counted_by": counted_by, **({"notes": notes} if notes else {})},
        }

    def stream_chat(prompt: str, content: str, body: ChatRequest, streams: bool, options: dict, notes, request):
        """OpenAI's streaming format: a role chunk, content deltas as the rewrite is written, a last chunk with the
        finish_reason (and enhancer's row), with `stream_options.include_usage` a chunk with usage and no choices,
        then `data: [DONE]`. Several variants (n > 1) are each sent whole. Text is cut before the first stop string.

        Its n rewrites are already admitted to the queue. The work starts here, not when the response body is first
        read, so that it is released whatever becomes of the response; a client that leaves (seen by a watcher, or
        by the response failing to send) drops it before the model, or stops the engine at its next token."""
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
        # n > 1, or an enhancer that does not stream: a batched job (which frees its own units when it ends)
        key = (body.target, body.n, body.seed, body.temperature, False, tuple(sorted(options.items())))
        job = None if streams else batcher.submit(prompt, key, body.n)
        in_model = False
        held = [] if job else [body.n]  # a stream's admitted units, until its model call ends or it is dropped

        def release() -> None:
            if held:
                batcher.release(held.pop())

        def on_text(piece: str) -> bool:
            # A stop string does not stop the engine: the rewrite runs to its end, so the row (its status, its
            # cleanup) is the one the same request without `stream` gets; only the text after the stop is not sent.
            loop.call_soon_threadsafe(queue.put_nowait, ("text", piece))
            return left.is_set()

        async def produce():
            nonlocal in_model
            try:
                if streams:
                    async with batcher.gate:  # as a batched call: at most `concurrency` model calls at once
                        if left.is_set():  # the client left while it waited
                            return
                        in_model = True
                        started = time.perf_counter()
                        stop = {"should_stop": left.is_set} if stream_takes_stop else {}
                        row = await asyncio.to_thread(
                            enhancer.enhance_stream,
                            prompt,
                            on_text,
                            target=body.target,
                            seed=body.seed,
                            temperature=body.temperature,
                            **options,
                            **stop,
                        )
                        if not left.is_set():
                            batcher.measured(time.perf_counter() - started, 1)
                else:
                    row, *_ = await job.future
                queue.put_nowait(("done", row))
            except Exception as error:  # the model call failed
                queue.put_nowait(("error", error))

        def leave() -> None:
            if not left.is_set():
                batcher.hung_up += 1
            left.set()
            if job is not None:
                job.future.cancel()  # dropped if still queued; no-op once answered
            elif not in_model and held:  # it will not reach the model: free its place in the queue now
                batcher.dropped += 1
                release()

        task = loop.create_task(produce())
        batcher.running.add(task)
        task.add_done_callback(batcher.running.discard)
        if job is None:
            task.add_done_callback(lambda _: release())
        client_left = loop.create_task(until_client_leaves(request))
        client_left.add_done_callback(lambda watcher: None if watcher.cancelled() else leave())

        def event(choices: list[dict], **extra) -> str:
            return f"data: {json.dumps({**identity, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

        def delta(text: str, index: int = 0) -> str:
            return event([{"index": index, "delta": {"content": text}, "finish_reason": None}])

        async def events():
            cutter = StopCutter(body.stop)
            received = False  # text came as it was written (else the whole texts are sent at the end)
            try:
                yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                while True:
                    kind, value = await queue.get()
                    if kind == "text":
                        received = True
                        if shown := cutter.feed(value):
                            yield delta(shown)
                        continue
                    if kind == "error":
                        if isinstance(value, ValueError):  # enhance_stream refused the request's options
                            param, why = refused_options(options)
                            error = openai_error(422, f"invalid request: {value}{why}", param)
                        else:
                            error = openai_error(500, f"enhancing failed: {type(value).__name__}: {value}")
                        yield f"data: {json.dumps(error, ensure_ascii=False)}\n\n"
                        break
                    row = value
                    cut = [cut_at_stop(text, body.stop) for text in row.variants or [row.enhanced]]
                    texts = [text for text, _ in cut]
                    extension = {"status": row.status, "message": row.message, "seed": row.seed}
                    if notes:
                        extension["notes"] = notes
                    if not received:  # several variants, an engine that does not stream, or a fallback: whole texts
                        for i, text in enumerate(texts):
                            yield delta(text, i)
                    else:
                        if tail := cutter.end():
                            yield delta(tail)
                        if cutter.sent != texts[0]:  # the final cleanup changed shown text (rare), or fallback
                            extension["enhanced"] = texts[0]
                    reasons = finish_reasons(row, [hit for _, hit in cut])
                    yield event(
                        [{"index": i, "delta": {}, "finish_reason": reason} for i, reason in enumerate(reasons)],
                        enhancer=extension,
                    )
                    if (body.stream_options or {}).get("include_usage"):
                        counted = {**extension, "usage_counted_by": counted_by}
                        yield event([], usage=usage(content, texts), enhancer=counted)
                    yield "data: [DONE]\n\n"
                    break
            finally:  # also when the client hung up mid-stream: the engine stops at its next token
                client_left.cancel()
                if not task.done():
                    leave()

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
