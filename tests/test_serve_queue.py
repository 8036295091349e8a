"""`enhancer serve`'s bounded queue and its handling of clients that hang up (issue 20), against the real server on
127.0.0.1: a full queue answers 429 with Retry-After and serves again once drained; a queued request whose client
left never reaches the model; a model call whose clients all left stops (its `should_stop` turns True). The server
runs a slow stand-in enhancer whose calls wait on an event the test opens, so the queue fills without timing; no
assertion is about time, and every wait is a hang guard. Last, `should_stop` on the tiny transformers model."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from enhancer.contracts import Enhancement
from enhancer.enhance import Enhancer
from enhancer.enhance.enhancer import STOPPED
from enhancer.prompts import build_messages
from enhancer.serve.api import ServeLimits, Server
from enhancer.serve.batcher import Batcher

from local_http import call


class SlowEnhancer:
    """A stand-in for `Enhancer` whose calls wait until the test sets `gate`, or until the server's `should_stop`
    turns True (then it records `stopped` and returns error rows, as `Enhancer.enhance` does). It records every
    prompt the server asks it for, releases `began` once per call and counts the times it asked `should_stop`."""

    model_label = "slow-stand-in"

    def __init__(self):
        self.gate = threading.Event()
        self.began = threading.Semaphore(0)
        self.stopped = threading.Event()
        self.prompts: list[str] = []
        self.asked = 0
        self.lock = threading.Lock()

    def _wait(self, prompts, should_stop) -> bool:
        with self.lock:
            self.prompts.extend(prompts)
        self.began.release()
        while not self.gate.wait(0.01):
            if should_stop is not None:
                if should_stop():
                    self.stopped.set()
                    return True
                self.asked += 1
        return False

    def enhance(self, prompts, target="generic", n=1, seed=None, temperature=None, negative=False, should_stop=None):
        stopped = self._wait(prompts, should_stop)
        return [
            Enhancement(prompt=p, enhanced="", status="error", message=STOPPED, seed=seed)
            if stopped
            else Enhancement(
                prompt=p,
                enhanced=f"{p}, rewritten",
                variants=[f"{p}, rewritten", *(f"{p}, rewrite {i}" for i in range(1, n))],
                seed=seed,
            )
            for p in prompts
        ]

    def enhance_stream(self, prompt, on_text, target="generic", seed=None, temperature=None, should_stop=None):
        if self._wait([prompt], should_stop):
            return Enhancement(prompt=prompt, enhanced="", status="error", message=STOPPED, seed=seed)
        on_text(f"{prompt}, rewritten")
        return Enhancement(prompt=prompt, enhanced=f"{prompt}, rewritten", seed=seed)


@pytest.fixture()
def stand_in():
    enhancer = SlowEnhancer()
    yield enhancer
    enhancer.gate.set()  # a failed test must not leave a worker thread waiting forever (the process would not exit)


def post(url: str, path: str, body: dict):
    """(status, headers, decoded body) of a POST, whatever the status."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())  # headers: any case
    finally:
        connection.close()


