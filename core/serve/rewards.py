"""A reward scorer behind HTTP, for scorers that need their own environment (VisionReward needs transformers 4.42):
`enhancer reward serve NAME --option ...` in that environment; the scorer's client (`url=`) in enhancer's.

    POST /v1/score    multipart form: video (the mp4 bytes), prompt, and optionally enhanced
                      -> {"score": float or null}

The upload streams to a temporary folder the server makes itself and deletes after scoring, so memory stays flat
whatever the video's size (up to `max_video_bytes`); requests are scored one at a time (one model, one device).
Requests are read by enhancer.serve.http: Host and key first, Content-Length checked before any byte of the body.
Binds 127.0.0.1 unless told otherwise; asks for a bearer key when given one. Imports nothing heavy, so it runs in
an environment where enhancer is installed with --no-deps.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

from enhancer.contracts import Sample
from enhancer.serve.http import BoundedHTTPServer, GuardedHandler, RequestError

MAX_VIDEO_BYTES = 512 << 20  # a few minutes of 1080p; the scorers read a handful of frames from it
MAX_TEXT_BYTES = 64_000  # the prompt and the enhanced prompt, each


def score_remote(
    url: str, video_path: str, prompt: str, *, enhanced: str | None = None, api_key: str | None = None, timeout=600.0
) -> float | None:
    """The client side: send one video to a RewardServer; its score, or None when it could not score."""
    import urllib.request

    from enhancer.serve.forms import encode_multipart

    fields = {"prompt": prompt, **({"enhanced": enhanced} if enhanced else {})}
    body, content_type = encode_multipart(fields, {"video": Path(video_path).read_bytes()})
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/score", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        value = json.loads(response.read()).get("score")
    return None if value is None else float(value)


class RewardServer:
    def __init__(
        self,
        scorer,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        max_video_bytes: int = MAX_VIDEO_BYTES,
        max_connections: int = 16,
        log=None,
    ):
        self.scorer = scorer
        self.max_video_bytes = max_video_bytes
        self.log = log or (lambda message: None)
        self.lock = threading.Lock()
        self.httpd = BoundedHTTPServer(
            (host, port), self._handler(), api_key=api_key, max_connections=max_connections, log=self.log
        )
        self.thread: threading.Thread | None = None

    @property
    def api_key(self) -> str | None:
        return self.httpd.api_key

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def score(self, video_path: str | Path, prompt: str, enhanced: str | None) -> float | None:
        with self.lock:
            [value] = self.scorer.score([Sample(prompt, enhanced or prompt, str(video_path))])
        return value

    def start(self) -> RewardServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> RewardServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(GuardedHandler):
            timeout = 120  # a big upload over a slow link sends a chunk at least this often

            def post(self):
                if self.route.rstrip("/") != "/v1/score":
                    raise RequestError(404, f"no such endpoint: POST {self.route}; use /v1/score")
                if not self.headers.get("Content-Type", "").lower().startswith("multipart/form-data"):
                    raise RequestError(415, "send multipart/form-data with a 'video' file and a 'prompt' field")
                limit = server.max_video_bytes + 4 * MAX_TEXT_BYTES  # the video, the text fields, the boundaries
                with tempfile.TemporaryDirectory(prefix="enhancer-reward-") as spool:
                    form = self.read_form(limit, spool, MAX_TEXT_BYTES)
                    video, prompt = form.get("video"), form.get("prompt")
                    if not isinstance(video, Path) or not video.stat().st_size:
                        raise RequestError(422, "video: send the mp4 as a file part named 'video'")
                    if not isinstance(prompt, str) or not prompt:
                        raise RequestError(422, "prompt: required (the simple prompt the video was made for)")
                    enhanced = form.get("enhanced") if isinstance(form.get("enhanced"), str) else None
                    try:
                        value = server.score(video, prompt, enhanced)
                    except Exception as error:  # the scorer failed on this video: say so, keep serving
                        server.log(f"reward serve: {type(error).__name__}: {error}")
                        message = f"the scorer failed on this video: {type(error).__name__}: {error}"
                        return self.send_json(
                            500, {"error": {"message": message, "type": "server_error"}, "score": None}
                        )
                return self.send_json(200, {"score": value})

        return Handler
