"""`/v1/chat/completions` and `/v1/models` as OpenAI's own, read by the official openai client against the real server
on 127.0.0.1 (issue 21): max_tokens, stop strings (streamed too), system messages, OpenAI-shaped errors, usage and
finish_reason, `created`; and <think> blocks of reasoning models behind the openai engine, stripped whether the reply
comes whole (tests/chat_server.py) or streamed (our own server as the upstream endpoint).

The server runs small stand-in enhancers whose rewrites are fixed text, so every assertion is about values; a
stand-in whose call waits on an event fills the queue without timing (every wait is a hang guard)."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI

from enhancer.contracts import Enhancement
from enhancer.enhance import Enhancer
from enhancer.enhance.engines import ThinkingFilter, strip_thinking
from enhancer.serve.api import ServeLimits, Server
from enhancer.serve.openai_compat import StopCutter, cut_at_stop

from chat_server import ChatServer
from local_http import call

REWRITE = (
    "A red fox trots across a snowy field at dawn. The camera tracks low beside it on a 50mm lens. "
    "Soft pink light rakes across the drifts, and the mood is quiet and cold."
)


def pieces_of(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class StandIn:
    """A stand-in for `Enhancer` that takes `max_new_tokens` and `instructions` and records each call's keywords.
    Its rewrite of a prompt is REWRITE (variant i: REWRITE with " Variant i." added), streamed three characters a
    piece; `status` and `truncated` set what its rows say, and `gate`, when given, holds every call until it is set."""

    model_label = "stand-in"

    def __init__(self, status: str = "ok", truncated: bool = False, gate: threading.Event | None = None):
        self.status = status
        self.truncated = truncated
        self.gate = gate
        self.calls: list[dict] = []

    def _row(self, prompt: str, n: int, seed) -> Enhancement:
        if self.gate is not None:
            self.gate.wait()
        if self.status == "fallback":
            return Enhancement(prompt=prompt, enhanced=prompt, status="fallback", message="engine failed", seed=seed)
        variants = [REWRITE] + [f"{REWRITE} Variant {i}." for i in range(1, n)]
        row = Enhancement(prompt=prompt, enhanced=variants[0], variants=variants, seed=seed)
        row.truncated = self.truncated  # what finish_reason reads: True where max_tokens cut the rewrite
        return row

    def enhance(
        self,
        prompts,
        target="generic",
        n=1,
        seed=None,
        temperature=None,
        negative=False,
        max_new_tokens=None,
        instructions=None,
    ):
        self.calls.append({"max_new_tokens": max_new_tokens, "instructions": instructions, "stream": False})
        return [self._row(prompt, n, seed) for prompt in prompts]

    def enhance_stream(
        self, prompt, on_text, target="generic", seed=None, temperature=None, max_new_tokens=None, instructions=None
    ):
        self.calls.append({"max_new_tokens": max_new_tokens, "instructions": instructions, "stream": True})
        row = self._row(prompt, 1, seed)
        for piece in pieces_of(row.enhanced):
            on_text(piece)
        return row


class WithoutOptions:
    """A stand-in enhancer older than `instructions` and `max_new_tokens`: its enhance takes neither."""

    model_label = "plain-stand-in"

    def enhance(self, prompts, target="generic", n=1, seed=None, temperature=None, negative=False):
        return [Enhancement(prompt=p, enhanced=REWRITE, seed=seed) for p in prompts]


class Failing(StandIn):
    """Every call raises, as an engine that crashes outright would."""

    def enhance(self, prompts, **options):
        raise RuntimeError("the model is on fire")

    def enhance_stream(self, prompt, on_text, **options):
        on_text("A red fox ")
        raise RuntimeError("the model is on fire")


def client_for(server, key: str = "unused") -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def user(text: str = "a fox in the snow") -> list[dict]:
    return [{"role": "user", "content": text}]


def streamed_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ------------------------------------------------------------------------------------------------- max_tokens


def test_max_tokens_caps_the_rewrite_and_is_checked():
    stand_in = StandIn()
    with Server(stand_in) as server:
        client = client_for(server)
        client.chat.completions.create(model="m", messages=user(), max_tokens=50)
        client.chat.completions.create(model="m", messages=user(), max_completion_tokens=60)
        list(client.chat.completions.create(model="m", messages=user(), max_tokens=70, stream=True))
        client.chat.completions.create(model="m", messages=user())
        assert [(c["max_new_tokens"], c["stream"]) for c in stand_in.calls] == [
            (50, False),
            (60, False),
            (70, True),
            (None, False),  # none asked: the enhancer's own budget
        ]
        for field, value in (("max_tokens", 0), ("max_tokens", 5000), ("max_completion_tokens", -1)):
            with pytest.raises(openai.UnprocessableEntityError) as refused:
                client.chat.completions.create(model="m", messages=user(), **{field: value})
            assert refused.value.param == field and refused.value.type == "invalid_request_error"
            assert f"{field}: Input should be" in refused.value.body["message"]
        with pytest.raises(openai.UnprocessableEntityError, match="one limit under two names") as refused:
            client.chat.completions.create(model="m", messages=user(), max_tokens=50, max_completion_tokens=60)
        assert refused.value.param == "max_completion_tokens"
        assert len(stand_in.calls) == 4  # the refused ones never reached the enhancer


def test_an_enhancer_without_max_new_tokens_says_it_ignored_it():
    with Server(WithoutOptions()) as server:
        completion = client_for(server).chat.completions.create(model="m", messages=user(), max_tokens=50)
    assert completion.choices[0].message.content == REWRITE
    assert completion.to_dict()["enhancer"]["notes"] == [
        "max_tokens ignored: the enhancer behind this server takes no max_new_tokens"
    ]


# ------------------------------------------------------------------------------------------------------ stop


def test_stop_cuts_before_the_first_stop_string_whole_or_streamed():
    stand_in = StandIn()
    with Server(stand_in) as server:
        client = client_for(server)
        for stop, before in (
            ("camera", "A red fox trots across a snowy field at dawn. The "),
            (["drifts", "fox"], "A red "),  # the first occurrence of any, not the first in the list
            (["a snowy field"], "A red fox trots across "),  # longer than a streamed piece: split across several
            (["unicorn"], REWRITE),  # never occurs: the whole text
        ):
            whole = client.chat.completions.create(model="m", messages=user(), stop=stop)
            assert whole.choices[0].message.content == before and whole.choices[0].finish_reason == "stop"
            chunks = list(client.chat.completions.create(model="m", messages=user(), stop=stop, stream=True))
            assert streamed_text(chunks) == before, stop  # every delta together: nothing after the stop was sent
            assert chunks[-1].choices[0].finish_reason == "stop"
        variants = client.chat.completions.create(model="m", messages=user(), n=2, stop=["Variant", "pink"])
        assert [c.message.content for c in variants.choices] == [REWRITE.split("pink")[0]] * 2
        with pytest.raises(openai.UnprocessableEntityError, match="at most 4 stop strings") as refused:
            client.chat.completions.create(model="m", messages=user(), stop=["a", "b", "c", "d", "e"])
        assert refused.value.param == "stop"
        with pytest.raises(openai.UnprocessableEntityError, match="empty stop string"):
            client.chat.completions.create(model="m", messages=user(), stop=[""])


def test_the_stream_cutter_never_sends_text_after_a_stop_however_the_text_is_split():
    text = "one two three STOP four five"
    for size in range(1, len(text) + 1):
        cutter = StopCutter(["STOP", "never here"])
        sent = "".join(cutter.feed(piece) for piece in pieces_of(text, size)) + cutter.end()
        assert sent == cut_at_stop(text, ["STOP"])[0] == "one two three " and cutter.stopped
    cutter = StopCutter([])  # no stop strings: nothing held back
    assert cutter.feed("a fox") == "a fox" and cutter.end() == ""


# ---------------------------------------------------------------------------------------------- system messages


def test_system_and_developer_messages_become_instructions_where_the_enhancer_takes_them():
    stand_in = StandIn()
    messages = [
        {"role": "system", "content": "Night scene."},
        {"role": "developer", "content": [{"type": "text", "text": "Handheld camera."}]},
        *user(),
    ]
    with Server(stand_in) as server:
        client = client_for(server)
        whole = client.chat.completions.create(model="m", messages=messages)
        list(client.chat.completions.create(model="m", messages=messages, stream=True))
        client.chat.completions.create(model="m", messages=user())
    assert [c["instructions"] for c in stand_in.calls] == ["Night scene.\n\nHandheld camera."] * 2 + [None]
    assert "notes" not in whole.to_dict()["enhancer"]


def test_an_enhancer_without_instructions_answers_and_says_the_system_message_was_ignored():
    messages = [{"role": "system", "content": "Night scene."}, *user()]
    with Server(WithoutOptions()) as server:
        completion = client_for(server).chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == REWRITE
    [note] = completion.to_dict()["enhancer"]["notes"]
    assert note.startswith("system message ignored: the enhancer behind this server takes no instructions")
    assert note.endswith("put what you want in the user message instead")


# --------------------------------------------------------------------------------------------------- errors


def test_errors_on_the_openai_routes_take_openais_shape_and_the_client_raises_the_right_class():
    with Server(StandIn(), api_key="s3cret", limits=ServeLimits(max_n=2, max_queue=2)) as server:
        with pytest.raises(openai.AuthenticationError, match="missing or wrong API key") as refused:
            client_for(server, "wrong").chat.completions.create(model="m", messages=user())
        assert refused.value.type == "authentication_error" and refused.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client_for(server, "wrong").models.list()
        client = client_for(server, "s3cret")
        for options, param, words in (
            ({"n": 3}, "n", "at most 2 variants"),
            ({"extra_body": {"target": "imax"}}, "target", "unknown target 'imax'"),
            ({"seed": 2**64}, "seed", "seed: Input should be less than or equal to 4294967295"),
            ({"temperature": 3}, "temperature", "temperature: Input should be less than or equal to 2"),
        ):
            with pytest.raises(openai.UnprocessableEntityError) as refused:
                client.chat.completions.create(model="m", messages=user(), **options)
            assert refused.value.param == param and words in refused.value.body["message"]
        with pytest.raises(openai.UnprocessableEntityError, match="empty prompt") as refused:
            client.chat.completions.create(model="m", messages=user("   "))
        assert refused.value.param == "messages"
        with pytest.raises(openai.UnprocessableEntityError, match="no user message"):
            client.chat.completions.create(model="m", messages=[{"role": "system", "content": "hi"}])
        status, body = call(server.url + "/v1/chat/completions", raw=b'{"messages": [', key="s3cret")
        assert status == 422 and "JSON" in body["error"]["message"] and body["error"]["param"] is None
        # /v1/enhance keeps its own shape, which the web page reads
        status, body = call(server.url + "/v1/enhance", {"prompt": "a fox"}, key="wrong")
        assert status == 401 and body == {"error": "missing or wrong API key: send Authorization: Bearer KEY"}
        status, body = call(server.url + "/v1/enhance", {"prompt": "a fox", "n": 3}, key="s3cret")
        assert status == 422 and body["error"].startswith("invalid request: n: at most 2")
        assert client.chat.completions.create(model="m", messages=user()).choices[0].message.content == REWRITE


def test_a_full_queue_is_a_rate_limit_error():
    gate = threading.Event()
    stand_in = StandIn(gate=gate)
    with Server(stand_in, limits=ServeLimits(max_n=1, max_queue=1, batch_window_ms=0)) as server:
        client = client_for(server)
        with ThreadPoolExecutor(1) as pool:
            try:
                waiting = pool.submit(client.chat.completions.create, model="m", messages=user())
                while call(server.url + "/healthz")[1]["queue"] < 1:  # pytest's own timeout ends a hang
                    time.sleep(0.02)
                for stream in (False, True):
                    with pytest.raises(openai.RateLimitError, match="the queue is full") as refused:
                        client.chat.completions.create(model="m", messages=user(), stream=stream)
                    assert refused.value.type == "rate_limit_error"
                    assert refused.value.response.headers["Retry-After"] == "1"
            finally:
                gate.set()
            assert waiting.result().choices[0].message.content == REWRITE


def test_a_failing_enhancer_is_a_server_error_whole_or_mid_stream():
    with Server(Failing()) as server:
        client = client_for(server)
        with pytest.raises(openai.InternalServerError, match="RuntimeError: the model is on fire") as failed:
            client.chat.completions.create(model="m", messages=user())
        assert failed.value.type == "server_error"
        with pytest.raises(openai.APIError, match="enhancing failed: RuntimeError: the model is on fire"):
            list(client.chat.completions.create(model="m", messages=user(), stream=True))


# ------------------------------------------------------------------------------------ usage, finish, models


def test_usage_without_a_tokenizer_is_a_named_estimate_and_counts_what_was_sent():
    prompt = "a fox in the snow"
    with Server(StandIn()) as server:
        client = client_for(server)
        whole = client.chat.completions.create(model="m", messages=user(prompt), stop="camera")
        chunks = list(
            client.chat.completions.create(
                model="m", messages=user(prompt), stop="camera", stream=True, stream_options={"include_usage": True}
            )
        )
    sent = whole.choices[0].message.content
    expected = (math.ceil(len(prompt) / 4), math.ceil(len(sent) / 4))
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == expected
    assert whole.usage.total_tokens == sum(expected)
    assert whole.to_dict()["enhancer"]["usage_counted_by"].startswith("estimate: 4 characters a token")
    assert (
        chunks[-1].choices == [] and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == expected
    )


def test_finish_reason_takes_only_openais_values():
    with Server(StandIn(truncated=True)) as server:
        client = client_for(server)
        cut = client.chat.completions.create(model="m", messages=user(), n=2)
        assert [c.finish_reason for c in cut.choices] == ["length", "length"]
        chunks = list(client.chat.completions.create(model="m", messages=user(), stream=True))
        assert chunks[-1].choices[0].finish_reason == "length"
        stopped = client.chat.completions.create(model="m", messages=user(), stop="pink")
        assert stopped.choices[0].finish_reason == "stop"  # the stop string came before the cut
    with Server(StandIn(status="fallback")) as server:
        client = client_for(server)
        fallback = client.chat.completions.create(model="m", messages=user())
        chunks = list(client.chat.completions.create(model="m", messages=user(), stream=True))
    assert fallback.choices[0].finish_reason == "stop" and fallback.choices[0].message.content == "a fox in the snow"
    assert fallback.to_dict()["enhancer"]["status"] == "fallback"  # enhancer's own status, beside OpenAI's
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].to_dict()["enhancer"]["status"] == "fallback"


def test_models_lists_the_served_model_with_created():
    with Server(StandIn()) as server:
        [model] = client_for(server).models.list().data
        [again] = client_for(server).models.list().data
    assert model.id == "stand-in" and model.object == "model" and model.owned_by == "enhancer"
    assert isinstance(model.created, int) and model.created > 1_700_000_000  # unix seconds, not a count or a float
    assert again.created == model.created  # the server's start, not the time of the request


# ------------------------------------------------------------------------- <think> blocks, openai engine

THOUGHTS = "The user wants a fox. I should add the camera, the light and a mood. Maybe dawn."
THINKING_REPLY = f"<think>\n{THOUGHTS}\n</think>\n\n{REWRITE}"


def test_think_blocks_are_stripped_wherever_they_are_and_an_open_one_drops_the_rest():
    assert strip_thinking(THINKING_REPLY) == (f"\n\n{REWRITE}", False)
    assert strip_thinking(f"A fox.<think>{THOUGHTS}</think> In the snow.") == ("A fox. In the snow.", False)
    assert strip_thinking(f"<think>{THOUGHTS}") == ("", True)  # ran out of tokens while thinking
    # the template opened the block in the prompt (DeepSeek-R1 style): only its end is in the reply
    assert strip_thinking(f"{THOUGHTS}</think>{REWRITE}") == (REWRITE, False)
    assert strip_thinking("A fox in the snow, no thinking at all.") == (
        "A fox in the snow, no thinking at all.",
        False,
    )
    for raw in (THINKING_REPLY, f"<think>{THOUGHTS}", "A fox <think>one</think> in <think>two</think> snow <th"):
        for size in range(1, 12):
            thoughts = ThinkingFilter()
            shown = "".join(thoughts.feed(piece) for piece in pieces_of(raw, size)) + thoughts.end()
            assert shown == strip_thinking(raw)[0], (raw, size)


def test_the_openai_engine_strips_thinking_from_whole_replies():
    with ChatServer(responder=lambda body: THINKING_REPLY) as upstream:
        enhancer = Enhancer.load(model="test-model", engine="openai", base_url=upstream.base_url, retries=0)
        row = enhancer.enhance("a fox in the snow", seed=0)
    assert row.status == "ok" and row.enhanced == REWRITE, row.message

    with ChatServer(responder=lambda body: f"<think>\n{THOUGHTS} Now the camera") as upstream:
        enhancer = Enhancer.load(model="test-model", engine="openai", base_url=upstream.base_url, retries=0)
        row = enhancer.enhance("a fox in the snow", seed=0, max_new_tokens=40)
    assert row.status == "fallback" and row.enhanced == "a fox in the snow"  # the prompt, never the thinking
    assert "ThinkingUnfinished: the model was still thinking when it stopped" in row.message
    assert "max_tokens 40" in row.message and "raise --max-new-tokens" in row.message


class ThinkingUpstream(StandIn):
    """The upstream endpoint of a streaming test: our own server streams what this stand-in writes, which is a
    reasoning model's raw reply, three characters a piece (so the tags are split across pieces)."""

    def __init__(self, reply: str):
        super().__init__()
        self.reply = reply

    def enhance_stream(self, prompt, on_text, **options):
        for piece in pieces_of(self.reply):
            on_text(piece)
        return Enhancement(prompt=prompt, enhanced=self.reply)


