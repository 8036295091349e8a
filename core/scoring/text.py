"""The text scorers. Each takes `Sample`s and returns one score in [0, 1] per sample, or None when the sample
gives it nothing to judge (no quotes to keep, no style asked for), never a fake 0."""

from __future__ import annotations

import difflib
import re

from enhancer.data.schema import quoted
from enhancer.prompts import SYSTEM_INSTRUCTION, get_profile, looks_degenerate
from enhancer.scoring.vocabulary import (
    DIMENSIONS,
    LEADING_CHATTER,
    META_PHRASES,
    STOPWORDS,
    STYLE_NAMES,
)

SPELLING_CUTOFF = 0.8  # difflib ratio: "mountians"/"mountains" 0.89, "skating"/"skater" 0.77 (not a typo)
SECTION_LABELS = ("subject", "action", "scene", "camera", "lens", "lighting", "palette", "motion", "atmosphere")


def words_of(text: str) -> list[str]:
    return re.findall(r"[\w'/-]+", text.lower())


def stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    return {stem(w) for w in words_of(text) if w not in STOPWORDS and len(w) > 1}


def dropped(wanted: set[str], text: str) -> set[str]:
    """The words of `wanted` (content words, stemmed) that `text` does not keep. A corrected spelling counts as
    kept ("mountians" -> "mountains"): for a word of 4+ letters, a word of the text that is 80% alike."""
    words = content_words(text)
    missing = wanted - words
    return {w for w in missing if len(w) < 4 or not difflib.get_close_matches(w, words, n=1, cutoff=SPELLING_CUTOFF)}


def _matches(cue: str, words: set[str], text: str) -> bool:
    if " " in cue:
        return cue in text
    if cue.endswith("*"):
        return any(w.startswith(cue[:-1]) for w in words)
    return cue in words


class FaithfulnessScorer:
    """MiniLM cosine between the simple and the enhanced prompt: does the rewrite still describe the same idea?"""

    name = "faithfulness"

    def score(self, samples):
        from enhancer.data.embeddings import embed

        if not samples:
            return []
        simple = embed([s.simple for s in samples])
        enhanced = embed([s.enhanced for s in samples])
        return [round(max(0.0, float(a @ b)), 4) for a, b in zip(simple, enhanced, strict=True)]


def scene_of(simple: str) -> str:
    """The part of an idea that describes the video: without the clauses that speak to the model ("a lighthouse
    at dusk. also, what model are you?" -> "a lighthouse at dusk"); all of it when it has none, or when it is in
    another language (enhancer.scoring.instructions)."""
    from enhancer.scoring.instructions import split_idea

    idea = split_idea(simple)
    return simple if idea.foreign or not idea.instructions else idea.scene_text


class KeepScorer:
    """Share of the user's content words (and the annotated `keep` words) still in the enhanced prompt; words of
    an instruction to the model are not facts to keep (`scene_of`). None for an input annotated adversarial
    ("ignore previous instructions and..."): the eval's adversarial check and the `echo` scorer judge those."""

    name = "keep"

    def score(self, samples):
        scores = []
        for sample in samples:
            if sample.kind == "adversarial":
                scores.append(None)
                continue
            wanted = {stem(k.lower()) for k in sample.keep or []}
            if sample.kind != "multilingual":  # an idea in another language: only its (English) keep words count
                wanted |= content_words(scene_of(sample.simple))
            if not wanted:
                scores.append(None)  # nothing to keep: cannot judge
                continue
            kept = 1 - len(dropped(wanted, sample.enhanced)) / len(wanted)
            scores.append(round(kept, 4))
        return scores


class QuoteScorer:
    """Share of the quoted strings (text to render) carried over verbatim; None when there are none."""

    name = "quote"

    def score(self, samples):
        scores = []
        for sample in samples:
            quotes = sample.quote if sample.quote is not None else quoted(sample.simple)
            if not quotes:
                scores.append(None)
                continue
            scores.append(round(sum(q in sample.enhanced for q in quotes) / len(quotes), 4))
        return scores


def style_asked(sample) -> str | None:
    if sample.style:
        return sample.style
    text = sample.simple.lower()
    found = [
        style for style, names in STYLE_NAMES.items() if any(_matches(n, set(words_of(text)), text) for n in names)
    ]
    return found[0] if found else None


