"""The Wan drop-in: the call shape of Wan2.x's prompt extender (its call and its constructors' arguments), on a tiny
random model, the OpenAI-protocol chat stand-in, and stand-in enhancers with and without `image=`."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from enhancer.contracts import Enhancement
from enhancer.enhance import Enhancer
from enhancer.integrations.wan import PromptExpander, PromptOutput, resolve_model_name

from chat_server import ChatServer


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
    # (the system prompt, the image; "zh" is passed on, since this model is not the English-only embedded one)
    out = expander("a cat surfing a wave", "be brief", "zh", object(), -1)
    assert 0 <= out.seed < 2**31
    assert len(json.loads(out.message)["notes"]) == 2


def test_a_bad_prompt_is_status_false_not_a_raise(expander):
    out = expander("   ", seed=1)
    assert out.status is False and out.prompt == "   " and "empty prompt" in json.loads(out.message)["error"]


class ReadsImages:
    """A stand-in enhancer whose `enhance` takes `image`, as newer enhancer versions' does."""

    prompt_format = "chat"

    def __init__(self):
        self.images = []

    def enhance(self, prompt, target="generic", seed=None, image=None):
        self.images.append(image)
        return Enhancement(prompt=prompt, enhanced=f"{prompt}, in the light of the picture.", target=target, seed=seed)


class TextOnly:
    """A stand-in for an enhancer version whose `enhance` reads no images."""

    def enhance(self, prompt, target="generic", seed=None):
        return Enhancement(prompt=prompt, enhanced=f"{prompt}, told in words.", target=target, seed=seed)


def test_wan_constructor_arguments_are_accepted_and_recorded():
    assert resolve_model_name(None) == "embedded" and resolve_model_name("Qwen2.5_7B") == "Qwen/Qwen2.5-7B-Instruct"
    assert resolve_model_name("my/model") == "my/model"
    with pytest.raises(ValueError, match="vision-language .* leave model_name=None"):
        resolve_model_name("QwenVL2.5_7B")
    with ChatServer() as chat:
        # Wan2.2's generate.py shape; model_name=None reaches Enhancer.load as the embedded model (here served by
        # the OpenAI-protocol stand-in, so nothing is loaded)
        expander = PromptExpander(
            model_name=None, is_vl=True, task="t2v-A14B", device=0, engine="openai", base_url=chat.base_url
        )
        assert expander.enhancer.model_label == f"openai:{chat.base_url}"
        assert expander.wan_options == {"is_vl": True, "task": "t2v-A14B", "device": 0}
        out = expander("a cat surfing a wave", tar_lang="en", seed=3)
        assert out.status is True and out.prompt.startswith("A cat surfing a wave, seen in a slow dolly shot")
        assert json.loads(out.message)["wan_options"]["task"] == "t2v-A14B"
        # DashScopePromptExpander's arguments too
        dashscope = PromptExpander(
            model_name=None, max_image_size=512 * 512, retry_times=4, engine="openai", base_url=chat.base_url
        )
        assert dashscope.wan_options["retry_times"] == 4 and dashscope.is_vl is False


def test_wan_images_reach_an_enhancer_that_reads_them_only_when_is_vl():
    picture = object()  # Wan passes a PIL image; enhancer's `image=` takes it as it is
    reader = ReadsImages()
    out = PromptExpander(enhancer=reader, is_vl=True)("a kite", image=picture, seed=1)
    assert reader.images == [picture] and out.prompt == "a kite, in the light of the picture."
    assert json.loads(out.message)["notes"] == []
    out = PromptExpander(enhancer=reader, is_vl=False)("a kite", image=picture, seed=1)
    assert reader.images[-1] is None and "is_vl=False" in json.loads(out.message)["notes"][0]
    out = PromptExpander(enhancer=TextOnly(), is_vl=True)("a kite", image=picture, seed=1)
    assert out.status and out.prompt == "a kite, told in words."
    assert "takes no image; upgrade enhancer" in json.loads(out.message)["notes"][0]


def test_wan_is_vl_without_a_vision_model_enhances_from_the_text(expander):
    # the tiny model's enhancer reads images but was loaded without vlm=: noted, not a failed extension
    vl = PromptExpander(enhancer=expander.enhancer, is_vl=True)
    out = vl("a cat surfing a wave", image=Image.new("RGB", (8, 8), "red"), seed=2)
    assert out.prompt and "no vision model to describe it" in json.loads(out.message)["notes"][0]


def test_wan_tar_lang_reaches_a_model_that_writes_it_and_is_noted_otherwise(expander):
    with ChatServer() as chat:  # an OpenAI-protocol model: multilingual, so tar_lang becomes lang
        out = PromptExpander(model_name=None, engine="openai", base_url=chat.base_url)("一只猫", tar_lang="zh", seed=1)
        assert out.status is True
        assert "Write the prompt in Chinese." in chat.requests[-1]["messages"][-1]["content"]
        assert "The idea is written in Chinese." in chat.requests[-1]["messages"][-1]["content"]
    english_only = Enhancer(expander.enhancer.engine, "tiny", None, 12, multilingual=False)
    out = PromptExpander(enhancer=english_only)("a cat surfing a wave", tar_lang="zh", seed=2)
    assert "this model writes English" in json.loads(out.message)["notes"][0]  # (a random model: any status)
