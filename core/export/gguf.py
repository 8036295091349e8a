"""`enhancer export --gguf OUT.gguf [--adapter DIR] [--quant q8_0|f16|q5_0|q4_0|f32]`: an enhancer model as one GGUF file for
llama.cpp, Ollama and LM Studio.

The LoRA adapter is merged into the base weights, then the `gguf` package's writer gets the architecture
metadata, the tokenizer (tokens, types, merges, special ids, chat template, via `gguf.SpecialVocab`) and the
tensors under llama.cpp's names (`gguf.get_tensor_name_map`). Llama-architecture Q and K projections are
permuted the way llama.cpp's converter does (llama.cpp applies rotary embeddings to interleaved pairs);
transformers' own GGUF loader undoes it, which is how the tests check the file. Norms and biases stay float32;
matrices are f16, q8_0, q5_0 or q4_0 (llama.cpp's 8-, 5- and 4-bit blocks of 32) or f32. Supported architectures: Llama (SmolLM2, Llama) and
Qwen2 (Qwen2.5).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from enhancer import logs

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
QUANTS = ("f16", "q8_0", "q5_0", "q4_0", "f32")


class ExportError(ValueError):
    """A model this exporter cannot write, with what to do instead."""


def _pre_tokenizer(arch: str, vocab_size: int, given: str | None) -> str:
    """llama.cpp's name for the pre-tokenizer (the regex that splits text before BPE)."""
    if given:
        return given
    if arch == "qwen2":
        return "qwen2"
    if arch == "llama" and vocab_size == 49152:
        return "smollm"  # SmolLM and SmolLM2
    if arch == "llama" and vocab_size == 128256:
        return "llama-bpe"  # Llama 3
    raise ExportError(
        f"cannot tell llama.cpp's pre-tokenizer for a {arch} model with {vocab_size} tokens: pass --gguf-pre NAME "
        "(the tokenizer.ggml.pre value llama.cpp's convert_hf_to_gguf.py would write for it)"
    )


