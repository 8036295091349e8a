"""`enhancer rate serve`: the rating app. A page at / shows the idea and two outputs side by side (blind: no
variant names), the rater picks A, B or tie; ratings land in SQLite one committed row at a time.

    GET  /                     the page            GET  /api/next?rater=NAME   the next pair for this rater
    POST /api/rate             {pair, winner, rater}                  GET  /api/scores   Bradley-Terry + CIs
    GET  /api/video/{pair}/{a|b}   a pair's video, when the results have videos (the server picks the file)
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path

from pydantic import BaseModel

from enhancer.eval.rate import WINNERS, RatingStore, next_pair, scores

RATER = re.compile(r"^[\w .@-]{1,64}$")


class RateRequest(BaseModel):
    pair: int
    winner: str
    rater: str


def create_rating_app(pairs, store: RatingStore, api_key: str | None = None, seed: int = 0):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    by_id = {p.id: p for p in pairs}
    app = FastAPI(title="enhancer rate", docs_url=None, redoc_url=None, openapi_url=None)
    page = (Path(__file__).parent / "static" / "rate.html").read_text(encoding="utf-8")

    def rater_name(name: str) -> str:
        if not RATER.match(name or ""):
            raise HTTPException(422, "rater: 1-64 letters, digits, spaces or . @ - _ (your name or initials)")
        return name

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if api_key and request.url.path != "/":
            if not hmac.compare_digest(
                request.headers.get("authorization", "").encode(), f"Bearer {api_key}".encode()
            ):
                return JSONResponse({"error": "missing or wrong API key: send Authorization: Bearer KEY"}, 401)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
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
        return {**pair.public(), "done": False, "rated": rated, "pairs": len(pairs)}

    @app.post("/api/rate")
    async def rate(body: RateRequest):
        rater = rater_name(body.rater)
        if body.pair not in by_id:
            raise HTTPException(422, f"pair: no pair {body.pair}")
        if body.winner not in WINNERS:
            raise HTTPException(422, f"winner: one of {', '.join(WINNERS)}")
        if body.pair in store.rated_by(rater):
            raise HTTPException(409, f"{rater} already rated pair {body.pair}")
        store.add(rater, by_id[body.pair], body.winner)
        return {"ok": True, "rated": len(store.rated_by(rater))}

    @app.get("/api/scores")
    async def current_scores():
        return scores(store.rows(), resamples=200)

    @app.get("/api/video/{pair}/{side}")
    async def video(pair: int, side: str):
        if pair not in by_id or side not in ("a", "b"):
            raise HTTPException(404, "no such video")
        path = by_id[pair].video_a if side == "a" else by_id[pair].video_b
        if not path or not Path(path).is_file():
            raise HTTPException(404, "this pair has no video on that side")
        return FileResponse(path, media_type="video/mp4")

    return app
