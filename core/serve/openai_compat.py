"""OpenAI compatibility for `enhancer serve`'s /v1/chat/completions and /v1/models: OpenAI's error shape, stop
strings (whole and streamed), token usage and finish reasons. The routes themselves are in enhancer.serve.api."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from starlette.exceptions import HTTPException

# Used only where the engine exposes no tokenizer (llama.cpp: the xllamacpp wheel has no tokenize call; a remote
# endpoint): OpenAI's rule of thumb for English text.
ESTIMATED_CHARS_PER_TOKEN = 4


class ApiError(HTTPException):
    """An HTTP error that names the request field at fault (`param`, in OpenAI's error shape)."""

    def __init__(self, status_code: int, detail: str, param: str | None = None, headers: dict | None = None):
        super().__init__(status_code, detail, headers)
        self.param = param


def openai_error(status: int, message: str, param: str | None = None) -> dict:
    """OpenAI's error body. The openai SDKs pick the exception class from the status (401 AuthenticationError, 422
    UnprocessableEntityError, 429 RateLimitError, 5xx InternalServerError) and read message, type, param, code."""
    if status == 401:
        kind, code = "authentication_error", "invalid_api_key"
    elif status == 403:
        kind, code = "permission_error", None
    elif status == 429:
        kind, code = "rate_limit_error", "rate_limit_exceeded"
    elif status >= 500:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def message_text(content) -> str:
    """A chat message's text: the string, or the text parts of OpenAI's content parts."""
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    return content or ""


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first occurrence of any stop string (not included), and whether one occurred."""
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    return (text[: min(found)], True) if found else (text, False)


class StopCutter:
    """`cut_at_stop` for text that arrives in pieces: `feed(piece)` returns what may be sent now, holding back a tail
    one character shorter than the longest stop string, so a stop string split across pieces is still caught and
    nothing after it is ever sent; `end()` returns the held tail. `sent` is everything returned so far."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.hold = max((len(stop) for stop in stops), default=1) - 1
        self.pending = ""
        self.sent = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        text, self.stopped = cut_at_stop(self.pending, self.stops)
        keep = len(text) if self.stopped else max(0, len(self.pending) - self.hold)
        out, self.pending = text[:keep], "" if self.stopped else self.pending[keep:]
        self.sent += out
        return out

    def end(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        self.sent += out
        return out


def token_counter(enhancer) -> tuple[Callable[[str], int], str]:
    """How `usage` counts tokens, and how it says it counted them: with a `tokenize(text)` method or a Hugging Face
    `tokenizer` on the enhancer or its engine (the transformers engine has one), else an estimate of
    ESTIMATED_CHARS_PER_TOKEN characters a token (the llama.cpp and openai engines expose no tokenizer)."""

    owners = (enhancer, getattr(enhancer, "engine", None))
    tokenize = next((o.tokenize for o in owners if callable(getattr(o, "tokenize", None))), None)
    if tokenize is not None:
        return lambda text: len(tokenize(text)), "tokenizer"
    tokenizer = next(
        (o.tokenizer for o in owners if callable(getattr(getattr(o, "tokenizer", None), "encode", None))), None
    )
    if tokenizer is not None:
        # A copy: a fast tokenizer used from two threads at once (this count, and the engine's padded batch encode
        # in its worker thread) can fail with "Already borrowed".
        counting = copy.deepcopy(tokenizer)
        return lambda text: len(counting.encode(text, add_special_tokens=False)), "tokenizer"
    estimate = f"estimate: {ESTIMATED_CHARS_PER_TOKEN} characters a token (the engine exposes no tokenizer)"
    return lambda text: math.ceil(len(text) / ESTIMATED_CHARS_PER_TOKEN), estimate


def finish_reasons(row, stopped: list[bool]) -> list[str]:
    """OpenAI's finish_reason for each returned text: "stop" where a stop string ended it, "length" where the row
    says max_tokens cut the rewrite (a `truncated` flag, or one per variant, where the enhancer sets it), else "stop"
    (the rewrite's own end; a fallback's or error's status is in the `enhancer` field, as OpenAI has no such value)."""
    truncated = getattr(row, "truncated", False) if row.status == "ok" else False
    flags = list(truncated) if isinstance(truncated, list | tuple) else [bool(truncated)] * len(stopped)
    return ["length" if i < len(flags) and flags[i] and not hit else "stop" for i, hit in enumerate(stopped)]