def _permute(weights, n_head: int):
    """llama.cpp's Q/K layout for Llama: rotary halves interleaved per head."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _remove_dead_partials(out: Path) -> None:
    """Delete what killed exports to `out` left (`.NAME.PID.partial` of a process that is gone); an export still
    running elsewhere keeps its file."""
    for leftover in out.parent.glob(f".{out.name}.*.partial"):
        pid = leftover.name[len(out.name) + 2 : -len(".partial")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def export_gguf(
    out: str | Path,
    model: str = "embedded",
    adapter: str | None = None,
    quant: str = "f16",
    pre: str | None = None,
    log=logs.info,
) -> Path:
    import gguf
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from enhancer.models import read_metadata, resolve_model

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant}: choose one of {', '.join(QUANTS)}")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new file name")
    resolved = resolve_model(model, adapter, log=log)  # "embedded" alone: base + the shipped adapter
    config = AutoConfig.from_pretrained(resolved.path)
    arch = ARCHITECTURES.get((config.architectures or ["?"])[0])
    if arch is None:
        raise ExportError(
            f"{resolved.path}: architecture {config.architectures} is not supported by the GGUF exporter "
            f"({', '.join(ARCHITECTURES)}); `enhancer export --merge` writes a plain model for llama.cpp's converter"
        )
    rope_parameters = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope_parameters.get("rope_type", "default") != "default":
        raise ExportError(f"{resolved.path}: rope scaling {rope_parameters} is not written by this exporter yet")
    weights = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32)
    if resolved.adapter:
        log(f"export: merging {resolved.adapter}")
        weights = PeftModel.from_pretrained(weights, resolved.adapter).merge_and_unload()
    tokenizer_dir = (
        resolved.adapter if resolved.adapter and Path(resolved.adapter, "tokenizer.json").exists() else None
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or resolved.path)

    n_head, n_kv = (
        config.num_attention_heads,
        getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
    )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = rope_parameters.get("rope_theta") or getattr(config, "rope_theta", None)
    vocab_size = config.vocab_size
    file_type = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "f32": gguf.LlamaFileType.ALL_F32,
    }[quant]

    # Written under a temporary name and renamed when whole: a killed export leaves no truncated file at `out`.
    _remove_dead_partials(out)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(str(partial), arch)
    label = Path(resolved.path).name + (f"+{Path(resolved.adapter).name}" if resolved.adapter else "")
    writer.add_name(f"enhancer {label}")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    if rope:
        writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(vocab_size)
    writer.add_file_type(file_type)

    # tokenizer: byte-level BPE tokens by id, their types, merges and special ids, the chat template
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    for i in range(len(tokens), vocab_size):  # embedding rows beyond the tokenizer (padding)
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(arch, vocab_size, pre))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(tokenizer_dir or resolved.path, load_merges=True, n_vocab=vocab_size)
    if not special_vocab.merges:
        raise ExportError(
            f"{resolved.path}: no BPE merges in tokenizer.json; only byte-level BPE tokenizers are written"
        )
    if tokenizer.chat_template and not special_vocab.chat_template:
        special_vocab.chat_template = tokenizer.chat_template
    special_vocab.add_to_gguf(writer)
    writer.add_add_bos_token(False)  # chat templates put their own begin markers

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    tied = getattr(config, "tie_word_embeddings", False)
    for name, tensor in weights.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when the file has no output tensor
        if name.endswith("rotary_emb.inv_freq"):
            continue
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ExportError(f"tensor {name}: no GGUF name for it in the {arch} map")
        data = tensor.detach().float().numpy()
        if arch == "llama" and name.endswith("self_attn.q_proj.weight"):
            data = _permute(data, n_head)
        elif arch == "llama" and name.endswith("self_attn.k_proj.weight"):
            data = _permute(data, n_kv)
        if data.ndim == 1 or quant == "f32":
            writer.add_tensor(mapped, data.astype(np.float32))
        elif quant == "f16":
            writer.add_tensor(mapped, data.astype(np.float16))
        else:
            if data.shape[-1] % 32:  # the block types work in blocks of 32 along a row
                writer.add_tensor(mapped, data.astype(np.float16))
                continue
            kind = getattr(gguf.GGMLQuantizationType, quant.upper())
            writer.add_tensor(mapped, gguf.quants.quantize(data, kind), raw_dtype=kind)

    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        writer.close()
    metadata = read_metadata(resolved.adapter) if resolved.adapter else {}
    sidecar = out.with_suffix(out.suffix + ".enhancer.json")  # what inference needs beyond the weights
    sidecar.write_text(
        json.dumps(
            {
                "base_model": model,
                "adapter": str(resolved.adapter) if resolved.adapter else None,
                "prompt_format": metadata.get("prompt_format", "chat"),
                "quant": quant,
                # what the llamacpp engine renders prompts with, without reading the whole GGUF
                "chat_template": tokenizer.chat_template,
                "bos_token": tokenizer.bos_token,
                "eos_token": tokenizer.eos_token,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    os.replace(partial, out)  # last: the GGUF at its name means its sidecar is there too
    log(f"export: wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {quant})")
    return out


PROMPT_SLOT, SYSTEM_SLOT = "\x00PROMPT\x00", "\x00SYSTEM\x00"


def ollama_modelfile(tokenizer, target: str = "generic", prompt_format: str = "chat", gguf_name: str = "model.gguf"):
    """A Modelfile whose TEMPLATE renders exactly the prompt enhancer's own engine sends for `target`: the
    model's chat template around enhancer's instruction (SYSTEM) and the target's advice, with the user's idea
    where Ollama puts {{ .Prompt }}. Greedy by default, as `enhancer enhance` is for one rewrite."""
    from enhancer.enhance.enhancer import max_tokens_for
    from enhancer.prompts import build_messages, get_profile

    system, user = build_messages(PROMPT_SLOT, target, prompt_format)
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM_SLOT}, {"role": "user", "content": user["content"]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    template = rendered.replace(SYSTEM_SLOT, "{{ .System }}").replace(PROMPT_SLOT, "{{ .Prompt }}")
    stops = sorted({t for t in (tokenizer.eos_token, "<|im_end|>") if t and t in tokenizer.get_vocab()})
    lines = [
        f"# enhancer for Ollama: `ollama create enhancer-{target} -f Modelfile`, then",
        f'#   ollama run enhancer-{target} "a fox trotting across a snowy field at dawn"',
        f"# Target profile {target!r}, prompt format {prompt_format!r}; written by `enhancer export --ollama`.",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        f'SYSTEM """{system["content"]}"""',
        "PARAMETER temperature 0",
        "PARAMETER repeat_penalty 1.1",
        f"PARAMETER num_predict {max_tokens_for(get_profile(target))}",
        *[f'PARAMETER stop "{stop}"' for stop in stops],
    ]
    return "\n".join(lines) + "\n"


def export_ollama(
    directory: str | Path,
    model: str = "embedded",
    adapter: str | None = None,
    target: str = "generic",
    quant: str = "q8_0",
    pre: str | None = None,
    log=logs.info,
) -> Path:
    """DIR/model.gguf and DIR/Modelfile, ready for `ollama create`; the same template text serves llama.cpp's
    server (--chat-template-file) and LM Studio (a custom prompt template)."""
    from transformers import AutoTokenizer

    from enhancer.models import resolve_model
    from enhancer.prompts import get_profile

    get_profile(target)  # a wrong target fails before the export
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty; choose a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    gguf_path = export_gguf(directory / "model.gguf", model=model, adapter=adapter, quant=quant, pre=pre, log=log)
    resolved = resolve_model(model, adapter, log=lambda m: None)
    prompt_format = json.loads(gguf_path.with_suffix(".gguf.enhancer.json").read_text())["prompt_format"]
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    (directory / "Modelfile").write_text(ollama_modelfile(tokenizer, target, prompt_format), encoding="utf-8")
    log(f"export: wrote {directory / 'Modelfile'}; run `ollama create enhancer-{target} -f {directory / 'Modelfile'}`")
    return directory


EXPORT_VERSION = 1  # bump when the exporter writes different files for the same weights


def _file_digest(path: Path, memo: Path) -> str:
    """sha256 of a file, remembered in `memo` by path, size and modification time: hashing the shipped adapter
    costs 30 ms, a sizeable part of a one-rewrite command's overhead."""
    import hashlib

    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key not in known:
        with open(path, "rb") as handle:
            known[key] = hashlib.file_digest(handle, "sha256").hexdigest()
        memo.parent.mkdir(parents=True, exist_ok=True)
        staging = memo.with_name(f".{memo.name}-{os.getpid()}")
        staging.write_text(json.dumps(known), encoding="utf-8")
        os.replace(staging, memo)  # whole or not at all; two processes racing write the same values
    return known[key]


