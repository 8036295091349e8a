"""`enhancer enhance --input ... --output ...`: one row per input, bad rows fail alone (file:line named), resume."""

from __future__ import annotations

import json
import subprocess

from chat_server import ChatServer
from conftest import BIN


def _enhance(args, server, **kwargs):
    command = [
        str(BIN / "enhancer"),
        "enhance",
        "--engine",
        "openai",
        "--model",
        "test-model",
        "--base-url",
        server.base_url,
        "--seed",
        "4",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_batch_keeps_every_row_and_names_bad_lines(tmp_path):
    source = tmp_path / "prompts.jsonl"
    source.write_bytes(
        b'{"id": "a", "prompt": "a red kite over dunes"}\n'
        b'{"prompt": ""}\n'
        b'{"prompt": "broken json"\n'
        b'"a plain JSON string prompt"\n'
        b'{"simple": "a row in our data format"}\n'
        b'{"prompt": "caf\xe9 au lait"}\n'
        b'{"text": "no prompt key"}\n'
    )
    out = tmp_path / "out.jsonl"
    with ChatServer() as server:
        result = _enhance(["--input", str(source), "--output", str(out)], server)
    assert result.returncode == 0, result.stderr
    rows = _rows(out)
    assert [r["index"] for r in rows] == list(range(7))
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok", "ok", "error", "error"]
    assert rows[0]["id"] == "a" and rows[0]["prompt"] == "a red kite over dunes"
    assert rows[0]["enhanced"].startswith("A red kite over dunes, seen in a slow dolly shot")
    assert (
        rows[1]["message"]
        == f"{source}:2: empty prompt: give a short description of the video, e.g. 'a fox in the snow'"
    )
    assert rows[2]["message"].startswith(f"{source}:3: invalid JSON")
    assert rows[5]["message"].startswith(f"{source}:6: not UTF-8 (byte 0xe9")
    assert rows[6]["message"] == f'{source}:7: no "prompt" (or "simple") string in this row'
    for row in rows:
        assert set(row) >= {"prompt", "enhanced", "status", "message", "model", "target", "seed", "seconds"}
    assert "wrote 7 rows (3 ok, 0 fallback, 4 error)" in result.stderr


def test_txt_input_and_resume_after_a_killed_run(tmp_path):
    source = tmp_path / "prompts.txt"
    prompts = [f"scene number {i} with a lantern" for i in range(6)]
    source.write_text("\n".join(prompts[:3]) + "\n\n" + "\n".join(prompts[3:]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with ChatServer() as server:
        assert _enhance(["--input", str(source), "--output", str(out), "--batch-size", "2"], server).returncode == 0
        full = _rows(out)
        # a run killed mid-write: two complete rows and a torn third
        lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
        out.write_text(lines[0] + lines[1] + lines[2][:25], encoding="utf-8")
        refused = _enhance(["--input", str(source), "--output", str(out)], server)
        assert refused.returncode == 2 and "add --resume" in refused.stderr
        before = len(server.requests)
        resumed = _enhance(["--input", str(source), "--output", str(out), "--resume"], server)
        assert resumed.returncode == 0, resumed.stderr
        assert len(server.requests) - before == 4  # only the missing rows were asked for
    rows = _rows(out)
    assert [r["index"] for r in rows] == list(range(6))
    assert [r["prompt"] for r in rows] == prompts
    assert [r["enhanced"] for r in rows] == [r["enhanced"] for r in full]
    assert "2 already done" in resumed.stderr


def test_stdin_to_stdout(tmp_path):
    with ChatServer() as server:
        result = _enhance(["--input", "-", "--output", "-"], server, input="a heron\na fox\n")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["a heron", "a fox"]
    assert all(r["status"] == "ok" for r in rows)


def test_unreadable_input_is_a_clear_error(tmp_path):
    with ChatServer() as server:
        missing = _enhance(["--input", str(tmp_path / "nope.txt")], server)
        folder = _enhance(["--input", str(tmp_path)], server)
    assert missing.returncode == 2 and f"--input {tmp_path / 'nope.txt'}: no such file" in missing.stderr
    assert folder.returncode == 2 and "is a directory" in folder.stderr


def test_prompt_and_input_together_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [str(BIN / "enhancer"), "enhance", "a fox", "--input", "x.txt"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "either a PROMPT or --input" in result.stderr