def test_the_openai_engine_never_streams_thinking():
    with Server(ThinkingUpstream(THINKING_REPLY)) as upstream:
        enhancer = Enhancer.load(model="upstream", engine="openai", base_url=upstream.url + "/v1", retries=0)
        raw_pieces = []
        generation = enhancer.engine.stream(user(), on_text=raw_pieces.append, max_new_tokens=200)
        assert "".join(raw_pieces) == generation.texts[0] == f"\n\n{REWRITE}"
        shown = []
        row = enhancer.enhance_stream("a fox in the snow", on_text=shown.append, seed=0)
    assert row.status == "ok" and "".join(shown) == row.enhanced == REWRITE
    assert not any(word in "".join(raw_pieces + shown) for word in ("think", "user wants", "Maybe dawn"))

    with Server(ThinkingUpstream(f"<think>\n{THOUGHTS}")) as upstream:
        enhancer = Enhancer.load(model="upstream", engine="openai", base_url=upstream.url + "/v1", retries=0)
        shown = []
        row = enhancer.enhance_stream("a fox in the snow", on_text=shown.append, seed=0)
    assert shown == [] and row.status == "fallback" and row.enhanced == "a fox in the snow"
    assert "ThinkingUnfinished" in row.message


def test_enhancers_own_fields_ride_in_extra_body(tiny_model_dir):
    """lang, mode and passthrough_words, as /v1/enhance takes them, from the official client's extra_body."""
    import openai

    from enhancer.enhance import Enhancer

    enhancer = Enhancer.load(model=str(tiny_model_dir), max_new_tokens=12, log=lambda m: None)
    with Server(enhancer) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
        long_idea = " ".join(["a red kite over a grey sea at dawn"] * 4)
        reply = client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": long_idea}], extra_body={"passthrough_words": 20}
        )
        assert reply.choices[0].message.content == long_idea  # passed through, as asked
        with pytest.raises(openai.UnprocessableEntityError, match="unknown mode 'epic'"):
            client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "a kite"}], extra_body={"mode": "epic"}
            )
        with pytest.raises(openai.UnprocessableEntityError, match="unknown language"):
            client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "a kite"}], extra_body={"lang": "xx"}
            )
