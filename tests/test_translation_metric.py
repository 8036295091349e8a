"""The `translated` scorer on hand-written good and bad rewrites of prompts typed in other languages, and the
multilingual slices it judges (data/stage1/multilingual.jsonl, data/eval/multilingual.jsonl)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from enhancer.contracts import Sample
from enhancer.data.schema import check_eval, check_stage1, quoted
from enhancer.data.validate import facts_dropped
from enhancer.registry import PluginRegistry
from enhancer.scoring import StyleScorer
from enhancer.scoring.translation import TranslationScorer, copied_share

from conftest import REPO

CAT = "一只橘猫在雨中的霓虹街道上奔跑"  # the issue's example
CAT_KEEP = ["cat", "orange", "rain", "neon", "street", "running"]
GOOD = (
    "An orange cat running down a neon street in the rain, its wet fur glowing pink and blue as it splashes "
    "through puddles. Low tracking shot on a 35mm lens, reflections streaking across the wet asphalt, moody "
    "cyberpunk night."
)
SLICES = {split: REPO / "data" / split / "multilingual.jsonl" for split in ("stage1", "eval")}


def _score(simple, enhanced, keep=CAT_KEEP, **annotations):
    return TranslationScorer().score([Sample(simple, enhanced, keep=keep, **annotations)])[0]


def _rows(split):
    return [json.loads(line) for line in SLICES[split].read_text(encoding="utf-8").splitlines()]


def test_a_faithful_translation_scores_high():
    assert _score(CAT, GOOD) == 1.0


def test_a_copy_of_the_chinese_input_scores_low():
    assert _score(CAT, CAT) == 0.0
    # copying the input and adding the translation does not pay either: every character of the input came back
    assert _score(CAT, f"{CAT}: {GOOD}") == 0.0


def test_a_partial_translation_scores_in_between():
    partial = "An orange cat running through 雨中的霓虹街道, cinematic night shot."
    # kept 3 of 6 keep words (cat, orange, running); copied 7 of the input's 15 distinct characters
    assert _score(CAT, partial) == round(3 / 6 * (1 - 7 / 15), 4)
    assert _score(CAT, CAT) < _score(CAT, partial) < _score(CAT, GOOD)


def test_quoted_text_to_render_is_not_a_copy():
    simple = '书店门口挂着写有"欢迎光临"的牌子'
    good = 'A hand-painted sign reading "欢迎光临" hangs at the entrance of a small bookstore, warm lamplight.'
    assert _score(simple, good, keep=["bookstore", "sign"], quote=["欢迎光临"]) == 1.0
    assert _score(simple, good, keep=["bookstore", "sign"]) == 1.0  # no annotation: the double quotes say so
    # 「」 are not double quotes: only the row's `quote` annotation tells the scorer the text is to render
    corner = "「本日休業」と書かれた紙が貼られた店のシャッター"
    rendered = 'A sheet of paper reading "本日休業" taped to a shop shutter on a quiet morning street.'
    keep = ["shop", "shutter", "paper"]
    assert _score(corner, rendered, keep=keep, quote=["本日休業"]) == 1.0
    assert _score(corner, rendered, keep=keep) < 1.0


def test_latin_script_languages_count_copied_words_but_not_shared_names():
    simple = "un gato negro durmiendo en una hamaca"
    keep = ["black", "cat", "sleeping", "hammock"]
    assert _score(simple, "A black cat sleeping in a hammock between two palms, golden light.", keep=keep) == 1.0
    # half translated: 2 of 4 keep words, 3 of its 5 own words (gato, negro, durmiendo, una, hamaca) copied
    assert _score(simple, "A black cat durmiendo en una hamaca.", keep=keep) == round(2 / 4 * (1 - 3 / 5), 4)
    # names a translation keeps as they are (keep words) are not copies
    barcelona = "fuegos artificiales sobre la Sagrada Familia en Barcelona"
    keep = ["fireworks", "sagrada", "familia", "barcelona"]
    assert _score(barcelona, "Fireworks bloom over the Sagrada Familia in Barcelona at night.", keep=keep) == 1.0


def test_english_rows_and_rows_without_keep_words_are_not_judged():
    english = Sample("an orange cat running in the rain", "An orange cat running in the rain.", keep=["cat"])
    english_quote = Sample('a banner reading "うまい!"', 'A banner reading "うまい!" over a stall.', keep=["banner"])
    no_keep = Sample(CAT, GOOD)
    assert TranslationScorer().score([english, english_quote, no_keep]) == [None, None, None]
    # German with none of the function words the scorer knows: judged once the row says it is multilingual
    german = Sample("Zwei Hunde spielen Schnee", "Two dogs playing in the snow.", keep=["two", "dogs", "snow"])
    assert TranslationScorer().score([german]) == [None]
    german.kind = "multilingual"
    assert TranslationScorer().score([german]) == [1.0]


def test_registered_as_a_reward_scorer():
    registry = PluginRegistry.load()
    assert "translated" in registry.names("scorer")
    assert registry.create("scorer", "translated").score([Sample(CAT, GOOD, keep=CAT_KEEP)]) == [1.0]


def test_schema_takes_lang_and_english_keep_words():
    row = {"id": "e", "simple": CAT, "keep": CAT_KEEP, "style": None, "quote": [], "kind": "multilingual"}
    assert check_eval({**row, "lang": "zh"}) == []
    assert "keep word 'cat' does not occur in simple" in check_eval(row)  # no lang: taken for English
    assert check_eval({**row, "lang": "chinese"}) == [
        "lang 'chinese' is not an ISO 639-1 code (two lowercase letters)"
    ]
    pair = {**_rows("stage1")[0]}
    assert check_stage1(pair) == [] and facts_dropped(pair) == []
    english = {k: v for k, v in pair.items() if k != "lang"}
    assert facts_dropped(english)[0].startswith("word(s) of simple missing in detailed")


def test_the_multilingual_slices_have_the_languages_the_issue_asks_for():
    stage1, evaluation = Counter(r["lang"] for r in _rows("stage1")), Counter(r["lang"] for r in _rows("eval"))
    assert sum(stage1.values()) >= 130 and sum(evaluation.values()) >= 60
    for lang in ("zh", "ja", "es", "de", "ar"):
        assert stage1[lang] >= 20 and evaluation[lang] >= 10, lang
    assert {"fr", "pt", "ko", "hi", "ru"} <= set(stage1) & set(evaluation)
    assert "en" not in stage1 and "en" not in evaluation
    example = next(r for r in _rows("eval") if r["simple"] == CAT)
    assert example["keep"] == CAT_KEEP


def test_training_pairs_translate_instead_of_copying():
    """Quoted text aside, no detailed prompt repeats the non-Latin text of its simple one, and a style the user
    named (in their own language) is named in English: the checks validate cannot make on translated pairs."""
    for row in _rows("stage1"):
        if any(ch.isalpha() and ord(ch) > 0x24F for ch in row["simple"]):
            assert copied_share(row["simple"], row["detailed"], [], quoted(row["simple"])) == 0.0, row["id"]
        if row["style"] not in ("realistic", "cinematic"):
            style = StyleScorer().score([Sample(row["simple"], row["detailed"], style=row["style"])])
            assert style == [1.0], row["id"]


@pytest.mark.parametrize("row", _rows("eval"), ids=lambda row: row["id"])
def test_eval_rows_are_judged_and_the_copied_input_scores_zero(row):
    assert row["kind"] == "multilingual" and row["id"].startswith("evalml-")
    assert all(k == k.lower() and " " not in k for k in row["keep"])
    sample = Sample(row["simple"], row["simple"], keep=row["keep"], quote=row["quote"], kind=row["kind"])
    assert TranslationScorer().score([sample]) == [0.0]
