"""The llama.cpp engine (the xllamacpp wheel) on GGUF files this project exports: the same prompt text as the
transformers engine, the same greedy tokens, variants, streaming, the cached export of a model, and the engine
`auto` picks. Tiny random models, so nothing is downloaded and each decode takes milliseconds."""

from __future__ import annotations

import pytest

from enhancer.enhance import Enhancer
from enhancer.enhance.engines import GenerationStopped, LlamaCppEngine, TransformersEngine, gguf_chat_template
from enhancer.export.gguf import cached_export, export_gguf
from enhancer.prompts import build_messages


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedded_dir):
    """A tiny random Llama with sharp logits (greedy choices are not near-ties), and its f32 GGUF export."""
    from enhancer.testing import tiny_causal_lm

    folder = tmp_path_factory.mktemp("llamacpp")
    model = tiny_causal_lm(folder / "hf", hidden=64, heads=4, kv_heads=2, seed=1, logit_scale=8.0)
    gguf = export_gguf(folder / "tiny.gguf", model=str(model), adapter="none", quant="f32", log=lambda m: None)
    return model, gguf


@pytest.fixture(scope="module")
def engines(tiny):
    model, gguf = tiny
    return TransformersEngine(str(model), dtype="float32"), LlamaCppEngine(str(gguf), parallel=2, n_ctx=4096)


CONVERSATIONS = [
    build_messages("a fox in the snow", "generic", "chat"),
    build_messages('a neon sign that says "OPEN"', "sora", "compact"),
    [{"role": "user", "content": "no system message here"}],
]


def test_the_prompt_is_the_text_transformers_renders(engines):
    torch_engine, llama_engine = engines
    for conversation in CONVERSATIONS:
        assert llama_engine.render(conversation) == torch_engine.render(conversation)


def test_the_template_comes_from_the_sidecar_or_the_file(tiny, tmp_path):
    _, gguf = tiny
    from_sidecar = gguf_chat_template(str(gguf))
    bare = tmp_path / "bare.gguf"  # the same file without its sidecar, as from another tool
    bare.symlink_to(gguf)
    from_file = gguf_chat_template(str(bare))
    assert from_file["chat_template"] == from_sidecar["chat_template"] and from_file["eos_token"] == "<|im_end|>"


@pytest.mark.parametrize("penalty", [1.0, 1.1, 2.0])
def test_greedy_decoding_matches_transformers(engines, penalty):
    """Token for token, with the repetition penalty on generated tokens only: llama.cpp's own sampler would count
    the prompt's last tokens too (at 2.0 that changes every output here), so the engine decodes in requests whose
    penalty window holds the generated tokens alone."""
    torch_engine, llama_engine = engines
    for engine in engines:
        engine.repetition_penalty = penalty
    try:
        expected = torch_engine.generate(CONVERSATIONS, temperature=0, max_new_tokens=40)
        got = llama_engine.generate(CONVERSATIONS, temperature=0, max_new_tokens=40)
        assert [g.texts for g in got] == [e.texts for e in expected]
        assert [g.truncated for g in got] == [e.truncated for e in expected]
        if penalty == 2.0:  # the penalty reaches llama.cpp's sampler: without it the output differs
            llama_engine.repetition_penalty = 1.0
            assert llama_engine.generate(CONVERSATIONS, temperature=0, max_new_tokens=40)[0].texts != got[0].texts
    finally:
        for engine in engines:
            engine.repetition_penalty = 1.1


def test_variants_seeds_truncation_and_streaming(engines):
    _, llama_engine = engines
    [sampled] = llama_engine.generate(CONVERSATIONS[:1], n=3, seed=5, temperature=0.9, max_new_tokens=16)
    assert len(sampled.texts) == 3 and len(set(sampled.texts)) > 1 and sampled.truncated == [True] * 3
    # One rewrite at a time, a seed gives the same sample. (Variants decode side by side, and which tokens share
    # a batch moves the last bits of the numbers, so their samples are not fixed by the seed alone.)
    [one] = llama_engine.generate(CONVERSATIONS[:1], n=1, seed=5, temperature=0.9, max_new_tokens=16)
    [again] = llama_engine.generate(CONVERSATIONS[:1], n=1, seed=5, temperature=0.9, max_new_tokens=16)
    assert again.texts == one.texts
    pieces = []
    prompt = llama_engine.render(CONVERSATIONS[0])
    streamed = llama_engine.request(prompt, seed=0, temperature=0, max_new_tokens=16, stream=pieces.append)
    whole = llama_engine.request(prompt, seed=0, temperature=0, max_new_tokens=16)
    assert len(pieces) > 1 and "".join(pieces) == streamed["text"] == whole["text"]