def cached_export(model: str = "embedded", adapter: str | None = None, quant: str = "q8_0", log=logs.info) -> Path:
    """The GGUF of `model` (+ `adapter`; for "embedded", its shipped adapter unless "none") in the model cache,
    exported on first use (about 10 s for the embedded model) and found again by a key over what went into it:
    the base model's name, the adapter's files, the quantisation and the exporter's version. Safe when several
    processes ask at once (one exports, the others wait and use it)."""
    import hashlib

    from enhancer.files import file_lock
    from enhancer.models import enhancer_home, resolve_model

    resolved = resolve_model(model, adapter, log=log)
    folder = enhancer_home() / "models" / "gguf"
    digest = hashlib.sha256(json.dumps([model, resolved.path, quant, EXPORT_VERSION]).encode("utf-8"))
    if resolved.adapter:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            digest.update(bytes.fromhex(_file_digest(Path(resolved.adapter) / name, folder / "digests.json")))
    target = folder / f"{resolved.label.replace('/', '_')}-{digest.hexdigest()[:16]}-{quant}.gguf"
    sidecar = target.with_suffix(".gguf.enhancer.json")
    if target.is_file() and sidecar.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(f"{target}.lock"):
        if target.is_file() and sidecar.is_file():
            return target  # another process exported it while this one waited
        staging = folder / f".{target.stem}-{os.getpid()}.gguf"
        staging.unlink(missing_ok=True)
        log(f"exporting {resolved.label} to llama.cpp's format once ({quant}, about 10 s): {target}")
        export_gguf(staging, model=model, adapter=adapter, quant=quant, log=log)
        os.replace(staging.with_suffix(".gguf.enhancer.json"), sidecar)
        os.replace(staging, target)  # last: a GGUF in place means its sidecar is too
    return target
