"""Streaming: the cleaner that decides what may be shown while a reply is written (hand-written replies cut into
token-sized pieces), the engines' stream methods against their own generate, `Enhancer.enhance_stream` and
`enhancer enhance --stream` on the embedded model through llama.cpp, and `/v1/chat/completions` with
`stream: true` read by the official openai client."""

from __future__ import annotations

import subprocess

import pytest

from enhancer.enhance import Enhancer
from enhancer.enhance.engines import LlamaCppEngine, TransformersEngine
from enhancer.prompts import StreamCleaner, build_messages, clean_output, get_profile

from conftest import BIN

GENERIC = get_profile("generic")

CLEAN = (
    "A red fox trots across a snowy field at dawn, its breath rising in small clouds. The camera tracks low "
    "beside it on a 50mm lens at f/2.8, the snow crisp in the foreground. Soft pink light rakes across the drifts. "
    "Palette of rose, white and slate blue. Quiet, cold, hopeful mood."
)


def pieces_of(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream(raw: str, *, truncated: bool = False, max_new_tokens: int = 192, profile=GENERIC, size: int = 3):
    """Feed `raw` piece by piece; returns what was shown after each piece, the final text and the cleaner."""
    cleaner = StreamCleaner(profile, max_new_tokens)
    shown = [cleaner.feed(piece) for piece in pieces_of(raw, size)]
    final = clean_output(raw, profile, truncated=truncated).text
    return shown, "".join(shown) + cleaner.rest(final), final, cleaner


def test_a_clean_reply_is_shown_as_it_comes_and_ends_as_clean_output():
    shown, total, final, cleaner = stream(CLEAN)
    assert total == final == clean_output(CLEAN, GENERIC).text and not cleaner.diverged
    first = next(i for i, s in enumerate(shown) if s)
    assert first < len(shown) // 3  # it starts early: after the first sentence, not at the end
    assert sum(1 for s in shown if s) > 10  # and comes in many pieces, not one block


@pytest.mark.parametrize(
    ("raw", "never"),
    [
        ("Sure! Here is your enhanced video prompt:\n\n" + CLEAN, "Sure"),
        ("Enhanced prompt: " + CLEAN, "Enhanced prompt"),
        (CLEAN + " Let me know if you would like a longer version.", "Let me"),
        (CLEAN + " This prompt keeps every detail you gave.", "This prompt"),
        ("A **red fox** trots across the snow at dawn. " + CLEAN, "**"),
    ],
)
def test_text_the_cleanup_removes_is_never_shown(raw, never):
    shown, total, final, cleaner = stream(raw)
    assert never not in "".join(shown) and never not in final
    assert total == final and not cleaner.diverged


def test_a_reply_wrapped_in_quotes_waits_for_the_closing_quote():
    shown, total, final, _ = stream(f'"{CLEAN}"')
    assert "".join(shown) == "" and total == final == CLEAN


def test_near_the_token_limit_only_whole_sentences_are_shown():
    raw = CLEAN + " The fox pauses at the edge of the birch wood and looks"
    shown, total, final, cleaner = stream(raw, truncated=True, max_new_tokens=90)
    assert not "".join(shown).endswith("looks") and total == final == CLEAN and not cleaner.diverged


def test_past_the_budget_nothing_is_shown_that_the_trim_removes():
    profile = get_profile("generic")
    long = " ".join([CLEAN] * 4)  # ~240 words against a budget of 120
    shown, total, final, cleaner = stream(long, profile=profile, max_new_tokens=1000)
    assert len(final.split()) <= profile.budget_words() and total == final and not cleaner.diverged


# --------------------------------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def tiny_engines(tmp_path_factory, embedded_dir):
    from enhancer.export.gguf import export_gguf
    from enhancer.testing import tiny_causal_lm

    folder = tmp_path_factory.mktemp("stream")
    model = tiny_causal_lm(folder / "hf", hidden=64, heads=4, kv_heads=2, seed=1, logit_scale=8.0)
    gguf = export_gguf(folder / "tiny.gguf", model=str(model), adapter="none", quant="f32", log=lambda m: None)
    return TransformersEngine(str(model), dtype="float32"), LlamaCppEngine(str(gguf), parallel=2, n_ctx=4096)


@pytest.mark.parametrize("which", [0, 1], ids=["transformers", "llamacpp"])
def test_an_engine_streams_what_it_generates_and_stops_when_asked(tiny_engines, which):
    engine = tiny_engines[which]
    conversation = build_messages("a fox in the snow", "generic", "chat")
    [whole] = engine.generate([conversation], seed=0, temperature=0, max_new_tokens=24)
    pieces = []
    streamed = engine.stream(conversation, on_text=pieces.append, seed=0, temperature=0, max_new_tokens=24)
    assert streamed.texts == whole.texts and len(pieces) > 1
    assert "".join(pieces).strip() == whole.texts[0].strip()
    asked = []
    stopped = engine.stream(
        conversation, on_text=lambda p: asked.append(p) or True, seed=0, temperature=0, max_new_tokens=24
    )
    assert len(asked) == 1 and len(stopped.texts[0]) < len(whole.texts[0])  # ended at the next token


# ------------------------------------------------------------------------------- the embedded model, streamed

PROMPT = "three red balloons drifting over a rooftop"


@pytest.fixture(scope="module")
def embedded():
    """The default engine on the embedded model: llama.cpp on its export in the model cache (made once)."""
    enhancer = Enhancer.load(log=lambda m: None)
    assert enhancer.engine.name == "llamacpp"
    return enhancer


def test_enhance_stream_shows_the_rewrite_enhance_returns(embedded):
    pieces = []
    result = embedded.enhance_stream(PROMPT, on_text=pieces.append, seed=0)
    assert result.status == "ok" and len(pieces) > 5 and "".join(pieces) == result.enhanced
    assert embedded.enhance(PROMPT, seed=0).enhanced == result.enhanced  # greedy: the same text either way
    assert "red" in result.enhanced.lower() and "balloon" in result.enhanced.lower()


def test_the_cli_streams_the_same_rewrite(cli_env, embedded):
    def run(*flags):
        done = subprocess.run(
            [str(BIN / "enhancer"), "enhance", *flags, PROMPT, "--seed", "0"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("--stream") == run()
    refused = subprocess.run(
        [str(BIN / "enhancer"), "enhance", "--stream", "--n", "2", PROMPT], env=cli_env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "--stream prints one rewrite of one PROMPT" in refused.stderr


def test_chat_completions_stream_to_the_openai_client(embedded):
    from openai import OpenAI

    from enhancer.serve.api import Server

    with Server(embedded) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": PROMPT}]
        whole = client.chat.completions.create(model="enhancer", messages=messages, seed=0)
        chunks = list(client.chat.completions.create(model="enhancer", messages=messages, seed=0, stream=True))
        deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert chunks[0].choices[0].delta.role == "assistant" and len(deltas) > 5
        assert "".join(deltas) == whole.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].object == "chat.completion.chunk"
        variants = list(client.chat.completions.create(model="enhancer", messages=messages, n=2, seed=1, stream=True))
        texts = {}
        for chunk in variants:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        assert len(texts) == 2 and all(len(t.split()) > 20 for t in texts.values())
