"""One request-reading path for enhancer's standard-library HTTP servers (`enhancer video serve`, `enhancer reward
serve`), which must run with nothing but the standard library (the reward server lives in VisionReward's old
environment, installed --no-deps).

Every request goes through the same checks, cheapest and most telling first, and nothing is read from the body
before the checks that need no body have passed:

1. Host: a server without a key answers only to loopback names (127.0.0.1, localhost, ::1), so a web page that
   rebinds its own DNS name to 127.0.0.1 cannot reach it. With a key, the key is the guard.
2. Origin: these are APIs for programs. A browser adds `Origin` (or `Sec-Fetch-Site: cross-site`) to the POSTs a
   page makes, and a page may POST a multipart form to 127.0.0.1 without asking first; such requests get 403.
3. The key, compared as bytes (a header that is not ASCII is a wrong key, not a crash).
4. Content-Length: required on a POST, digits only, at most the server's limit; chunked bodies get 411.
5. Content-Type: JSON, or multipart/form-data (what the openai SDK sends), nothing else (415).
6. The body, read in bounded chunks under a socket timeout; a multipart file part streams to a file the server
   names, text fields are capped, so memory stays flat whatever the upload's size.

An answer before the body was read closes the connection (the unread bytes must not be parsed as a next request).
`BoundedHTTPServer` caps the connections handled at once; one over the cap is answered 503 with Retry-After.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import hmac
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CHUNK_BYTES = 1 << 16  # what one socket read asks for; also the most a multipart parser buffers past a boundary
MAX_PART_HEADER_BYTES = 8_192
MAX_PARTS = 32


class RequestError(Exception):
    """A request the server refuses: the HTTP status, a message that says what and how to fix it, the error type,
    and extra headers (Retry-After)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def host_name(host_header: str) -> str:
    """The name part of a Host header: `127.0.0.1:8100` -> 127.0.0.1, `[::1]:8100` -> ::1."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class GuardedHandler(BaseHTTPRequestHandler):
    """A BaseHTTPRequestHandler whose subclasses write `get()` and `post()` and raise RequestError to refuse; the
    checks above run first. The server object carries `api_key` and `allowed_hosts` (None: any host)."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may leave a read or write waiting (StreamRequestHandler sets it on the socket)
    body_read = True  # False from the moment a POST has a body we have not consumed

    def log_message(self, *args):  # quiet; each server logs what matters through its own log()
        pass

    # ------------------------------------------------------------------------------------------------ answers
    def send_json(self, code: int, payload: dict, headers: dict | None = None) -> None:
        self.send_bytes(code, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def send_bytes(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not self.body_read:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        if not self.body_read:
            self._drain()

    def _drain(self, most: int = 1 << 20, seconds: float = 1.0) -> None:
        """Read a little of the body we refused, so a client still sending it reads our answer instead of a reset;
        then the connection closes."""
        try:
            self.wfile.flush()
            self.connection.settimeout(seconds)
            while most > 0 and (chunk := self.connection.recv(min(CHUNK_BYTES, most))):
                most -= len(chunk)
        except OSError:
            pass

    def send_file(self, path: str | Path, content_type: str) -> None:
        """A file in chunks, never whole in memory."""
        with open(path, "rb") as file:
            size = Path(path).stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(file, self.wfile, CHUNK_BYTES)

    def send_refusal(self, error: RequestError) -> None:
        self.send_json(error.status, {"error": {"message": error.message, "type": error.kind}}, error.headers)

    # ------------------------------------------------------------------------------------------------ dispatch
    def do_GET(self):
        self._dispatch(self.get)

    def do_POST(self):
        self.body_read = not self.headers.get("Content-Length") and not self.headers.get("Transfer-Encoding")
        self._dispatch(self.post)

    def get(self) -> None:
        raise RequestError(405, f"GET is not served at {self.path}")

    def post(self) -> None:
        raise RequestError(405, f"POST is not served at {self.path}")

    def _dispatch(self, method) -> None:
        try:
            self.check_caller()
            method()
        except RequestError as error:
            self.send_refusal(error)
        except TimeoutError:  # the client stopped sending its body: nothing useful to answer
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug or a failing backend: say so, close this connection, keep serving
            log = getattr(self.server, "log", None)
            if log:
                log(f"{self.command} {self.path}: {type(error).__name__}: {error}")
            self.body_read = False
            try:
                self.send_refusal(RequestError(500, f"{type(error).__name__}: {error}", "server_error"))
            except OSError:
                pass

    # ------------------------------------------------------------------------------------------------ checks
    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def check_caller(self) -> None:
        allowed = getattr(self.server, "allowed_hosts", None)
        host = self.headers.get("Host")
        if allowed is not None and host is not None and host_name(host) not in allowed:
            raise RequestError(
                403,
                f"Host {host!r} is not one this server answers to without a key ({', '.join(sorted(allowed))}); "
                "start it with --api-key to serve other names",
                "permission_error",
            )
        if self.headers.get("Origin") is not None or self.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
            raise RequestError(
                403, "requests from web pages are refused: this API is for programs (send no Origin header)",
                "permission_error",
            )  # fmt: skip
        api_key = getattr(self.server, "api_key", None)
        if api_key:
            given = self.headers.get("Authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, f"Bearer {api_key}".encode()):
                raise RequestError(401, "missing or wrong API key: send Authorization: Bearer KEY", "auth_error")

    def content_length(self, limit: int) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked bodies are not accepted: send the body with a Content-Length")
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise RequestError(411, "a POST needs a Content-Length header")
        if not declared.strip().isdigit() or not declared.strip().isascii():
            raise RequestError(400, f"Content-Length {declared!r} is not a byte count (digits only)")
        length = int(declared)
        if length > limit:
            raise RequestError(413, f"request body of {length} bytes; the limit is {limit}")
        return length

    def read_body(self, limit: int) -> bytes:
        """A JSON-sized body (the caller's limit keeps it small), read exactly."""
        length = self.content_length(limit)
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of the {length} bytes Content-Length declared")
        self.body_read = True
        return body

    def read_form(self, limit: int, spool_dir: str | Path | None = None, max_field_bytes: int = 64_000) -> dict:
        """The fields of a JSON or multipart/form-data body. Multipart file parts are written to `spool_dir` (a
        folder the server made) and come back as Paths; with no spool_dir, a file part is refused."""
        content_type = self.headers.get("Content-Type", "")
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "multipart/form-data":
            length = self.content_length(limit)
            fields = read_multipart(self.rfile, length, content_type, spool_dir, max_field_bytes)
            self.body_read = True
            return fields
        if kind != "application/json":
            raise RequestError(
                415, f"Content-Type {kind or '(none)'} is not accepted: send application/json or multipart/form-data"
            )
        body = self.read_body(limit)
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(400, f"the body is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise RequestError(400, "the JSON body must be an object")
        return data


# ------------------------------------------------------------------------------------------------ multipart
def _boundary(content_type: str) -> bytes:
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise RequestError(400, "multipart/form-data without a valid boundary parameter in its Content-Type")
    return boundary.encode("ascii")


class _Body:
    """At most `length` bytes of `stream`, in chunks, with a buffer the parser consumes from the front."""

    def __init__(self, stream, length: int):
        self.stream, self.left, self.buffer = stream, length, b""

    def fill(self) -> bool:
        if self.left <= 0:
            return False
        chunk = self.stream.read(min(CHUNK_BYTES, self.left))
        if not chunk:
            raise RequestError(400, f"the body ended {self.left} bytes before its Content-Length")
        self.left -= len(chunk)
        self.buffer += chunk
        return True

    def until(self, marker: bytes, cap: int, what: str) -> bytes:
        """Everything before `marker` (consumed with it), when that is at most `cap` bytes."""
        while (index := self.buffer.find(marker)) < 0:
            if len(self.buffer) > cap + len(marker) or not self.fill():
                raise RequestError(400, f"malformed multipart body: {what}")
        found, self.buffer = self.buffer[:index], self.buffer[index + len(marker) :]
        if len(found) > cap:
            raise RequestError(400, f"malformed multipart body: {what}")
        return found

    def stream_until(self, marker: bytes, write) -> None:
        """Hand everything before `marker` to `write`, chunk by chunk, keeping only a marker's length back."""
        while (index := self.buffer.find(marker)) < 0:
            keep = len(marker) - 1
            if len(self.buffer) > keep:
                write(self.buffer[:-keep])
                self.buffer = self.buffer[-keep:]
            if not self.fill():
                raise RequestError(400, "malformed multipart body: a part has no closing boundary")
        write(self.buffer[:index])
        self.buffer = self.buffer[index + len(marker) :]

    def take(self, count: int) -> bytes:
        while len(self.buffer) < count and self.fill():
            pass
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken


def read_multipart(stream, length: int, content_type: str, spool_dir, max_field_bytes: int) -> dict:
    """Parse a multipart/form-data body as it arrives (RFC 7578). Memory holds one chunk and the text fields."""
    delimiter = b"--" + _boundary(content_type)
    body = _Body(stream, length)
    body.until(delimiter, CHUNK_BYTES, "no opening boundary")
    fields: dict = {}
    for _ in range(MAX_PARTS + 1):
        after = body.take(2)
        if after == b"--":
            return fields
        if after != b"\r\n":
            raise RequestError(400, "malformed multipart body: a boundary is not followed by CRLF or --")
        if len(fields) == MAX_PARTS:
            raise RequestError(413, f"more than {MAX_PARTS} parts in one form")
        head = body.until(b"\r\n\r\n", MAX_PART_HEADER_BYTES, "part headers missing or over 8 KB")
        headers = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise RequestError(400, "malformed multipart body: a part has no Content-Disposition name")
        if name in fields:
            raise RequestError(400, f"form field {name!r} appears twice")
        end = b"\r\n" + delimiter
        if headers.get_filename() is not None or headers.get_content_maintype() not in ("text", ""):
            if spool_dir is None:
                raise RequestError(422, f"{name}: this server takes no file uploads")
            path = Path(spool_dir) / f"part-{len(fields)}"
            with open(path, "wb") as file:
                body.stream_until(end, file.write)
            fields[name] = path
            continue
        pieces: list[bytes] = []
        size = 0

        def keep(piece: bytes, name=name, pieces=pieces) -> None:
            nonlocal size
            size += len(piece)
            if size > max_field_bytes:
                raise RequestError(413, f"form field {name!r} is over {max_field_bytes} bytes")
            pieces.append(piece)

        body.stream_until(end, keep)
        try:
            fields[name] = b"".join(pieces).decode("utf-8").strip()
        except UnicodeDecodeError as error:
            raise RequestError(400, f"form field {name!r} is not UTF-8 text") from error
    raise RequestError(413, f"more than {MAX_PARTS} parts in one form")


# ------------------------------------------------------------------------------------------------ server
class BoundedHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that handles at most `max_connections` connections at once (a thread each); one more
    gets a 503 with Retry-After straight from the accepting thread, so a flood cannot grow threads without end."""

    daemon_threads = True

    def __init__(self, address, handler, *, api_key=None, allowed_hosts=None, max_connections=64, log=None):
        super().__init__(address, handler)
        self.api_key = api_key
        self.allowed_hosts = None if api_key else frozenset(allowed_hosts or LOOPBACK_HOSTS)
        self.log = log
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            body = json.dumps(
                {"error": {"message": f"over {self.max_connections} connections at once; retry", "type": "busy"}}
            ).encode()
            try:
                request.settimeout(2)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class LoopbackHostsOnly:
    """ASGI middleware for the FastAPI servers (`enhancer serve`, `enhancer rate serve`) run without a key: a
    request whose Host is not a loopback name gets 403, the same rule as the standard-library servers above, so
    a page that rebinds its DNS name to 127.0.0.1 cannot use them. (Starlette's TrustedHostMiddleware would cut
    `[::1]:8000` at its first colon.)"""

    def __init__(self, app, allowed_hosts=LOOPBACK_HOSTS):
        self.app, self.allowed_hosts = app, frozenset(allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        host = headers.get(b"host")
        if host is None or host_name(host.decode("latin-1")) in self.allowed_hosts:
            return await self.app(scope, receive, send)
        message = (
            f"Host {host.decode('latin-1')[:100]!r} is not one this server answers to without a key "
            f"({', '.join(sorted(self.allowed_hosts))}); start it with --api-key to serve other names"
        )
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
