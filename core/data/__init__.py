"""enhancer's data: schema, loaders (our JSONL, Hugging Face datasets, the original project's JSON), validation,
statistics and synthesis. Every bad row is reported as `file:line`; none is dropped silently."""

from enhancer.data.loaders import (
    DataError,
    EvalPrompt,
    Pair,
    load_eval,
    load_hf_pairs,
    load_original_pairs,
    load_original_prompts,
    load_pairs,
    load_prompts,
)

__all__ = [
    "DataError",
    "EvalPrompt",
    "Pair",
    "load_eval",
    "load_hf_pairs",
    "load_original_pairs",
    "load_original_prompts",
    "load_pairs",
    "load_prompts",
]
