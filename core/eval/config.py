"""The typed configuration of `enhancer eval`, from a YAML recipe (recipes/eval/) and the command line alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from enhancer.eval.variants import parse_variant
from enhancer.prompts import PROFILES

DEFAULT_SCORERS = ("faithfulness", "keep", "quote", "style", "coverage", "budget", "clean")


@dataclass
class EvalConfig:
    prompts: list[str] = field(
        default_factory=lambda: ["data/eval/prompts.jsonl"],  # the yardstick; multilingual.jsonl is its own slice
        metadata={"help": "Annotated eval prompts: JSONL files or folders (repeatable)."},
    )
    variants: list[str] = field(
        default_factory=list,
        metadata={
            "help": "NAME=SPEC: raw, embedded, embedded-base, baseline-system-prompt, or model=..,adapter=..,engine=..,base_url=..,prompt=.. (repeatable)."
        },
    )
    scorers: list[str] = field(
        default_factory=lambda: list(DEFAULT_SCORERS),
        metadata={"help": "Scorer names, comma-separated on the command line (default: every text scorer)."},
    )
    weights: dict[str, float] = field(default_factory=dict, metadata={"help": "Composite weight per scorer."})
    target: str = field(
        default="generic", metadata={"help": "Target profile every variant writes for.", "choices": tuple(PROFILES)}
    )
    limit: int | None = field(default=None, metadata={"help": "Only the first N prompts."})
    seed: int = field(default=0, metadata={"help": "Sampling and bootstrap seed."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generate call."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Default: fits the target's budget."})
    dtype: str | None = field(
        default=None,
        metadata={
            "choices": ("float32", "bfloat16", "float16"),
            "help": "Model weights' dtype; bfloat16 is faster on AVX512-BF16 CPUs.",
        },
    )
    plugins: list[str] = field(
        default_factory=list, metadata={"help": "Extra plugin modules, for scorers (repeatable)."}
    )
    out: str = field(default="runs/eval", metadata={"help": "Output folder."})

    def __post_init__(self):
        from enhancer.config import coerce_numbers
        from enhancer.prompts import get_profile

        coerce_numbers(self)
        if isinstance(self.scorers, str):
            self.scorers = [s.strip() for s in self.scorers.split(",") if s.strip()]
        if not self.variants:
            raise ValueError("eval: give at least one --variant (e.g. raw, base=embedded-base)")
        for variant in self.variants:
            parse_variant(variant)
        if not self.scorers:
            raise ValueError("eval: give at least one scorer")
        unknown = [w for w in self.weights if w not in self.scorers]
        if unknown:
            raise ValueError(f"eval: weights for scorers not in use: {', '.join(unknown)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError("eval: limit must be at least 1")
        if not 1 <= self.batch_size <= 512:
            raise ValueError(f"eval: batch_size must be in 1..512, got {self.batch_size}")
        if self.max_new_tokens is not None and not 8 <= self.max_new_tokens <= 4096:
            raise ValueError(f"eval: max_new_tokens must be in 8..4096, got {self.max_new_tokens}")
        get_profile(self.target)
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"eval: dtype must be float32, bfloat16 or float16, got {self.dtype!r}")

    @classmethod
    def from_yaml(cls, path: str | None = None, **overrides: Any) -> EvalConfig:
        from enhancer.config import load_config

        return load_config(cls, path, overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
