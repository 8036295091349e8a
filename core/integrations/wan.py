"""A drop-in for Wan2.x's prompt extender: code written for its `PromptExpander` call shape can use enhancer.

    from enhancer.integrations.wan import PromptExpander
    expander = PromptExpander()                       # the embedded model; or model_name=..., base_url=...
    out = expander("a cat surfing a wave", tar_lang="en", seed=42)
    out.status, out.prompt, out.seed, out.system_prompt, out.message

Wan's extenders return an object with `status` (bool), `prompt` (the extended prompt, or the original one when
extending failed), `seed`, `system_prompt` and `message`; this one does too. `message` carries enhancer's whole
result as JSON (status, reason, model, timings). enhancer writes English and reads no images: a `tar_lang`
other than "en" or an `image` is noted in `message`, and the prompt is still enhanced from the text.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from enhancer.prompts import build_messages


@dataclass
class PromptOutput:
    status: bool
    prompt: str
    seed: int
    system_prompt: str
    message: str


class PromptExpander:
    def __init__(
        self,
        model_name: str = "embedded",
        adapter: str | None = None,
        engine: str = "auto",
        base_url: str | None = None,
        target: str = "wan",
        enhancer=None,
        **load_options,
    ):
        from enhancer.enhance import Enhancer

        self.target = target
        self.enhancer = enhancer or Enhancer.load(
            model=model_name, adapter=adapter, engine=engine, base_url=base_url, **load_options
        )

    def __call__(self, prompt, system_prompt=None, tar_lang="en", image=None, seed=-1, *args, **kwargs):
        seed = random.randrange(2**31) if seed is None or seed < 0 else int(seed)
        notes = []
        if system_prompt:
            notes.append("system_prompt ignored: enhancer uses the instruction its model was trained with")
        if tar_lang and tar_lang != "en":
            notes.append(f"tar_lang={tar_lang!r}: enhancer writes English prompts")
        if image is not None:
            notes.append("image ignored: enhancer extends the text prompt only")
        try:
            row = self.enhancer.enhance(prompt, target=self.target, seed=seed)
        except ValueError as error:  # an empty or oversized prompt: Wan's callers expect status False, not a raise
            return PromptOutput(False, prompt, seed, system_prompt or "", json.dumps({"error": str(error)}))
        used = build_messages(row.prompt, self.target, getattr(self.enhancer, "prompt_format", "chat"))[0]["content"]
        result = {**row.to_dict(), "notes": notes}
        return PromptOutput(row.status == "ok", row.enhanced, seed, used, json.dumps(result, ensure_ascii=False))