def test_the_enhancer_on_a_gguf_file(tiny):
    _, gguf = tiny
    enhancer = Enhancer.load(model=str(gguf), max_new_tokens=12)  # engine "auto" picks llama.cpp for .gguf
    assert enhancer.engine.name == "llamacpp" and enhancer.model_label == "tiny.gguf"
    rows = enhancer.enhance(["a fox in the snow", "", "rain on a window"], seed=1, negative=True)
    assert [r.status for r in rows][1] == "error"  # the empty prompt fails alone
    assert all(r.status in ("ok", "fallback") for r in (rows[0], rows[2]))


def test_a_model_is_exported_once_into_the_cache(tiny, tmp_path, monkeypatch):
    model, _ = tiny
    monkeypatch.setenv("ENHANCER_HOME", str(tmp_path / "home"))
    first = cached_export(str(model), "none", quant="f16", log=lambda m: None)
    stamp = first.stat().st_mtime_ns
    assert cached_export(str(model), "none", quant="f16", log=lambda m: None) == first
    assert first.stat().st_mtime_ns == stamp and first.with_suffix(".gguf.enhancer.json").is_file()
    assert cached_export(str(model), "none", quant="q8_0", log=lambda m: None) != first  # the key has the quant
    enhancer = Enhancer.load(model=str(model), adapter="none", engine="llamacpp", max_new_tokens=8)
    assert enhancer.engine.name == "llamacpp" and enhancer.model_label == "hf"


def test_auto_picks_the_engine(tiny):
    from enhancer.enhance.enhancer import auto_engine

    model, gguf = tiny
    assert auto_engine(str(gguf), None, None) == "llamacpp"
    assert auto_engine("embedded", None, None) == "llamacpp"
    assert auto_engine("embedded", None, "float32") == "transformers"  # a dtype is a transformers setting
    assert auto_engine(str(model), None, None) == "transformers"  # any other Hugging Face model


def test_a_missing_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs a .gguf file; write one with `enhancer export --gguf`"):
        LlamaCppEngine(str(tmp_path / "m.gguf"))


def test_candidates_and_a_batch_file_through_llamacpp(tiny, tmp_path, cli_env):
    import json
    import subprocess

    from conftest import BIN

    _, gguf = tiny
    ranked = Enhancer.load(model=str(gguf), candidates=3, max_new_tokens=12, slots=3)
    row = ranked.enhance("a fox in the snow", n=2, seed=4)
    assert row.status in ("ok", "fallback") and len(row.variants or [row.enhanced]) <= 2

    inputs = tmp_path / "prompts.txt"
    inputs.write_text("a fox in the snow\n\nrain on a window\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [str(BIN / "enhancer"), "enhance", "--model", str(gguf), "--input", str(inputs), "--output", str(out)]
        + ["--max-new-tokens", "12", "--seed", "1"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in rows] == ["a fox in the snow", "rain on a window"]  # a blank line is no prompt
    assert all(r["status"] in ("ok", "fallback") and r["model"] == "tiny.gguf" for r in rows)


def test_without_the_wheel_auto_falls_back_with_a_notice(monkeypatch):
    from enhancer.enhance import enhancer as module

    monkeypatch.setattr(module, "llamacpp_available", lambda: False)
    said = []
    assert module.auto_engine("embedded", None, None, log=said.append) == "transformers"
    assert said == [
        "llama.cpp (the xllamacpp wheel) is not installed for this platform: using the transformers engine"
    ]


def test_should_stop_ends_a_call_at_the_next_token(engines):
    """What `enhancer serve` relies on when every client of a call has left: llama.cpp stops at the next token,
    and conversations not begun are not decoded at all."""
    _, llama_engine = engines
    prompt = llama_engine.render(CONVERSATIONS[0])
    whole = llama_engine.request(prompt, seed=0, temperature=0, max_new_tokens=40)
    asked = []

    def from_the_third() -> bool:
        asked.append(len(asked) >= 2)
        return asked[-1]

    stopped = llama_engine.request(prompt, seed=0, temperature=0, max_new_tokens=40, should_stop=from_the_third)
    assert asked == [False, False, True]  # asked at every token, and not after it said stop
    assert stopped["tokens"] == 3 < whole["tokens"] and whole["text"].startswith(stopped["text"])
    results = llama_engine.generate(CONVERSATIONS, n=2, max_new_tokens=40, should_stop=lambda: True)
    assert all(isinstance(r, GenerationStopped) for r in results)
