"""Variants for `enhancer eval --variant NAME=SPEC`. SPEC is a shortcut or comma-separated key=value options:

raw                                   the simple prompt as it is (what users get without enhancer)
embedded                              the embedded model with its shipped adapter
embedded-base                         the embedded base model alone, with enhancer's instruction
baseline-system-prompt                the embedded base model driven only by a generic system prompt, the way
                                      Wan's and LTX-Video's prompt extenders work
model=DIR,adapter=DIR                 any local model (+ PEFT adapter)
model=NAME,engine=openai,base_url=URL any OpenAI-compatible endpoint
...,prompt=baseline|chat|compact|original  which prompt format (default: the adapter's own, else chat)
...,dtype=bfloat16                    the weights' dtype (default: float32 on CPU, bfloat16 on GPU)
...,candidates=4                      sample 4 rewrites per prompt, keep the one that keeps the facts best
...,temperature=0.5                   the sampling temperature (default 0.7; 0 decodes greedily)
...,guard=off                         show the model every word of an idea that also speaks to it (default on:
                                      only its scene; enhancer.enhance.asks.guard)
...,recheck=0                         with the guard, never sample again a rewrite that echoes what the idea said
                                      to the model (default 4 samples; Enhancer.load's recheck)
...,translator=URL_OR_FOLDER           translate ideas in other languages first (an OpenAI-compatible URL or a local
                                      translation or chat model folder; Enhancer.load's translator)

--variant raw --variant base=embedded-base --variant sft=model=embedded,adapter=runs/x/stage1/adapter
"""

from __future__ import annotations

from dataclasses import dataclass

SHORTCUTS = {
    "raw": {"kind": "raw"},
    "embedded": {"model": "embedded"},
    "embedded-base": {"model": "embedded", "adapter": "none", "prompt": "chat"},
    "baseline-system-prompt": {"model": "embedded", "adapter": "none", "prompt": "baseline"},
}
KEYS = (
    "model",
    "adapter",
    "engine",
    "base_url",
    "prompt",
    "kind",
    "dtype",
    "candidates",
    "temperature",
    "guard",
    "recheck",
    "translator",
)
SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


@dataclass
class Variant:
    name: str
    kind: str = "enhancer"  # "raw" or "enhancer"
    model: str = "embedded"
    adapter: str | None = None
    engine: str = "transformers"
    base_url: str | None = None
    prompt: str | None = None  # None: the format the adapter was trained with, else "chat"
    dtype: str | None = None  # "bfloat16" is ~1.5x faster than float32 on CPUs with AVX512-BF16
    candidates: int = 1  # sample N rewrites and keep the one that keeps the user's facts best
    temperature: float | None = None  # None: the Enhancer's default
    guard: bool | None = None  # off: the model sees every word of the idea (None: the Enhancer's default, on)
    recheck: int | None = None  # samples drawn again for an echoing rewrite (None: the Enhancer's default)
    translator: str | None = None  # translates ideas in other languages before the model sees them

    def __post_init__(self):
        if isinstance(self.guard, str):
            if self.guard.lower() not in SWITCH:
                raise ValueError(f"variant {self.name}: guard must be on or off, got {self.guard!r}")
            self.guard = SWITCH[self.guard.lower()]
        self.candidates = self._number("candidates", int, "a whole number")
        if self.candidates < 1:
            raise ValueError(f"variant {self.name}: candidates must be at least 1")
        if self.recheck is not None:
            self.recheck = self._number("recheck", int, "a whole number")
            from enhancer.enhance.enhancer import RECHECK_MAX

            if not 0 <= self.recheck <= RECHECK_MAX:
                raise ValueError(
                    f"variant {self.name}: recheck must be 0 (never) to {RECHECK_MAX}, got {self.recheck}"
                )
        if self.temperature is not None:
            self.temperature = self._number("temperature", float, "a number")
            if self.temperature < 0:
                raise ValueError(f"variant {self.name}: temperature must be >= 0, got {self.temperature}")

    def _number(self, key: str, kind: type, what: str):
        value = getattr(self, key)
        try:
            return kind(value)
        except ValueError as error:
            raise ValueError(f"variant {self.name}: {key} must be {what}, got {value!r}") from error

    def describe(self) -> str:
        if self.kind == "raw":
            return "the simple prompt, unchanged"
        parts = [f"model={self.model}"]
        parts += [
            f"{k}={getattr(self, k)}"
            for k in (
                "adapter",
                "engine",
                "base_url",
                "prompt",
                "dtype",
                "candidates",
                "temperature",
                "recheck",
                "translator",
            )
            if getattr(self, k) not in (None, Variant.__dataclass_fields__[k].default)
        ]
        if self.guard is not None:
            parts.append(f"guard={'on' if self.guard else 'off'}")
        return ", ".join(parts)


def parse_variant(text: str) -> Variant:
    """ "NAME=SPEC", or a bare shortcut ("raw") that names itself."""
    name, _, spec = text.partition("=")
    if not spec:
        name, spec = text, text
    name = name.strip()
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"--variant {text!r}: the name must be letters, digits, '-', '_' or '.'")
    if spec in SHORTCUTS:
        return Variant(name, **{("prompt" if k == "prompt" else k): v for k, v in SHORTCUTS[spec].items()})
    options: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in KEYS or not value:
            raise ValueError(
                f"--variant {text!r}: {part!r} is not a shortcut ({', '.join(SHORTCUTS)}) nor key=value with a key "
                f"of {', '.join(KEYS)}"
            )
        options[key] = value
    if options.get("model", "embedded") in SHORTCUTS and "adapter" not in options:
        options.update({k: v for k, v in SHORTCUTS[options.pop("model")].items() if k not in options})
    return Variant(name, **options)
