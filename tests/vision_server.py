"""Real HTTP servers on 127.0.0.1 for the vision tests.

    with VisionChatServer(responder=lambda body: "A red square.") as server:   # OpenAI-compatible, with vision
        describe_image(image, vlm=server.base_url)                               # http://127.0.0.1:PORT/v1
    with FileServer({"/frame.png": ("image/png", png_bytes)}) as files:         # plain GET of fixed answers
        load_image(files.url("/frame.png"))

tests/chat_server.py's ChatServer reads the last message's content as a string, so it cannot take the list of
parts (text + image_url) a vision request carries; this one can, and hands the whole body to `responder`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server:
    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class VisionChatServer(_Server):
    """/v1/models lists `model`; /v1/chat/completions answers `responder(body)` (a string) or, when `status` is set,
    that HTTP error. Every request body is kept in `requests`."""

    def __init__(self, responder, *, model: str = "vision-test-model", status: int | None = None):
        self.responder = responder
        self.model = model
        self.status = status
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                models = [{"id": server.model, "object": "model", "created": 0, "owned_by": "test"}]
                self._send(200, {"object": "list", "data": models})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                if server.status:
                    self._send(server.status, {"error": {"message": "injected failure", "type": "server_error"}})
                    return
                message = {"role": "assistant", "content": server.responder(body)}
                self._send(
                    200,
                    {
                        "id": "chatcmpl-vision",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        super().__init__(Handler)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"


class FileServer(_Server):
    """GET `path` answers `routes[path]`: (content_type, body) or (content_type, body, extra_headers); a
    content_type of None sends no Content-Type, a header value of None leaves that header out (no Content-Length
    means the body ends when the connection closes). Unknown paths get 404."""

    def __init__(self, routes: dict):
        self.routes = routes
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                content_type, body, *rest = route
                headers = {"Content-Length": str(len(body)), **(rest[0] if rest else {})}
                status = int(headers.pop("Status", 200))
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                for name, value in headers.items():
                    if value is not None:
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                if headers.get("Content-Length") is None:
                    self.close_connection = True

        super().__init__(Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
