"""Tiny random models for tests and benchmarks: the real tokenizer and chat template of the embedded model on a
randomly initialised network of a few million parameters, built from a config (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path


def tiny_causal_lm(
    path: str | Path,
    *,
    arch: str = "llama",
    hidden: int = 32,
    heads: int = 2,
    kv_heads: int = 1,
    layers: int = 2,
    seed: int = 0,
    logit_scale: float = 1.0,
) -> Path:
    """Save a random `arch` ("llama" or "qwen2") model with the embedded model's tokenizer to `path`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from enhancer.models import embedded_base_dir

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    if arch not in classes:
        raise ValueError(f"arch must be one of {', '.join(classes)}, got {arch!r}")
    Config, Model = classes[arch]
    tokenizer = AutoTokenizer.from_pretrained(embedded_base_dir())
    config = Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Model(config)
    if logit_scale != 1.0:  # sharper logits, so greedy choices are not near-ties
        with torch.no_grad():
            model.lm_head.weight.mul_(logit_scale)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
