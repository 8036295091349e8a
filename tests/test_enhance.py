"""The Enhancer and its engines: transformers on a tiny random model, openai against a real local HTTP server,
vllm's clear error, seeded determinism and every kind of bad input."""

from __future__ import annotations

import socket
import subprocess

import pytest

from enhancer.enhance import Enhancer
from enhancer.enhance.engines import EngineUnavailableError, VLLMEngine
from enhancer.prompts import build_messages

from chat_server import ChatServer, reply_for
from conftest import BIN


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ------------------------------------------------------------------------------------------ transformers engine


@pytest.fixture(scope="module")
def tiny_enhancer(tiny_model_dir):
    return Enhancer.load(model=str(tiny_model_dir), max_new_tokens=24, batch_size=4)


def test_transformers_engine_is_deterministic_for_a_seed(tiny_enhancer):
    conversations = [[{"role": "user", "content": f"Idea: scene {i}"}] for i in range(5)]
    first = tiny_enhancer.engine.generate(conversations, n=2, seed=7, temperature=1.0, max_new_tokens=16)
    again = tiny_enhancer.engine.generate(conversations, n=2, seed=7, temperature=1.0, max_new_tokens=16)
    other = tiny_enhancer.engine.generate(conversations, n=2, seed=8, temperature=1.0, max_new_tokens=16)
    assert [g.texts for g in first] == [g.texts for g in again]
    assert [g.texts for g in first] != [g.texts for g in other]
    assert all(len(g.texts) == 2 and len(g.truncated) == 2 for g in first)


def test_batched_greedy_matches_one_at_a_time(tiny_model_dir):
    """Sorting by length and left padding must not change what each prompt gets, nor the order of results."""
    batched = Enhancer.load(model=str(tiny_model_dir), batch_size=8)
    single = Enhancer.load(model=str(tiny_model_dir), batch_size=1)
    conversations = [[{"role": "user", "content": "Idea: " + "snow " * i}] for i in (1, 9, 3, 6)]
    a = batched.engine.generate(conversations, n=1, seed=0, temperature=0, max_new_tokens=12)
    b = single.engine.generate(conversations, n=1, seed=0, temperature=0, max_new_tokens=12)
    assert [g.texts for g in a] == [g.texts for g in b]


def test_enhancement_rows_carry_the_contract_fields(tiny_enhancer):
    row = tiny_enhancer.enhance("a lighthouse in a storm", target="wan", seed=3)
    assert row.prompt == "a lighthouse in a storm"
    assert row.status in ("ok", "fallback")  # a random model may write nonsense; then it falls back, with why
    if row.status == "fallback":
        assert row.enhanced == row.prompt and row.message.startswith("model output unusable")
    assert (row.model, row.target, row.seed) == (str(tiny_enhancer.model_label), "wan", 3)
    assert row.seconds > 0
    assert tiny_enhancer.enhance("a lighthouse in a storm", target="wan", seed=3).to_dict() | {"seconds": 0} == (
        row.to_dict() | {"seconds": 0}
    )


def test_empty_prompt_raises_from_the_api(tiny_enhancer):
    with pytest.raises(ValueError, match="empty prompt"):
        tiny_enhancer.enhance("  ")


def test_bad_prompts_in_a_batch_fail_alone(tiny_enhancer):
    rows = tiny_enhancer.enhance(["a red kite", "", "x " * 400, "rain on a window"], seed=1)
    assert [r.status == "error" for r in rows] == [False, True, True, False]
    assert "empty prompt" in rows[1].message and "too long" in rows[2].message
    assert rows[0].prompt == "a red kite" and rows[3].prompt == "rain on a window"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "onnx"}, "unknown engine 'onnx'; valid engines: auto, llamacpp, transformers, openai, vllm"),
        ({"engine": "openai"}, "the openai engine needs --base-url"),
        ({"temperature": -1}, "temperature must be >= 0"),
    ],
)
def test_bad_load_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        Enhancer.load(**options)


def test_unknown_target_is_named(tiny_enhancer):
    with pytest.raises(ValueError, match="valid targets: generic, sora"):
        tiny_enhancer.enhance("a fox", target="runway")


def test_vllm_engine_says_what_to_install():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(EngineUnavailableError, match=r"pip install 'enhancer\[gpu\]'"):
            VLLMEngine("unused")
    else:
        pytest.skip("vllm is installed here; the GPU test covers it")


# ------------------------------------------------------------------------------------------------ openai engine


def test_openai_engine_against_a_local_server():
    with ChatServer() as server:
        enhancer = Enhancer.load(engine="openai", base_url=server.base_url, retries=0)
        row = enhancer.enhance("a paper boat in a gutter stream", target="generic", seed=11)
        assert row.status == "ok", row.message
        # chatter and wrapping quotes removed, the rest kept verbatim
        expected = reply_for("a paper boat in a gutter stream", 11, 0).split("\n", 1)[1].strip('"')
        assert row.enhanced == expected
        assert row.model == "test-model"  # asked the server what it serves
        request = server.requests[-1]
        assert request["model"] == "test-model" and request["seed"] == 11
        assert request["messages"][0]["role"] == "system"
        assert request["temperature"] == 0.0  # one rewrite, no temperature given: greedy
        enhancer.enhance("a paper boat in a gutter stream", n=2)
        assert server.requests[-1]["temperature"] == 0.7  # several: sampled, or they would all be alike
        enhancer.enhance("a paper boat in a gutter stream", temperature=0.3)
        assert server.requests[-1]["temperature"] == 0.3


