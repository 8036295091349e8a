"""Evaluation: run variants (raw prompt, models, adapters, endpoints, a system-prompt baseline) over annotated
prompts, score every output with the registered scorers, and summarise with bootstrap confidence intervals and
paired win rates (`enhancer eval`); render it as an HTML report (`enhancer report`)."""

from enhancer.eval.variants import Variant, parse_variant

__all__ = ["Variant", "evaluate", "parse_variant"]


def __getattr__(name: str):
    if name == "evaluate":  # the runner imports numpy and the scorers: only when an eval runs
        from enhancer.eval.runner import evaluate

        return evaluate
    raise AttributeError(f"module 'enhancer.eval' has no attribute {name!r}")
