"""Pick the best of several sampled rewrites by how well each keeps the user's facts: the content words, the
quoted text and the named style, with clean output in the target's word budget. `Enhancer.load(candidates=N)`
samples N rewrites per prompt and returns them best first.

The checks are the core's text scorers (keep, quote, style, clean and budget: enhancer.scoring) and its guards
(echo: an instruction in the idea repeated or obeyed; invented: a count, colour or subject changed), applied to the
user's prompt alone: no annotation is needed. A guard that cannot judge a prompt (no instruction in it) is left out. Small models drop a fact in one sample and keep it in the next, so
choosing among a few samples buys faithfulness for the price of generating them (batched, so less than N times
the time).
"""

from __future__ import annotations

from enhancer.contracts import Sample
from enhancer.scoring import GUARD_SCORERS, TEXT_SCORERS, combine

CHECKS = ("keep", "quote", "style", "clean", "budget", "echo", "invented")


class FactRanker:
    def __init__(self):
        scorers = {**TEXT_SCORERS, **GUARD_SCORERS}
        self.scorers = [scorers[name]() for name in CHECKS]

    def scores(self, simple: str, candidates: list[str], target: str = "generic") -> list[float]:
        samples = [Sample(simple, text, target=target) for text in candidates]
        per_check = {scorer.name: scorer.score(samples) for scorer in self.scorers}
        totals = [combine({name: values[i] for name, values in per_check.items()}) for i in range(len(candidates))]
        return [total if total is not None else 0.0 for total in totals]

    def rank(self, simple: str, candidates: list[str], target: str = "generic") -> list[str]:
        """Best first; ties keep the sampling order."""
        scores = self.scores(simple, candidates, target)
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
        return [candidates[i] for i in order]