def send_and_hold(url: str, path: str, body: dict) -> http.client.HTTPConnection:
    """Sends a POST and reads nothing: closing the returned connection is a client hanging up."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return connection


def health(server) -> dict:
    status, body = call(server.url + "/healthz")
    assert status == 200
    return body


def wait_until(condition, what: str) -> None:
    """Poll until `condition()` (`what` says what for the reader). No clock: pytest's own timeout (pyproject.toml)
    ends a server that never gets there, so a busy machine is only slower, never a failure."""
    while not condition():
        time.sleep(0.02)


def chat(prompt: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], **extra}


def test_a_full_queue_answers_429_with_retry_after_and_serves_again_once_drained(stand_in):
    limits = ServeLimits(max_queue=3, max_n=2, batch_window_ms=0)
    with Server(stand_in, limits=limits) as server, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server.url, "/v1/enhance", {"prompt": "a fox in the snow", "n": 2})
        stand_in.began.acquire()  # in the model: 2 of 3 places
        second = pool.submit(post, server.url, "/v1/chat/completions", chat("a heron in the reeds"))
        wait_until(lambda: health(server)["queue"] == 3, "the second request to be queued")

        for path, body in (
            ("/v1/enhance", {"prompt": "an owl at night"}),
            ("/v1/chat/completions", chat("an owl at night", stream=True)),  # streamed requests count too
        ):
            status, headers, answer = post(server.url, path, body)
            assert status == 429 and headers["Retry-After"] == "1"  # no model call has finished: nothing to measure
            message = answer["error"] if path == "/v1/enhance" else answer["error"]["message"]  # OpenAI's shape
            assert message.startswith("the queue is full: 3 of max_queue 3 rewrites")
            assert "retry after 1 s, or start the server with a larger --max-queue" in message
        assert health(server)["queue"] == 3  # refused requests count nothing

        stand_in.gate.set()
        status, _, row = first.result()
        assert status == 200 and row["variants"] == ["a fox in the snow, rewritten", "a fox in the snow, rewrite 1"]
        status, _, completion = second.result()
        assert status == 200 and completion["choices"][0]["message"]["content"] == "a heron in the reeds, rewritten"
        wait_until(lambda: health(server)["queue"] == 0, "the queue to drain")
        status, _, row = post(server.url, "/v1/enhance", {"prompt": "an owl at night", "n": 2})
        assert status == 200 and row["enhanced"] == "an owl at night, rewritten"
    assert stand_in.prompts == ["a fox in the snow", "a heron in the reeds", "an owl at night"]


def test_clients_that_hang_up_cost_the_model_nothing_more(stand_in):
    """Issue 20: requests whose clients left starved a live one. Now the queued ones never reach the model and
    free their places at once, and the running call stops when its only client leaves."""
    with Server(stand_in, limits=ServeLimits(batch_window_ms=0)) as server:
        running = send_and_hold(server.url, "/v1/enhance", {"prompt": "a running fox"})
        stand_in.began.acquire()
        queued = [
            send_and_hold(server.url, "/v1/enhance", {"prompt": "a queued heron", "n": 8}),
            send_and_hold(server.url, "/v1/chat/completions", chat("a queued owl", n=2, stream=True)),  # batched
            send_and_hold(server.url, "/v1/chat/completions", chat("a queued crow", stream=True)),  # streamed
        ]
        wait_until(lambda: health(server)["queue"] == 1 + 8 + 2 + 1, "the three requests to be queued")
        for connection in queued:
            connection.close()
        wait_until(lambda: health(server)["queue"] == 1, "the queued requests whose clients left to be dropped")
        assert health(server)["dropped"] == 3

        running.close()
        stand_in.stopped.wait()  # the running call's should_stop turned True
        wait_until(lambda: health(server)["queue"] == 0, "the stopped call to free its place")
        stand_in.gate.set()
        status, _, row = post(server.url, "/v1/enhance", {"prompt": "a live swan"})
        assert status == 200 and row["enhanced"] == "a live swan, rewritten"
        counts = health(server)
    assert stand_in.prompts == ["a running fox", "a live swan"]  # the model never saw the queued ones
    assert counts["stopped"] == 1 and counts["requests"] == 1 and counts["queue"] == 0


def test_a_call_stops_only_when_every_client_in_it_has_left(stand_in):
    limits = ServeLimits(batch_window_ms=600_000, max_batch=2)  # the call starts when the second request joins
    with Server(stand_in, limits=limits) as server, ThreadPoolExecutor(1) as pool:
        leaving = send_and_hold(server.url, "/v1/enhance", {"prompt": "a fox that leaves"})
        staying = pool.submit(post, server.url, "/v1/enhance", {"prompt": "a heron that stays"})
        stand_in.began.acquire()
        assert sorted(stand_in.prompts) == ["a fox that leaves", "a heron that stays"]  # one call
        leaving.close()
        wait_until(lambda: health(server)["hung_up"] == 1, "the server to see the client hang up")
        asked = stand_in.asked
        wait_until(lambda: stand_in.asked > asked + 1, "the call to ask should_stop again")
        assert not stand_in.stopped.is_set()  # one client still waits: the call goes on
        stand_in.gate.set()
        status, _, row = staying.result()
        counts = health(server)
    assert status == 200 and row["enhanced"] == "a heron that stays, rewritten"
    assert counts["stopped"] == 0 and counts["dropped"] == 0 and counts["requests"] == 2


def test_a_streamed_request_stops_when_its_client_leaves(stand_in):
    with Server(stand_in) as server:
        streamed = send_and_hold(server.url, "/v1/chat/completions", chat("a streamed fox", stream=True))
        response = streamed.getresponse()
        assert response.status == 200 and response.read(6) == b"data: "  # the role chunk
        stand_in.began.acquire()
        response.close()  # the response holds the socket too
        streamed.close()
        stand_in.stopped.wait()  # enhance_stream's should_stop turned True
        wait_until(lambda: health(server)["queue"] == 0, "the stream to free its place")
        stand_in.gate.set()
        status, _, row = post(server.url, "/v1/enhance", {"prompt": "a live swan"})
    assert status == 200 and row["enhanced"] == "a live swan, rewritten"


def test_retry_after_follows_the_measured_pace():
    batcher = Batcher(SlowEnhancer(), window_s=0, max_batch=8, max_queue=4)
    assert batcher.admit(4) is None and batcher.load == 4
    assert batcher.admit(2) == 1 and batcher.load == 4  # nothing measured yet; a refused request counts nothing
    batcher.measured(seconds=10.0, units=4)  # 2.5 s a rewrite
    assert batcher.admit(2) == 5  # two rewrites must finish first: 2 x 2.5 s
    batcher.concurrency = 2
    assert batcher.admit(2) == 3  # two calls at once: half that, rounded up
    batcher.measured(seconds=10_000.0, units=1)
    assert batcher.admit(2) == 60  # capped
    batcher.release(4)
    assert batcher.admit(2) is None and batcher.load == 2


def test_max_queue_must_hold_a_request_of_max_n_variants():
    with pytest.raises(ValueError, match=r"max_queue \(4\) is below max_n \(8\).*raise --max-queue or lower --max-n"):
        ServeLimits(max_queue=4)
    with pytest.raises(ValueError, match="max_queue must be >= 1"):
        ServeLimits(max_queue=0, max_n=1)


# ------------------------------------------------------------------------------------ should_stop, a real model


@pytest.fixture(scope="module")
def tiny_enhancer(tiny_model_dir):
    return Enhancer.load(model=str(tiny_model_dir), max_new_tokens=12, log=lambda m: None)


def test_should_stop_ends_a_transformers_call_at_the_next_token(tiny_enhancer):
    engine = tiny_enhancer.engine
    assert engine.name == "transformers"
    conversation = build_messages("a fox in the snow", "generic", "chat")
    asked_never, asked = [], []

    def never() -> bool:
        asked_never.append(False)
        return False

    def from_the_third() -> bool:
        asked.append(len(asked) >= 2)
        return asked[-1]

    [whole] = engine.generate([conversation], seed=0, temperature=0, max_new_tokens=40, should_stop=never)
    [stopped] = engine.generate([conversation], seed=0, temperature=0, max_new_tokens=40, should_stop=from_the_third)
    assert asked == [False, False, True]  # once before the batch, then at every token: not asked after True
    assert len(asked_never) > 10  # without a stop the same call asks at each of its many tokens
    tokens = len(engine.tokenizer(stopped.texts[0], add_special_tokens=False)["input_ids"])
    assert tokens <= 2 < len(engine.tokenizer(whole.texts[0], add_special_tokens=False)["input_ids"])
    assert whole.texts[0].startswith(stopped.texts[0])

    prompts = ["a fox in the snow", "rain on a window"]
    rows = tiny_enhancer.enhance(prompts, seed=1, should_stop=lambda: True)
    assert [(r.status, r.message, r.enhanced) for r in rows] == [("error", STOPPED, "")] * 2
    unchanged = tiny_enhancer.enhance(prompts, seed=1, should_stop=lambda: False)  # a stop never given: as before
    assert [r.to_dict() | {"seconds": 0} for r in unchanged] == [
        r.to_dict() | {"seconds": 0} for r in tiny_enhancer.enhance(prompts, seed=1)
    ]
