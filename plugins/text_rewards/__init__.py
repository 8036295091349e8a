"""Reward scorers on text alone (no video needed), cheap enough for every RL step:

- "keep": the share of the user's content words that the enhanced prompt still contains (plurals and case
  folded); quoted text must appear verbatim or the score is halved.
- "length": 1.0 inside the target's word budget, falling linearly to 0 at half or double it.
"""

from __future__ import annotations

import re

from enhancer import hookimpl
from enhancer.prompts import get_profile

# Function words carry no fact a rewrite must keep.
STOPWORDS = frozenset(
    "a an the of in on at to for with and or but by from into onto over under is are was were be been being it its "
    "this that these those as very some any there their his her our your my me we you they he she them us "
    "please make create show video clip scene shot".split()
)


def content_words(text: str) -> set[str]:
    words = re.findall(r"[\w'-]+", text.lower())
    return {_stem(w) for w in words if w not in STOPWORDS and len(w) > 1}


def quoted(text: str) -> list[str]:
    return [a or b for a, b in re.findall(r'"([^"]+)"|“([^”]+)”', text)]


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


class KeepScorer:
    """Share of the user's content words kept in the enhanced prompt (quoted text verbatim)."""

    name = "keep"

    def score(self, samples):
        scores = []
        for sample in samples:
            wanted = content_words(sample.simple_prompt)
            if not wanted:
                scores.append(None)  # nothing to keep: cannot judge
                continue
            kept = len(wanted & content_words(sample.enhanced_prompt)) / len(wanted)
            if any(q not in sample.enhanced_prompt for q in quoted(sample.simple_prompt)):
                kept *= 0.5
            scores.append(round(kept, 4))
        return scores


class LengthScorer:
    """1 inside the target's word budget, falling to 0 at half its minimum or double its maximum."""

    name = "length"

    def __init__(self, target: str = "generic"):
        self.profile = get_profile(target)

    def score(self, samples):
        low, high = self.profile.min_words, self.profile.budget_words()
        scores = []
        for sample in samples:
            words = len(sample.enhanced_prompt.split())
            if low <= words <= high:
                scores.append(1.0)
            elif words < low:
                scores.append(round(max(0.0, (words - low / 2) / (low / 2)), 4))
            else:
                scores.append(round(max(0.0, 1 - (words - high) / high), 4))
        return scores


@hookimpl
def enhancer_reward_scorers():
    return {"keep": KeepScorer, "length": LengthScorer}
