"""GGUF export: a tiny random Llama (and Qwen2) with the SmolLM2 tokenizer, written with the gguf package and
read back by transformers' own GGUF loader (which undoes llama.cpp's Q/K layout): same logits, same greedy
tokens. llama.cpp itself reads the files in tests/test_llamacpp_engine.py."""

from __future__ import annotations

import pytest
import torch

from enhancer.export.gguf import ExportError, export_gguf


def _tiny(tmp_path, kind, embedded_dir):
    from enhancer.testing import tiny_causal_lm

    return tiny_causal_lm(tmp_path / kind, arch=kind, hidden=64, heads=4, kv_heads=2, seed=1, logit_scale=8.0)


def _logits(path, ids, gguf_file=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=torch.float32)
    with torch.no_grad():
        logits = model(ids).logits
        tokens = model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
    return logits, tokens[0, ids.shape[1] :].tolist()


# qwen2 is slow-marked: the llama case covers the same writer in the default run (keeps `make test` under 10 min)
@pytest.mark.parametrize("kind", ["llama", pytest.param("qwen2", marks=pytest.mark.slow)])
def test_gguf_round_trip_through_transformers(kind, tmp_path, embedded_dir):
    path = _tiny(tmp_path, kind, embedded_dir)
    ids = torch.tensor([[1, 504, 3312, 282, 260, 4376, 2]])
    expected, greedy = _logits(path, ids)
    out = export_gguf(tmp_path / f"{kind}-f32.gguf", model=str(path), adapter="none", quant="f32", log=lambda m: None)
    logits, tokens = _logits(tmp_path, ids, gguf_file=out.name)
    assert torch.allclose(logits, expected, atol=1e-4) and tokens == greedy
    half = export_gguf(tmp_path / f"{kind}-f16.gguf", model=str(path), adapter="none", quant="f16", log=lambda m: None)
    logits, _ = _logits(tmp_path, ids, gguf_file=half.name)
    assert torch.allclose(logits, expected, atol=5e-2)
    q8 = export_gguf(tmp_path / f"{kind}-q8.gguf", model=str(path), adapter="none", quant="q8_0", log=lambda m: None)
    assert q8.stat().st_size < 0.7 * half.stat().st_size
    q4 = export_gguf(tmp_path / f"{kind}-q4.gguf", model=str(path), adapter="none", quant="q4_0", log=lambda m: None)
    logits, _ = _logits(tmp_path, ids, gguf_file=q4.name)  # transformers dequantizes llama.cpp's 4-bit blocks
    assert (
        q4.stat().st_size < 0.8 * q8.stat().st_size
        and torch.nn.functional.cosine_similarity(logits.flatten(), expected.flatten(), dim=0) > 0.9
    )


def test_the_adapter_is_merged_and_errors_are_clear(tmp_path, embedded_dir):
    import gguf
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = _tiny(tmp_path, "llama", embedded_dir)
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 504, 3312, 282, 260]])
    with torch.no_grad():
        expected = lora.merge_and_unload()(ids).logits
    out = export_gguf(tmp_path / "merged.gguf", model=str(path), adapter=str(tmp_path / "adapter"), quant="f32")
    logits, _ = _logits(tmp_path, ids, gguf_file=out.name)
    assert torch.allclose(logits, expected, atol=1e-4)
    fields = gguf.GGUFReader(str(out)).fields
    assert bytes(fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    assert "tokenizer.chat_template" in fields and (tmp_path / "merged.gguf.enhancer.json").exists()
    with pytest.raises(FileExistsError):
        export_gguf(out, model=str(path), adapter="none")
    with pytest.raises(ExportError, match="choose one of f16, q8_0, q5_0, q4_0, f32"):
        export_gguf(tmp_path / "x.gguf", model=str(path), adapter="none", quant="q2_k")


def test_cli_export_gguf(tmp_path, embedded_dir):
    import subprocess

    from conftest import BIN

    path = _tiny(tmp_path, "llama", embedded_dir)
    out = tmp_path / "cli.gguf"
    command = [str(BIN / "enhancer"), "export", "--gguf", str(out), "--model", str(path), "--adapter", "none"]
    result = subprocess.run(command + ["--quant", "q8_0"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.exists() and "q8_0" in result.stderr
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr
    neither = subprocess.run([str(BIN / "enhancer"), "export"], capture_output=True, text=True, timeout=300)
    assert neither.returncode == 2 and "give one of --merge OUT, --gguf OUT.gguf, --ollama DIR" in neither.stderr


@pytest.mark.parametrize("target", ["generic", "sora"])
def test_ollama_template_renders_what_the_engine_sends(target, tmp_path, embedded_dir):
    from transformers import AutoTokenizer

    from enhancer.enhance.engines import TransformersEngine
    from enhancer.export.gguf import export_ollama
    from enhancer.prompts import build_messages

    path = _tiny(tmp_path, "llama", embedded_dir)
    folder = export_ollama(tmp_path / "ollama", model=str(path), adapter="none", target=target, log=lambda m: None)
    modelfile = (folder / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile and (folder / "model.gguf").exists()
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "PARAMETER temperature 0" in modelfile
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    system = modelfile.split('SYSTEM """', 1)[1].split('"""', 1)[0]
    idea = "three red kites over a beach"
    ollama_prompt = template.replace("{{ .System }}", system).replace("{{ .Prompt }}", idea)
    engine = TransformersEngine.__new__(TransformersEngine)  # render() needs only the tokenizer
    engine.tokenizer = AutoTokenizer.from_pretrained(path)
    assert ollama_prompt == engine.render(build_messages(idea, target))


def test_a_killed_export_leaves_no_file_and_the_rerun_writes_it(tmp_path, cli_env):
    """The GGUF is written under a temporary name and renamed when whole: killed while writing, the export leaves
    nothing at the name asked for, and running it again works (before, the rerun refused a truncated file)."""
    import os
    import signal
    import subprocess
    import time

    from conftest import BIN

    out = tmp_path / "enh.gguf"
    command = [str(BIN / "enhancer"), "export", "--gguf", str(out), "--quant", "f32"]  # ~540 MB: seconds to write
    first = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not any(p.name.endswith(".partial") and p.stat().st_size > 1_000_000 for p in tmp_path.iterdir()):
        # the export ending before its file shows up under the temporary name fails the test
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert not out.exists()
    again = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert out.stat().st_size > 100_000_000 and (tmp_path / "enh.gguf.enhancer.json").is_file()
    assert not list(tmp_path.glob("*.partial"))  # the killed export's leftover went with the rerun
