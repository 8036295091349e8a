"""JSON over HTTP to the servers the tests start on 127.0.0.1: (status, decoded body), errors included."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def call(url: str, body=None, key: str | None = None, raw: bytes | None = None, timeout: float = 60.0):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