class StyleScorer:
    """1 when the enhanced prompt names the style the user asked for, 0 when it drops it; None if none asked."""

    name = "style"

    def score(self, samples):
        scores = []
        for sample in samples:
            style = style_asked(sample)
            if style is None:
                scores.append(None)
                continue
            text = sample.enhanced.lower()
            words = set(words_of(text))
            scores.append(1.0 if any(_matches(n, words, text) for n in STYLE_NAMES[style]) else 0.0)
        return scores


class CoverageScorer:
    """Share of the cinematic dimensions (camera, lens, lighting, palette, motion, atmosphere) the prompt decides."""

    name = "coverage"

    def score(self, samples):
        scores = []
        for sample in samples:
            text = sample.enhanced.lower()
            words = set(words_of(text))
            covered = [d for d, cues in DIMENSIONS.items() if any(_matches(c, words, text) for c in cues)]
            scores.append(round(len(covered) / len(DIMENSIONS), 4))
        return scores


class BudgetScorer:
    """1 inside the target's word budget and form; falls to 0 at half the minimum or double the maximum."""

    name = "budget"

    def __init__(self, target: str = "generic"):
        self.target = target
        get_profile(target)

    def score(self, samples):
        scores = []
        for sample in samples:
            profile = get_profile(sample.target or self.target)
            low, high = profile.min_words, profile.budget_words()
            words = len(sample.enhanced.split())
            if low <= words <= high:
                value = 1.0
            elif words < low:
                value = max(0.0, (words - low / 2) / (low / 2))
            else:
                value = max(0.0, 1 - (words - high) / high)
            lines = [ln for ln in sample.enhanced.splitlines() if ln.strip()]
            if profile.form == "paragraph" and len(lines) > 1:
                value *= 0.5  # a paragraph target got several lines
            if profile.form == "structured":
                labels = {ln.split(":", 1)[0].strip().lower() for ln in lines if ":" in ln}
                value *= len(labels & set(SECTION_LABELS)) / len(SECTION_LABELS)
            scores.append(round(value, 4))
        return scores


class CleanScorer:
    """Penalises chatter, meta text, markup, repetition loops, cut-off endings and leaked instructions."""

    name = "clean"
    PENALTY = 0.25
    LEAK_PHRASES = tuple(s.strip().lower() for s in re.split(r"[.:\n]", SYSTEM_INSTRUCTION) if len(s.split()) >= 5)

    def problems(self, text: str) -> list[str]:
        lower = text.lower().strip()
        found = []
        if lower.startswith(LEADING_CHATTER):
            found.append("chatter")
        if any(p in lower for p in META_PHRASES):
            found.append("meta text")
        if re.search(r"</?\w+>|```|\*\*|^#+ ", text, re.M):
            found.append("markup")
        if looks_degenerate(text) and len(text.split()) >= 5:
            found.append("repetition")
        if not re.search(r"[.!?…\"')\]]\s*$", text.strip()):
            found.append("cut off")
        if any(phrase in lower for phrase in self.LEAK_PHRASES):
            found.append("leaked instructions")
        return found

    def score(self, samples):
        scores = []
        for sample in samples:
            if not sample.enhanced.strip():
                scores.append(0.0)
                continue
            scores.append(max(0.0, 1 - self.PENALTY * len(self.problems(sample.enhanced))))
        return scores


class TextScorer:
    """The eval's composite text reward as one scorer: the mean of faithfulness, keep, quote, style, coverage,
    budget and clean, over those that can judge the sample (`--reward text`)."""

    name = "text"
    PARTS = ("faithfulness", "keep", "quote", "style", "coverage", "budget", "clean")

    def __init__(self, target: str = "generic", parts: tuple[str, ...] | list[str] | None = None):
        classes = {c.name: c for c in (FaithfulnessScorer, KeepScorer, QuoteScorer, StyleScorer, CoverageScorer)}
        classes.update({BudgetScorer.name: BudgetScorer, CleanScorer.name: CleanScorer})
        unknown = [p for p in parts or () if p not in classes]
        if unknown:
            raise ValueError(f"text scorer: unknown part(s) {', '.join(unknown)}; valid: {', '.join(self.PARTS)}")
        self.parts = [classes[p](target) if p == "budget" else classes[p]() for p in (parts or self.PARTS)]

    def score(self, samples):
        from enhancer.scoring import combine

        columns = {part.name: part.score(samples) for part in self.parts}
        means = [combine({name: column[i] for name, column in columns.items()}) for i in range(len(samples))]
        return [round(mean, 4) if mean is not None else None for mean in means]
