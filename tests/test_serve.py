"""`enhancer serve` on 127.0.0.1 with a tiny random model: the routes, the OpenAI client, batching of concurrent
requests, and the guards (key, body size, malformed JSON, limits) with the server still serving after each."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI

from enhancer.enhance import Enhancer
from enhancer.serve.api import ServeLimits, Server

from local_http import call


@pytest.fixture(scope="module")
def tiny_enhancer(tiny_model_dir):
    return Enhancer.load(model=str(tiny_model_dir), max_new_tokens=12, log=lambda m: None)


def _call(url, path, body=None, key=None, raw=None):
    return call(url + path, body, key, raw)


def _chunked(url, path, body: bytes, key=None, chunk=1_000):
    """POST with Transfer-Encoding: chunked (no Content-Length), as streaming clients send."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    connection.request(
        "POST",
        path,
        body=(body[i : i + chunk] for i in range(0, len(body), chunk)),
        headers=headers,
        encode_chunked=True,
    )
    response = connection.getresponse()
    status, payload = response.status, json.loads(response.read() or b"{}")
    connection.close()
    return status, payload


def test_enhance_models_health_and_the_openai_client(tiny_enhancer):
    with Server(tiny_enhancer) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, row = _call(server.url, "/v1/enhance", {"prompt": "a fox in the snow", "n": 2, "seed": 3})
        assert status == 200 and row["prompt"] == "a fox in the snow" and len(row["variants"]) == 2
        assert row["status"] in ("ok", "fallback") and row["seed"] == 3 and row["target"] == "generic"
        assert set(row["timings"]) == {"queue_s", "generate_s", "total_s", "batch"}
        status, models = _call(server.url, "/v1/models")
        assert status == 200 and models["data"][0]["id"] == tiny_enhancer.model_label
        assert isinstance(models["data"][0]["created"], int)

        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        completion = client.chat.completions.create(
            model="enhancer",
            messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "a heron in the reeds"}],
            extra_body={"target": "wan"},
        )
        assert completion.choices[0].message.role == "assistant" and completion.choices[0].message.content
        assert _call(server.url, "/healthz")[1]["requests"] == 2
        # usage in the model's own tokens: the transformers engine has the tokenizer
        tokenizer = tiny_enhancer.engine.tokenizer
        tokens = [len(tokenizer.encode(c.message.content, add_special_tokens=False)) for c in completion.choices]
        prompt_tokens = len(tokenizer.encode("a heron in the reeds", add_special_tokens=False))
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt_tokens, sum(tokens))
        assert completion.to_dict()["enhancer"]["usage_counted_by"] == "tokenizer"


def test_concurrent_requests_share_generate_calls(tiny_enhancer):
    limits = ServeLimits(batch_window_ms=200, max_batch=16)
    prompts = [f"a paper boat number {i} on a pond" for i in range(12)]
    with Server(tiny_enhancer, limits=limits) as server:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda p: _call(server.url, "/v1/enhance", {"prompt": p}), prompts))
        health = _call(server.url, "/healthz")[1]
    assert [status for status, _ in answers] == [200] * 12
    assert [row["prompt"] for _, row in answers] == prompts  # each request gets its own answer back
    assert health["requests"] == 12 and health["batches"] < 12
    assert max(row["timings"]["batch"] for _, row in answers) > 1


def test_guards_answer_clearly_and_the_server_keeps_serving(tiny_enhancer):
    limits = ServeLimits(max_body_bytes=2_000, max_n=4)
    with Server(tiny_enhancer, api_key="s3cret", limits=limits) as server:
        ok = {"prompt": "a lighthouse at dusk"}
        assert _call(server.url, "/healthz")[0] == 200  # health needs no key
        status, body = _call(server.url, "/v1/enhance", ok)
        assert status == 401 and "API key" in body["error"]
        assert _call(server.url, "/v1/models", key="wrong")[0] == 401
        status, body = _call(server.url, "/v1/enhance", {"prompt": "x" * 5_000}, key="s3cret")
        assert status == 413 and "limit is 2000" in body["error"]
        status, body = _chunked(server.url, "/v1/enhance", b'{"prompt": "' + b"x" * 50_000 + b'"}', key="s3cret")
        assert status == 413 and "limit is 2000" in body["error"]  # no Content-Length: counted as it arrives
        status, body = _chunked(server.url, "/v1/enhance", b'{"prompt": "a fox in the snow"}', key="s3cret")
        assert status == 200 and body["prompt"] == "a fox in the snow"  # a small chunked body is fine
        status, body = _call(server.url, "/v1/enhance", raw=b'{"prompt": "a fox",', key="s3cret")
        assert status == 422 and "invalid request" in body["error"] and "JSON" in body["error"]
        status, body = _call(server.url, "/v1/enhance", {"prompt": "a fox", "n": 9}, key="s3cret")
        assert status == 422 and "n:" in body["error"]
        status, body = _call(server.url, "/v1/enhance", {"prompt": "a fox", "target": "imax"}, key="s3cret")
        assert status == 422 and "unknown target 'imax'" in body["error"]
        status, body = _call(server.url, "/v1/enhance", {"prompt": "   "}, key="s3cret")
        assert status == 422 and "empty prompt" in body["error"]
        status, body = _call(server.url, "/v1/chat/completions", {"messages": []}, key="s3cret")
        assert status == 422 and "no user message" in body["error"]["message"]  # OpenAI's shape on its routes
        for route, extra in (
            ("/v1/enhance", {}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]}),
        ):
            status, body = _call(server.url, route, {**ok, **extra, "seed": 2**64}, key="s3cret")
            message = body["error"]["message"] if route == "/v1/chat/completions" else body["error"]
            assert status == 422 and "seed: Input should be less than or equal to 4294967295" in message
        # system messages are the enhancer's instructions, which it checks: too long is the client's to fix
        client = OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        messages = [{"role": "system", "content": "night scene " * 50}, {"role": "user", "content": "a fox"}]
        with pytest.raises(openai.UnprocessableEntityError, match="instructions too long") as refused:
            client.chat.completions.create(model="m", messages=messages)
        assert refused.value.param == "messages" and "passed as the enhancer's instructions" in refused.value.message
        with pytest.raises(openai.APIError, match="instructions too long") as refused:  # in the stream: 200 was sent
            list(client.chat.completions.create(model="m", messages=messages, stream=True))
        assert refused.value.param == "messages"
        status, body = _call(server.url, "/v1/enhance", ok, key="s3cret")  # still serving
        assert status == 200 and body["prompt"] == "a lighthouse at dusk"


def test_without_a_key_only_loopback_host_names_are_answered(tiny_enhancer):
    from urllib.parse import urlsplit

    from raw_http import status_for_host

    with Server(tiny_enhancer) as server:
        port = urlsplit(server.url).port
        for host, expected in (("attacker.example", 403), (f"rebound.example:{port}", 403), (f"[::1]:{port}", 200)):
            status, body = status_for_host(port, "POST", "/v1/enhance", host, b'{"prompt": "a fox"}')
            assert status == expected, (host, body)
            if expected == 403:
                assert "--api-key" in body["error"]
        assert server.app.state.batcher.requests == 1  # the refused ones never reached the model
        assert _call(server.url, "/v1/enhance", {"prompt": "a fox"})[0] == 200  # 127.0.0.1:PORT as clients send it
