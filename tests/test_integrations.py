"""The Wan drop-in: the call shape of Wan2.x's prompt extender, on a tiny random model."""

from __future__ import annotations

import json

import pytest

from enhancer.enhance import Enhancer
from enhancer.integrations.wan import PromptExpander, PromptOutput


@pytest.fixture(scope="module")
def expander(tiny_model_dir):
    return PromptExpander(enhancer=Enhancer.load(model=str(tiny_model_dir), max_new_tokens=12, log=lambda m: None))


def test_wan_call_shape(expander):
    out = expander("a cat surfing a wave", tar_lang="en", seed=42)
    assert isinstance(out, PromptOutput) and isinstance(out.status, bool)
    assert out.seed == 42 and out.prompt and out.system_prompt
    result = json.loads(out.message)
    assert result["prompt"] == "a cat surfing a wave" and result["target"] == "wan" and result["notes"] == []
    # positional arguments as Wan's callers pass them, a random seed for -1, and notes for what is not supported
    out = expander("a cat surfing a wave", "be brief", "zh", object(), -1)
    assert 0 <= out.seed < 2**31
    assert len(json.loads(out.message)["notes"]) == 3


def test_a_bad_prompt_is_status_false_not_a_raise(expander):
    out = expander("   ", seed=1)
    assert out.status is False and out.prompt == "   " and "empty prompt" in json.loads(out.message)["error"]