def test_openai_engine_variants_even_when_the_server_ignores_n():
    with ChatServer(single_choice=True) as server:
        enhancer = Enhancer.load(model="test-model", engine="openai", base_url=server.base_url, retries=0)
        row = enhancer.enhance("two kites over a beach", n=3, seed=5)
        assert len(row.variants) == 3 and len(set(row.variants)) == 3
        assert len(server.requests) == 3


def test_openai_engine_retries_then_succeeds():
    with ChatServer(fail_first=2) as server:
        enhancer = Enhancer.load(model="test-model", engine="openai", base_url=server.base_url, retries=2)
        row = enhancer.enhance("a heron in the reeds", seed=1)
        assert row.status == "ok"
        assert len(server.requests) == 3


def test_failing_endpoint_falls_back_after_bounded_retries():
    with ChatServer(always_fail=True) as server:
        enhancer = Enhancer.load(model="test-model", engine="openai", base_url=server.base_url, retries=1)
        rows = enhancer.enhance(["a heron in the reeds", "a fox"], seed=1)
        assert [r.status for r in rows] == ["fallback", "fallback"]
        assert rows[0].enhanced == "a heron in the reeds"
        assert "openai engine failed: InternalServerError" in rows[0].message
        assert len(server.requests) == 4  # (1 try + 1 retry) per prompt, then it stops


def test_dead_endpoint_falls_back_quickly():
    enhancer = Enhancer.load(model="m", engine="openai", base_url=_dead_url(), retries=1, timeout=5)
    row = enhancer.enhance("a fox in the snow", seed=0)
    assert row.status == "fallback" and row.enhanced == "a fox in the snow"
    assert "APIConnectionError" in row.message


def test_negative_prompt_from_the_endpoint():
    with ChatServer() as server:
        enhancer = Enhancer.load(model="test-model", engine="openai", base_url=server.base_url, retries=0)
        row = enhancer.enhance("a heron", negative=True, seed=2)
        assert row.negative and "," in row.negative
        assert server.requests[-1]["messages"][0]["content"].startswith("You write negative prompts")


# -------------------------------------------------------------------------------------------------------- CLI


def test_cli_empty_prompt_exits_2():
    result = subprocess.run([str(BIN / "enhancer"), "enhance", " "], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "empty prompt" in result.stderr


def test_cli_dead_endpoint_prints_the_original_with_the_reason():
    result = subprocess.run(
        [
            str(BIN / "enhancer"),
            "enhance",
            "a fox in the snow",
            "--engine",
            "openai",
            "--model",
            "m",
            "--base-url",
            _dead_url(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "a fox in the snow"
    assert "fallback: openai engine failed: APIConnectionError" in result.stderr


def test_cli_unknown_target_lists_choices():
    result = subprocess.run(
        [str(BIN / "enhancer"), "enhance", "a fox", "--target", "runway"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "'generic', 'sora', 'veo'" in result.stderr


def test_embedded_model_enhances_the_fox(embedded_dir):
    """The product on a fresh laptop: the embedded model writes a real enhanced prompt (its speed: bench/)."""
    result = subprocess.run(
        [str(BIN / "enhancer"), "enhance", "a fox trotting across a snowy field at dawn", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    assert len(text.split()) >= 40, text
    assert "fox" in text.lower()


def test_original_format_is_sent_as_raw_text(tiny_model_dir):
    enhancer = Enhancer.load(model=str(tiny_model_dir), prompt_format="original", max_new_tokens=8)
    assert enhancer.engine.render(build_messages("a fox", prompt_format="original")) == "Input: a fox\nOutput:"
    row = enhancer.enhance("a fox", seed=0)
    assert row.status in ("ok", "fallback")


def test_candidates_are_ranked_by_the_facts_they_keep(tiny_model_dir):
    from enhancer.enhance.rank import FactRanker

    ranker = FactRanker()
    idea = 'three red kites over a beach, pixel art, a banner that says "GO"'
    keeps = (
        'Pixel art: three red kites dance over a beach while a banner reading "GO" flaps below, a slow pan along '
        "the shore in warm light with a teal and coral palette and a bright, playful mood as the wind rises."
    )
    drops = (
        "Several colourful shapes drift above the sand in soft light while the camera pans slowly along the shore "
        "with a teal and coral palette and a bright, playful mood as the wind rises over the water."
    )
    assert ranker.rank(idea, [drops, keeps]) == [keeps, drops]
    first, second = ranker.scores(idea, [keeps, drops])
    assert first > second

    enhancer = Enhancer.load(model=str(tiny_model_dir), candidates=3, max_new_tokens=12)
    row = enhancer.enhance("a red kite", seed=0)
    assert row.status in ("ok", "fallback") and len(row.variants) <= 1  # n=1: the best of 3, alone
    with pytest.raises(ValueError, match="candidates must be at least 1"):
        Enhancer.load(model=str(tiny_model_dir), candidates=0)
