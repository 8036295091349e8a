"""Raw HTTP for the hardening tests: requests no polite client would send (a negative Content-Length, a header
that is not ASCII, a body the client stops sending), servers started as real `enhancer` processes, and their
memory read from /proc."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

BIN = Path(sys.executable).parent
SERVING = re.compile(r"at (http://127\.0\.0\.1:(\d+))")


@contextlib.contextmanager
def enhancer_server(*args: str, env: dict | None = None):
    """`enhancer ARGS --port 0` as a process; yields (process, port) once it says where it serves, or fails with its
    stderr when it exits without serving (no clock: pytest's own timeout ends a process that does neither)."""
    process = subprocess.Popen(
        [str(BIN / "enhancer"), *args, "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def watch():  # keep reading stderr so the pipe never fills
        for line in process.stderr:
            lines.append(line)
            match = SERVING.search(line)
            if match and not found.is_set():
                port.append(int(match.group(2)))
                found.set()
        found.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        found.wait()  # set by the line that names the port, or when stderr closes because the process ended
        if not port:
            raise RuntimeError(f"enhancer {' '.join(args)} did not start: {''.join(lines)[-2000:]}")
        yield process, port[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def memory_kb(pid: int, field: str = "VmHWM") -> int:
    """A process's resident memory from /proc: VmRSS now, or VmHWM, the most it ever held."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def request(port: int, head: bytes, body=b"", *, timeout: float = 60.0):
    """Send `head` (request line and headers, without the blank line) and `body` (bytes, or an iterable of byte
    chunks; sending stops quietly when the server closes); returns (status, headers, parsed JSON or bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head.rstrip(b"\r\n") + b"\r\n\r\n")
        try:
            for chunk in [body] if isinstance(body, bytes) else body:
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered without reading it all: the answer is waiting below
        return read_response(connection)


def read_response(connection: socket.socket):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection without an answer (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    if headers.get("content-type", "").startswith("application/json"):
        return status, headers, json.loads(body)
    return status, headers, body


def post_json(port: int, path: str, payload, *, key: str | None = None, extra: str = ""):
    body = json.dumps(payload).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}{extra}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}"
    )
    return request(port, head.encode(), body)


def get(port: int, path: str, *, key: str | None = None):
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return request(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close".encode())


def status_for_host(port: int, method: str, path: str, host: str, body: bytes = b"") -> tuple[int, dict]:
    """A request with the Host header a rebinding web page would send: (status, JSON answer)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close"
    if method == "POST":
        head += f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    status, _, answer = request(port, head.encode(), body)
    return status, answer
