"""A drop-in for Wan2.x's prompt extender: code written for its `PromptExpander` call shape can use enhancer.

    from enhancer.integrations.wan import PromptExpander
    expander = PromptExpander()                       # the embedded model; or model_name=..., base_url=...
    out = expander("a cat surfing a wave", tar_lang="en", seed=42)
    out.status, out.prompt, out.seed, out.system_prompt, out.message

Wan's extenders return an object with `status` (bool), `prompt` (the extended prompt, or the original one when
extending failed), `seed`, `system_prompt` and `message`; this one does too. `message` carries enhancer's whole
result as JSON (status, reason, model, timings, notes).

The constructor takes what Wan's own extenders take, so Wan's generate.py can build it unchanged:
`PromptExpander(model_name=None, task="t2v-A14B", is_vl=args.image is not None, device=rank)`. `model_name=None`
is enhancer's embedded model; Wan's short names ("Qwen2.5_7B"...) are the Hugging Face models they stand for.
`task`, `is_vl`, an integer `device` (Wan's GPU index) and DashScope's `max_image_size` / `retry_times` are recorded
in `wan_options` and change nothing (a string `device`, e.g. "cuda", goes to `Enhancer.load`).

`tar_lang` becomes enhancer's `lang` when the enhancer can write it (a `translator=` passed on to `Enhancer.load`,
or a multilingual model); the embedded model writes English, so there it is noted in `message`. An `image` is read only when `is_vl`
is True (as in Wan, whose text-only extenders ignore it), the installed enhancer's `Enhancer.enhance` takes
`image=` and it has a vision model to describe it (`PromptExpander(..., vlm=URL_OR_FOLDER)`, passed to
`Enhancer.load`); otherwise it is noted and the prompt is enhanced from the text.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from enhancer.contracts import takes_keyword
from enhancer.models import EMBEDDED
from enhancer.prompts import build_messages

# Wan's QwenPromptExpander.model_dict: its short names for text models (the VL ones describe images, not enhancer's)
WAN_MODEL_NAMES = {
    "Qwen2.5_3B": "Qwen/Qwen2.5-3B-Instruct",
    "Qwen2.5_7B": "Qwen/Qwen2.5-7B-Instruct",
    "Qwen2.5_14B": "Qwen/Qwen2.5-14B-Instruct",
}
WAN_ONLY_OPTIONS = ("max_image_size", "retry_times", "is_edit", "is_translation", "is_t2i", "is_t2v", "is_i2v")


@dataclass
class PromptOutput:
    status: bool
    prompt: str
    seed: int
    system_prompt: str
    message: str


def resolve_model_name(model_name: str | None) -> str:
    """Wan's `model_name` as enhancer loads it: None is the embedded model, a Wan short name its Hugging Face id."""
    if model_name is None:
        return EMBEDDED
    if model_name.startswith("QwenVL"):
        raise ValueError(
            f"model_name={model_name!r} is one of Wan's vision-language extenders; enhancer rewrites text with a text "
            "model: leave model_name=None (enhancer's embedded model) or name a text model, e.g. 'Qwen2.5_7B'"
        )
    return WAN_MODEL_NAMES.get(model_name, model_name)


class PromptExpander:
    def __init__(
        self,
        model_name: str | None = None,
        adapter: str | None = None,
        engine: str = "auto",
        base_url: str | None = None,
        target: str = "wan",
        enhancer=None,
        *,
        is_vl: bool = False,
        task: str | None = None,
        device: int | str = 0,
        **load_options,
    ):
        self.target = target
        self.is_vl = bool(is_vl)
        wan_only = {name: load_options.pop(name) for name in WAN_ONLY_OPTIONS if name in load_options}
        self.wan_options = {"is_vl": self.is_vl, "task": task, "device": device, **wan_only}
        if isinstance(device, str):  # "cuda", "cpu": a device enhancer understands; Wan's own is a GPU index
            load_options["device"] = device
        if enhancer is None:
            from enhancer.enhance import Enhancer

            enhancer = Enhancer.load(
                model=resolve_model_name(model_name), adapter=adapter, engine=engine, base_url=base_url, **load_options
            )
        self.enhancer = enhancer
        self.reads_images = takes_keyword(enhancer.enhance, "image")

    def __call__(self, prompt, system_prompt=None, tar_lang="en", image=None, seed=-1, *args, **kwargs):
        seed = random.randrange(2**31) if seed is None or seed < 0 else int(seed)
        notes, options = [], {}
        if system_prompt:
            notes.append("system_prompt ignored: enhancer uses the instruction its model was trained with")
        if tar_lang and tar_lang != "en":
            if getattr(self.enhancer, "translator", None) is not None or getattr(self.enhancer, "multilingual", False):
                options["lang"] = tar_lang  # Wan's codes ("zh", "en") are ISO 639-1, as enhancer's
            else:
                notes.append(
                    f"tar_lang={tar_lang!r}: this model writes English; pass translator=URL_OR_FOLDER to "
                    "PromptExpander (or a multilingual model) for other languages"
                )
        if image is not None:
            if not self.is_vl:
                notes.append("image ignored: is_vl=False (as Wan's text-only extenders do)")
            elif not self.reads_images:
                notes.append("image ignored: this enhancer's Enhancer.enhance takes no image; upgrade enhancer")
            elif getattr(self.enhancer, "vlm", "") is None:
                notes.append("image ignored: no vision model to describe it; pass vlm=URL_OR_FOLDER to PromptExpander")
            else:
                options["image"] = image
        try:
            row = self.enhancer.enhance(prompt, target=self.target, seed=seed, **options)
        except ValueError as error:  # an empty or oversized prompt: Wan's callers expect status False, not a raise
            return PromptOutput(False, prompt, seed, system_prompt or "", json.dumps({"error": str(error)}))
        used = build_messages(row.prompt, self.target, getattr(self.enhancer, "prompt_format", "chat"))[0]["content"]
        result = {**row.to_dict(), "notes": notes, "wan_options": self.wan_options}
        return PromptOutput(
            row.status == "ok", row.enhanced, seed, used, json.dumps(result, ensure_ascii=False, default=str)
        )
