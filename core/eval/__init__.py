"""Evaluation: run variants (raw prompt, models, adapters, endpoints, a system-prompt baseline) over annotated
prompts, score every output with the registered scorers, and summarise with bootstrap confidence intervals and
paired win rates (`enhancer eval`); render it as an HTML report (`enhancer report`)."""

from enhancer.eval.runner import evaluate
from enhancer.eval.variants import Variant, parse_variant

__all__ = ["Variant", "evaluate", "parse_variant"]
