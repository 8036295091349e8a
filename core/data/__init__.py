"""Training data: loaders for enhancer's JSONL pairs and RL prompts. Every bad row is reported as `file:line`;
none is dropped silently."""

from enhancer.data.loaders import DataError, Pair, load_pairs, load_prompts

__all__ = ["DataError", "Pair", "load_pairs", "load_prompts"]
