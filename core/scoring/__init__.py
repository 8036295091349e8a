"""Scoring that the core itself relies on: the text scorers (faithfulness, keep, quote, style, coverage, budget,
clean, and `text`, their mean), the scorers of what a rewrite must not do (`echo`: repeat or obey an instruction
in the idea; `invented`: change the scene; enhancer.scoring.instructions and .invented), and `combine`, the one
weighted mean of several scorers' scores.

The eval gates, best-of-N ranking and data validation use these classes directly, so a third-party scorer that
registers the same name cannot change them; the `text_rewards` plugin registers the same classes under their
names for recipes and `--reward`.
"""

from __future__ import annotations

from collections.abc import Mapping

from enhancer.scoring.instructions import EchoScorer
from enhancer.scoring.invented import InventedScorer
from enhancer.scoring.text import (
    BudgetScorer,
    CleanScorer,
    CoverageScorer,
    FaithfulnessScorer,
    KeepScorer,
    QuoteScorer,
    StyleScorer,
    TextScorer,
    content_words,
)

TEXT_SCORERS = {
    scorer.name: scorer
    for scorer in (
        FaithfulnessScorer,
        KeepScorer,
        QuoteScorer,
        StyleScorer,
        CoverageScorer,
        BudgetScorer,
        CleanScorer,
        TextScorer,
    )
}


# Judge only ideas with something to judge (an instruction; a scene in English), None on the rest: not parts of
# `text` or of the eval's default composite, so those stay comparable with earlier runs.
GUARD_SCORERS = {scorer.name: scorer for scorer in (EchoScorer, InventedScorer)}


def combine(scores: Mapping[str, float | None], weights: Mapping[str, float] | None = None) -> float | None:
    """The weighted mean of the scores that are known (None: the scorer could not judge; it is left out, never
    counted as 0); weight 1 unless given, and a weight of 0 leaves a scorer out. None when nothing is known."""
    weights = weights or {}
    known = {name: s for name, s in scores.items() if s is not None and weights.get(name, 1.0) > 0}
    if not known:
        return None
    total = sum(weights.get(name, 1.0) for name in known)
    return sum(weights.get(name, 1.0) * s for name, s in known.items()) / total


__all__ = [
    "GUARD_SCORERS",
    "TEXT_SCORERS",
    "combine",
    "EchoScorer",
    "InventedScorer",
    "content_words",
    *(s.__name__ for s in TEXT_SCORERS.values()),
]
