"""`enhancer rate serve`: the rating app. A page at / shows the idea and two outputs side by side (blind: no
variant names), the rater picks A, B or tie; ratings land in SQLite one committed row at a time.

    GET  /                     the page            GET  /api/next?rater=NAME   the next pair for this rater
    POST /api/rate             {pair, winner, rater}                  GET  /api/scores   Bradley-Terry + CIs
    GET  /api/video/{pair}/{a|b}   a pair's video, when the results have videos (the server picks the file)

    enhancer rate serve --results runs/eval                      # http://127.0.0.1:8300/
    enhancer rate serve --results runs/eval --host 0.0.0.0 --api-key KEY --max-body-bytes 16000

Pair ids are 16 hex digits derived from the pair's content (`enhancer.eval.rate.pair_id`), stable when variants are
added. Bodies over `max_body_bytes` get 413 (a declared Content-Length before the body is read, a chunked body as it
arrives); a Content-Length that is not a byte count gets 400. With an API key every /api route needs
`Authorization: Bearer KEY`, except a video fetched through the signed link /api/next hands out (`video_a_url`,
`video_b_url`): a <video src> cannot send headers, so the link carries an HMAC of pair, side and expiry instead.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path

from pydantic import BaseModel, Field

from enhancer.eval.rate import PAIR_ID, WINNERS, RatingStore, next_pair, scores
from enhancer.serve.api import BodyLimit
from enhancer.serve.http import LoopbackHostsOnly

RATER = re.compile(r"^[\w .@-]{1,64}$")
VIDEO_PATH = re.compile(r"^/api/video/([0-9a-f]{16})/(a|b)$")
MAX_BODY_BYTES = 16_000  # {pair, winner, rater} is under 200 bytes; this leaves room and nothing more
VIDEO_LINK_S = 3600  # long enough to watch and rate a pair; a leaked link stops working within the hour


class RateRequest(BaseModel):
    pair: str = Field(pattern=PAIR_ID.pattern, description="16 hex digits, as /api/next gives it")
    winner: str
    rater: str


def sign_video(api_key: str, pair: str, side: str, expires: int) -> str:
    """The token of a video link: HMAC-SHA256 under the API key over pair, side and expiry (unix seconds), hex."""
    return hmac.new(api_key.encode(), f"{pair}/{side}/{expires}".encode(), hashlib.sha256).hexdigest()


def video_url(pair: str, side: str, api_key: str | None = None) -> str:
    """The URL a page puts in <video src>: plain without a key, signed and valid for VIDEO_LINK_S with one."""
    path = f"/api/video/{pair}/{side}"
    if not api_key:
        return path
    expires = int(time.time()) + VIDEO_LINK_S
    return f"{path}?token={sign_video(api_key, pair, side, expires)}&expires={expires}"


def video_link_problem(api_key: str, path: str, token: str, expires: str, now: float) -> str | None:
    """Why this signed video link is refused, or None when it is valid and unexpired."""
    match = VIDEO_PATH.fullmatch(path)  # fullmatch: `$` alone would let a trailing newline through
    if not match:
        return "missing or wrong API key: send Authorization: Bearer KEY"
    if not token or not expires:
        return "missing or wrong API key: send Authorization: Bearer KEY, or use the signed URL /api/next returned"
    if not re.fullmatch(r"[0-9]{1,12}", expires):
        return f"video link: expires={expires!r} is not unix seconds; use the URL /api/next returned as it is"
    pair, side = match.groups()
    if not hmac.compare_digest(token.encode(), sign_video(api_key, pair, side, int(expires)).encode()):
        return "video link: the token does not match this pair, side and expiry; use the URL /api/next returned"
    if int(expires) <= now:
        return "video link expired: reload the page (GET /api/next) for a fresh one"
    return None


def create_rating_app(
    pairs, store: RatingStore, api_key: str | None = None, seed: int = 0, max_body_bytes: int = MAX_BODY_BYTES
):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if max_body_bytes < 1:
        raise ValueError(f"rate serve: max_body_bytes must be >= 1, got {max_body_bytes}")
    by_id = {p.id: p for p in pairs}
    app = FastAPI(title="enhancer rate", docs_url=None, redoc_url=None, openapi_url=None)
    # Counts a body without Content-Length (chunked) as it arrives; the guard below checks a declared one.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if not api_key:  # a page that rebinds its DNS name to 127.0.0.1 must not rate (docs/security.md)
        app.add_middleware(LoopbackHostsOnly)
    page = (Path(__file__).parent / "static" / "rate.html").read_text(encoding="utf-8")

    def rater_name(name: str) -> str:
        if not RATER.match(name or ""):
            raise HTTPException(422, "rater: 1-64 letters, digits, spaces or . @ - _ (your name or initials)")
        return name

    @app.middleware("http")  # added after BodyLimit, so it runs first
    async def guard(request: Request, call_next):
        if api_key and request.url.path != "/":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                problem = video_link_problem(
                    api_key,
                    request.url.path,
                    request.query_params.get("token", ""),
                    request.query_params.get("expires", ""),
                    time.time(),
                )
                if problem:
                    return JSONResponse({"error": problem}, 401)
        declared = request.headers.get("content-length")
        if declared is not None:
            if not re.fullmatch(r"[0-9]+", declared.strip()):
                return JSONResponse(
                    {"error": f"Content-Length {declared!r} is not a byte count: send the body's size in bytes"}, 400
                )
            if int(declared) > max_body_bytes:
                too_big = f"request body of {int(declared)} bytes; the limit is {max_body_bytes} (--max-body-bytes)"
                return JSONResponse({"error": too_big}, 413)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and BodyLimit's 413
    async def http_error(request, error: StarletteHTTPException):
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in error.errors()
        ]
        return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/api/next")
    async def next_one(rater: str):
        pair = next_pair(pairs, store, rater_name(rater), seed)
        rated = len(store.rated_by(rater))
        if pair is None:
            return {"done": True, "rated": rated, "pairs": len(pairs)}
        links = {
            f"video_{side}_url": video_url(pair.id, side, api_key)
            for side, path in (("a", pair.video_a), ("b", pair.video_b))
            if path
        }
        return {**pair.public(), **links, "done": False, "rated": rated, "pairs": len(pairs)}

    @app.post("/api/rate")
    async def rate(body: RateRequest):
        rater = rater_name(body.rater)
        if body.pair not in by_id:
            raise HTTPException(422, f"pair: no pair {body.pair} in these results; rate the pair /api/next gives")
        if body.winner not in WINNERS:
            raise HTTPException(422, f"winner: one of {', '.join(WINNERS)}")
        if body.pair in store.rated_by(rater):
            raise HTTPException(409, f"{rater} already rated pair {body.pair}; GET /api/next for one still open")
        store.add(rater, by_id[body.pair], body.winner)
        return {"ok": True, "rated": len(store.rated_by(rater))}

    @app.get("/api/scores")
    async def current_scores():
        return scores(store.rows(), resamples=200)

    @app.get("/api/video/{pair}/{side}")
    async def video(pair: str, side: str):
        if pair not in by_id or side not in ("a", "b"):
            raise HTTPException(404, "no such video")
        path = by_id[pair].video_a if side == "a" else by_id[pair].video_b
        if not path or not Path(path).is_file():
            raise HTTPException(404, "this pair has no video on that side")
        return FileResponse(path, media_type="video/mp4")

    return app
