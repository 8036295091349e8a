"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests, with fault injection.

    with ChatServer(fail_first=2) as server:   # the first two requests get HTTP 500
        url = server.base_url                  # http://127.0.0.1:PORT/v1

Replies are computed from the request (the idea, the seed and the choice index), so tests can assert on values.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply_for(idea: str, seed: int, index: int) -> str:
    return (
        f'Sure! Here is your prompt:\n"{idea.capitalize()}, seen in a slow dolly shot at golden hour with a 35mm '
        f"lens, soft rim light outlining every edge, a warm amber and teal palette, gentle drifting motion and a "
        f'calm, wistful mood; variant {seed}-{index}."'
    )


class ChatServer:
    def __init__(
        self,
        fail_first: int = 0,
        always_fail: bool = False,
        single_choice: bool = False,
        model: str = "test-model",
        delay_s: float = 0.0,
        responder=None,
    ):
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.single_choice = single_choice
        self.model = model
        self.responder = responder  # optional: body -> reply text, for servers that must answer something else
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": server.model, "object": "model", "created": 0, "owned_by": "test"}],
                        },
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    failing = server.always_fail or len(server.requests) <= server.fail_first
                if server.delay_s:
                    time.sleep(server.delay_s)
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                if failing:
                    self._send(500, {"error": {"message": "injected failure", "type": "server_error"}})
                    return
                idea = re.search(r"Idea: (.*)$", body["messages"][-1]["content"], re.S)
                text = idea.group(1).strip() if idea else body["messages"][-1]["content"]
                n = 1 if server.single_choice else body.get("n", 1)
                choices = [
                    {
                        "index": i,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": server.responder(body)
                            if server.responder
                            else reply_for(text, body.get("seed", 0), i),
                        },
                    }
                    for i in range(n)
                ]
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": choices,
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
