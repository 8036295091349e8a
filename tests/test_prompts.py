"""Output cleanup on hand-written model replies, target profiles and prompt validation."""

from __future__ import annotations

import pytest

from enhancer.prompts import (
    MAX_PROMPT_CHARS,
    PROFILES,
    build_messages,
    check_prompt,
    clean_negative,
    clean_output,
    get_profile,
    looks_degenerate,
)

GENERIC = get_profile("generic")
SORA = get_profile("sora")


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        (
            "Sure! Here's an enhanced prompt:\nA red fox trots across fresh snow at dawn.",
            "A red fox trots across fresh snow at dawn.",
            "leading chatter",
        ),
        (
            "Enhanced prompt: A red fox trots across fresh snow at dawn.",
            "A red fox trots across fresh snow at dawn.",
            "label",
        ),
        (
            "**Prompt:** A red fox trots across fresh snow at dawn.",
            "A red fox trots across fresh snow at dawn.",
            "label",
        ),
        (
            '"A red fox trots across fresh snow at dawn."',
            "A red fox trots across fresh snow at dawn.",
            "wrapping quotes",
        ),
        (
            "A red fox trots across fresh snow at dawn.\n\nLet me know if you want another version!",
            "A red fox trots across fresh snow at dawn.",
            "trailing chatter",
        ),
        (
            "A red fox trots across fresh snow at dawn. Pale pink light spills over the ridge and the",
            "A red fox trots across fresh snow at dawn.",
            "half sentence cut",
        ),
        (
            "A red fox trots across fresh snow.<|im_end|>garbage after the end token",
            "A red fox trots across fresh snow.",
            "special token",
        ),
    ],
)
def test_cleanup_removes_what_is_not_the_prompt(raw, expected, note):
    cleaned = clean_output(raw, GENERIC)
    assert cleaned.text == expected
    assert note in cleaned.notes


def test_cleanup_keeps_a_quote_that_is_part_of_the_prompt():
    raw = '"OPEN" glows in red neon above the door of a rainy diner at night.'
    assert clean_output(raw, GENERIC).text == raw


def test_cleanup_keeps_a_clean_prompt_untouched():
    raw = "A red fox trots across fresh snow at dawn, breath steaming, in a slow tracking shot."
    cleaned = clean_output(raw, GENERIC)
    assert cleaned.text == raw and cleaned.notes == []


def test_paragraph_targets_join_lines_and_structured_targets_keep_them():
    raw = "Subject: a fox\nAction: trotting\n\nCamera: low tracking shot."
    assert clean_output(raw, SORA).text == "Subject: a fox\nAction: trotting\nCamera: low tracking shot."
    assert "\n" not in clean_output(raw, GENERIC).text


def test_long_output_is_trimmed_to_the_budget_at_a_sentence_end():
    sentence = "The fox pauses and lifts its head toward the pale sky above the frozen field. "
    cleaned = clean_output(sentence * 12, GENERIC)
    words = cleaned.text.split()
    assert len(words) <= GENERIC.budget_words()
    assert cleaned.text.endswith(".")
    assert any(n.startswith("trimmed") for n in cleaned.notes)


def test_cogvideox_budget_is_its_t5_token_limit():
    profile = get_profile("cogvideox")
    assert profile.max_tokens == 226
    assert profile.budget_words() == int(226 / 1.35)


def test_every_target_has_a_form_and_budget():
    assert set(PROFILES) == {"generic", "sora", "veo", "wan", "ltx", "cogvideox", "hunyuan"}
    for profile in PROFILES.values():
        assert profile.form in ("paragraph", "structured")
        assert 0 < profile.min_words < profile.budget_words()


def test_messages_carry_the_idea_and_the_target_format():
    messages = build_messages("a cat on a skateboard", "sora")
    assert messages[0]["role"] == "system" and "Keep every fact" in messages[0]["content"]
    assert messages[1]["content"].endswith("Idea: a cat on a skateboard")
    assert "Subject:" in messages[1]["content"] and "Lighting:" in messages[1]["content"]


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown target 'sora2'; valid targets: generic, sora, veo"):
        get_profile("sora2")


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_prompt_is_rejected(bad):
    with pytest.raises(ValueError, match="empty prompt"):
        check_prompt(bad)


def test_too_long_prompt_is_rejected_with_the_limit():
    with pytest.raises(ValueError, match=f"the limit is {MAX_PROMPT_CHARS} characters"):
        check_prompt("snow " * 1000)


def test_degenerate_outputs_are_named():
    assert looks_degenerate("a fox") == "output too short (2 words)"
    assert "repeats itself" in looks_degenerate("the fox runs fast and " * 10)
    assert looks_degenerate("A red fox trots across fresh snow at dawn in a slow tracking shot.") is None


def test_negative_prompt_is_a_short_unique_list():
    raw = "Negative prompt: blurry, extra legs, Blurry, watermark; text overlay, a very long phrase that is not a term"
    assert clean_negative(raw) == "blurry, extra legs, watermark, text overlay"


def test_original_projects_completion_format():
    messages = build_messages("a fox in the snow", prompt_format="original")
    assert messages == [{"role": "completion", "content": "Input: a fox in the snow\nOutput:"}]
    cleaned = clean_output(" A red fox pounces into deep snow at dawn.\nInput: a cat\nOutput: A cat", GENERIC)
    assert cleaned.text == "A red fox pounces into deep snow at dawn." and "next example" in cleaned.notes
    with pytest.raises(ValueError, match="valid formats: chat, compact, original, baseline"):
        build_messages("a fox", prompt_format="alpaca")


def test_trailing_welcome_chatter_is_cut():
    raw = "A fox trots over fresh snow at dawn. You're welcome to share more details about your creative process."
    assert clean_output(raw, GENERIC).text == "A fox trots over fresh snow at dawn."


def test_chatter_words_inside_a_sentence_are_content():
    raw = "A rain-soaked city in this version of the future, where neon signs say I hope in pink letters."
    assert clean_output(raw, GENERIC).text == raw
