"""The `translated` scorer: a prompt typed in another language must come out as an English video prompt that
carries its facts over in English words, not one that copies the user's words.

    score = kept * (1 - copied)

- kept: share of the row's English `keep` words present in the enhanced prompt, matched as the `keep` scorer
  matches them (a plural ending folded; a corrected spelling of 4+ letters counts; "running" does not match "runs").
- copied: share of the input's own-language tokens that reappear in the enhanced prompt. A token is each Han or
  kana character (those scripts put no spaces between words), each word of another non-Latin script (Hangul,
  Arabic, Cyrillic, Devanagari, ...), and each Latin-script word of 3+ letters that is not an English function
  word, a keep word or a style name ("robot", "berlin" or "anime" may stand unchanged in a faithful translation).
  Quoted text (the row's `quote`, else the strings in double quotes) is cut out of both texts first: text to
  render on screen must be copied verbatim, in its own script.

None when the input is in English (kind is not "multilingual", and outside its quotes it has no letter beyond
the Latin script and none of the function words of French, Spanish, German, Italian or Portuguese), or the row has
no keep words: then there is nothing to judge. Run it on the annotated multilingual slice (the `raw` variant, the
input copied, scores 0):

    enhancer eval --prompts data/eval/multilingual.jsonl --variant raw --variant embedded \
        --scorers translated,quote,style,coverage,clean --out runs/eval-multilingual     # CPU
"""

from __future__ import annotations

import re

from enhancer.data.schema import quoted
from enhancer.data.validate import FOREIGN_MARKERS
from enhancer.scoring.text import dropped, stem
from enhancer.scoring.vocabulary import STOPWORDS, STYLE_NAMES

# More function words of other Latin-script languages than validate's FOREIGN_MARKERS (kept apart from it: that
# list decides whether English number words count); words an English prompt would rarely use.
MARKERS = FOREIGN_MARKERS | frozenset(
    "im mit auf dem einem einer unter einen una unos unas con por para dans avec sous sur nas nos dos pelo pela "
    "numa sotto nella".split()
)
# "style" too: French and English spell it alike ("style anime")
STYLE_WORDS = frozenset(word for names in STYLE_NAMES.values() for name in names for word in name.split()) | {"style"}
# Han (with extension A and compatibility ideographs), hiragana, katakana and half-width katakana: scripts that
# put no spaces between words, so each character is a token
SPACELESS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uff66-\uff9f"
TOKEN = re.compile(f"[{SPACELESS}]|[^\\W{SPACELESS}]+")


def _without(text: str, quotes: list[str]) -> str:
    for quote in quotes:
        text = text.replace(quote, " ")
    return text


def _tokens(text: str) -> set[str]:
    """Lowercased words, and each Han or kana character on its own."""
    return set(TOKEN.findall(text.lower()))


def _non_latin(word: str) -> bool:
    return any(ch.isalpha() and ord(ch) > 0x24F for ch in word)


def is_english(text: str) -> bool:
    """No letter beyond the Latin script and no other language's function word: taken for English."""
    words = re.findall(r"\w+", text.lower())
    return not any(_non_latin(w) for w in words) and not MARKERS.intersection(words)


def own_language_tokens(simple: str, keep: list[str], quotes: list[str]) -> set[str]:
    """The tokens of `simple` (outside its quotes) that a translation has no reason to copy."""
    keep_words = {stem(k.lower()) for k in keep} | {k.lower() for k in keep}
    return {
        token
        for token in _tokens(_without(simple, quotes))
        if _non_latin(token)
        or (
            len(token) >= 3
            and not token.isdigit()
            and token not in STOPWORDS
            and token not in STYLE_WORDS
            and token not in keep_words
            and stem(token) not in keep_words
        )
    }


def copied_share(simple: str, enhanced: str, keep: list[str], quotes: list[str]) -> float:
    """Share of the own-language tokens of `simple` that reappear in `enhanced` (quotes cut from both)."""
    source = own_language_tokens(simple, keep, quotes)
    if not source:
        return 0.0
    return len(source & _tokens(_without(enhanced, quotes))) / len(source)


class TranslationScorer:
    """Share of the English keep words present, times one minus the share of the input's own-language tokens
    copied into the output (quoted text to render excluded); None for English input or without keep words."""

    name = "translated"

    def score(self, samples):
        scores = []
        for sample in samples:
            quotes = sample.quote if sample.quote is not None else quoted(sample.simple)
            english = sample.kind != "multilingual" and is_english(_without(sample.simple, quotes))
            if english or not sample.keep:
                scores.append(None)
                continue
            wanted = {stem(k.lower()) for k in sample.keep}
            kept = 1 - len(dropped(wanted, sample.enhanced)) / len(wanted)
            copied = copied_share(sample.simple, sample.enhanced, sample.keep, quotes)
            scores.append(round(kept * (1 - copied), 4))
        return scores
