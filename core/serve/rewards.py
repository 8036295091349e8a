"""A reward scorer behind HTTP, for scorers that need their own environment (VisionReward needs transformers 4.42):
`enhancer reward serve NAME --option ...` in that environment; the scorer's client (`url=`) in enhancer's.

    POST /v1/score    multipart form: video (the mp4 bytes), prompt, and optionally enhanced
                      -> {"score": float or null}

The upload goes to a temporary file the server names itself and deletes after scoring; requests are scored one
at a time (one model, one device). Binds 127.0.0.1 unless told otherwise; asks for a bearer key when given one.
Imports nothing heavy, so it runs in an environment where enhancer is installed with --no-deps.
"""

from __future__ import annotations

import hmac
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from enhancer.contracts import Sample
from enhancer.serve.forms import parse_form

MAX_VIDEO_BYTES = 512 << 20


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
    def __init__(self, scorer, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None, log=None):
        self.scorer = scorer
        self.api_key = api_key
        self.log = log or (lambda message: None)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def score(self, video: bytes, prompt: str, enhanced: str | None) -> float | None:
        with tempfile.TemporaryDirectory(prefix="enhancer-reward-") as tmp, self.lock:
            path = Path(tmp) / "video.mp4"
            path.write_bytes(video)
            [value] = self.scorer.score([Sample(prompt, enhanced or prompt, str(path))])
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

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code: int, payload: dict):
                body = json.dumps(payload).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                if self.path.split("?")[0].rstrip("/") != "/v1/score":
                    return self._send(404, {"error": f"no such endpoint: POST {self.path}; use /v1/score"})
                if server.api_key and not hmac.compare_digest(
                    self.headers.get("Authorization", ""), f"Bearer {server.api_key}"
                ):
                    return self._send(401, {"error": "missing or wrong API key: send Authorization: Bearer KEY"})
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_VIDEO_BYTES:
                    return self._send(413, {"error": f"upload over {MAX_VIDEO_BYTES >> 20} MB"})
                try:
                    form = parse_form(self.headers.get("Content-Type", ""), self.rfile.read(length))
                except ValueError as error:
                    return self._send(400, {"error": str(error)})
                video, prompt = form.get("video"), form.get("prompt")
                if not isinstance(video, bytes) or not video or not isinstance(prompt, str) or not prompt.strip():
                    return self._send(400, {"error": "send a multipart form with a 'video' file and a 'prompt'"})
                enhanced = form.get("enhanced") if isinstance(form.get("enhanced"), str) else None
                try:
                    value = server.score(video, prompt, enhanced)
                except Exception as error:  # the scorer failed on this video: say so, keep serving
                    server.log(f"reward serve: {type(error).__name__}: {error}")
                    return self._send(500, {"error": f"{type(error).__name__}: {error}", "score": None})
                return self._send(200, {"score": value})

        return Handler
