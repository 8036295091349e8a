"""Form bodies for the HTTP servers and their clients: multipart/form-data (what the openai SDK sends) or JSON."""

from __future__ import annotations

import email.parser
import email.policy
import json
import secrets


def parse_form(content_type: str, body: bytes) -> dict:
    """Fields of a multipart/form-data or JSON body: text fields as str, uploaded files as bytes."""
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        if not message.is_multipart():
            raise ValueError("malformed multipart/form-data body")
        fields: dict = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            if part.get_filename() is not None or part.get_content_maintype() != "text":
                fields[name] = part.get_payload(decode=True) or b""
            else:
                fields[name] = part.get_content().strip()
        return fields
    try:
        data = json.loads(body or b"{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"body is neither multipart/form-data nor JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError("the JSON body must be an object")
    return data


def encode_multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = f"enhancer-{secrets.token_hex(12)}"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode()
            + str(value).encode("utf-8")
            + b"\r\n"
        )
    for name, data in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
