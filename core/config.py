"""The typed configuration of `enhancer run`, from YAML recipes and the command line alike.

config = RunConfig.from_yaml("recipes/demo/smollm2-135m-cpu.yaml", backend="synthetic")
config.to_yaml("runs/demo/config.yaml")   # every run logs its resolved config
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from enhancer.prompts import PROFILES

BATCHING = ("padded", "grouped", "packed")


@dataclass
class SFTConfig:
    """Stage 1: supervised fine-tuning with LoRA on (simple, detailed) pairs."""

    max_steps: int = field(default=60, metadata={"help": "Optimizer steps (the demo is short; real runs use epochs)."})
    epochs: float = field(default=3.0, metadata={"help": "Used when max_steps is 0."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Original project's value for LoRA."})
    batch_size: int = field(default=4, metadata={"help": "Per-device batch size."})
    gradient_accumulation: int = field(default=2, metadata={"help": "batch_size x this = effective batch (8)."})
    lora_r: int = field(default=16, metadata={"help": "Original project's value; higher costs memory."})
    lora_alpha: int = field(default=32, metadata={"help": "Scale of the LoRA update (alpha / r = 2)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    max_length: int = field(default=512, metadata={"help": "Longest prompt+completion in tokens; longer rows cut."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of pairs held out for eval loss."})
    max_eval_rows: int = field(default=200, metadata={"help": "Cap on held-out pairs (eval costs time on CPU)."})
    eval_steps: int = field(default=20, metadata={"help": "Eval loss every N steps."})
    report_to: str = field(default="none", metadata={"help": "'none' or 'tensorboard' (logs under out/runs)."})
    save_steps: int = field(default=20, metadata={"help": "Checkpoint every N steps; a killed run resumes there."})
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast; default: on CUDA only (see docs/benchmarks.md for CPU)."}
    )
    prompt_format: str = field(
        default="chat",
        metadata={"help": "'chat' (full instruction) or 'compact' (one line; cheaper); recorded in enhancer.json."},
    )
    batching: str = field(
        default="padded",
        metadata={
            "choices": BATCHING,
            "help": "'padded' (random batches), 'grouped' (similar lengths together) or 'packed' (no padding).",
        },
    )

    def __post_init__(self):
        coerce_numbers(self, "sft.")
        _positive(
            self,
            "learning_rate",
            "batch_size",
            "gradient_accumulation",
            "lora_r",
            "lora_alpha",
            "max_length",
            "save_steps",
            "eval_steps",
        )
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            raise ValueError("sft: set max_steps > 0, or max_steps 0 and epochs > 0")
        if self.report_to not in ("none", "tensorboard"):
            raise ValueError(f"sft.report_to must be 'none' or 'tensorboard', got {self.report_to!r}")
        if self.prompt_format not in ("chat", "compact"):
            raise ValueError(f"sft.prompt_format must be 'chat' or 'compact', got {self.prompt_format!r}")
        if self.batching not in BATCHING:
            raise ValueError(f"sft.batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        if not 0 <= self.eval_fraction < 0.5:
            raise ValueError(f"sft.eval_fraction must be in [0, 0.5), got {self.eval_fraction}")


@dataclass
class RLConfig:
    """Stage 2: online RL; every enhanced prompt becomes a video that the scorers judge."""

    max_steps: int = field(default=4, metadata={"help": "Policy updates."})
    prompts_per_step: int = field(default=2, metadata={"help": "Distinct simple prompts per update."})
    samples_per_prompt: int = field(default=2, metadata={"help": "Enhancements sampled per prompt (a GRPO group)."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Policy learning rate."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the policy."})
    max_new_tokens: int = field(default=160, metadata={"help": "Longest enhanced prompt in tokens."})
    video_seconds: float = field(default=2.0, metadata={"help": "Length of each generated video."})
    video_size: str = field(default="320x192", metadata={"help": "WIDTHxHEIGHT of each video."})
    concurrency: int = field(default=4, metadata={"help": "Videos generated at once."})
    max_videos: int | None = field(default=None, metadata={"help": "Stop cleanly before making more videos."})
    max_cost_usd: float | None = field(default=None, metadata={"help": "Stop cleanly before spending more."})

    def __post_init__(self):
        coerce_numbers(self, "rl.")
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"rl.max_videos must be at least 1 (or left out), got {self.max_videos}")
        if self.max_cost_usd is not None and self.max_cost_usd < 0:
            raise ValueError(f"rl.max_cost_usd must be >= 0 (or left out), got {self.max_cost_usd}")
        _positive(
            self,
            "max_steps",
            "prompts_per_step",
            "samples_per_prompt",
            "learning_rate",
            "max_new_tokens",
            "video_seconds",
            "concurrency",
        )


@dataclass
class RunConfig:
    """`enhancer run`: stage 1 SFT, then stage 2 RL through the registered plugins."""

    model: str = field(default="embedded", metadata={"help": "'embedded', a local HF directory or a hub id."})
    adapter: str | None = field(
        default=None,
        metadata={"help": "Start from this adapter and skip stage 1 ('embedded': the embedded model's shipped one)."},
    )
    backend: str = field(default="synthetic", metadata={"help": "Video backend plugin name."})
    rewards: list[str] = field(
        default_factory=lambda: ["keep"],
        metadata={"help": "Reward scorer plugin names (comma-separated on the command line)."},
    )
    trainer: str = field(default="trl_grpo", metadata={"help": "Policy trainer plugin name."})
    backend_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "Passed to the backend."})
    reward_options: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "Per scorer name: its options."}
    )
    reward_weights: dict[str, float] = field(default_factory=dict, metadata={"help": "Per scorer; default 1."})
    trainer_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "Passed to the trainer."})
    plugins: list[str] = field(default_factory=list, metadata={"help": "Extra plugin modules to load (repeatable)."})
    stage1_data: list[str] = field(
        default_factory=lambda: ["data/stage1"],
        metadata={"help": "JSONL files or folders of {simple, detailed} pairs (repeatable)."},
    )
    stage2_data: list[str] = field(
        default_factory=lambda: ["data/stage2"], metadata={"help": "JSONL files or folders of {simple} RL prompts."}
    )
    target: str = field(
        default="generic", metadata={"help": "Target profile the policy writes for.", "choices": tuple(PROFILES)}
    )
    out: str = field(default="runs/latest", metadata={"help": "Output folder (checkpoints, traces, summary)."})
    seed: int = field(default=0, metadata={"help": "Seed for data order, sampling and videos."})
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)

    def __post_init__(self):
        from enhancer.prompts import get_profile

        coerce_numbers(self)
        if self.sft is None or isinstance(self.sft, dict):  # `sft:` with nothing under it is the defaults
            self.sft = SFTConfig(**(self.sft or {}))
        if self.rl is None or isinstance(self.rl, dict):
            self.rl = RLConfig(**(self.rl or {}))
        if isinstance(self.rewards, str):
            self.rewards = [r.strip() for r in self.rewards.split(",") if r.strip()]
        if not self.rewards:
            raise ValueError("rewards: name at least one reward scorer")
        get_profile(self.target)

    SECTIONS = {"sft": SFTConfig, "rl": RLConfig}  # nested sections of a run recipe

    @classmethod
    def from_yaml(cls, path: str | None = None, **overrides: Any) -> RunConfig:
        return load_config(cls, path, overrides)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        return build_config(cls, values, source)

    def validate_for(self, world_size: int) -> None:
        """What depends on the number of processes, checked before any model loads: each update's rewrites are
        split evenly over the processes (the global batch stays what the recipe says, whatever the count)."""
        rewrites = self.rl.prompts_per_step * self.rl.samples_per_prompt
        if rewrites % world_size:
            raise ValueError(
                f"rl: {rewrites} rewrites per update (prompts_per_step {self.rl.prompts_per_step} x samples_per_prompt "
                f"{self.rl.samples_per_prompt}) do not split evenly over {world_size} processes; make the product a "
                f"multiple of {world_size}, or launch a number of processes that divides it"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def read_recipe(path: str | None) -> dict[str, Any]:
    """A YAML recipe as a mapping ({} without one)."""
    if not path:
        return {}
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"--recipe {path}: no such file")
    values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of options")
    return values


def load_config(cls, path: str | None, overrides: dict[str, Any]):
    """`cls` (a config dataclass) from a recipe and flag overrides: overrides that are None or empty are left out
    (the flag was not given), and a nested section (cls.SECTIONS, e.g. `sft`) is merged key by key."""
    values = read_recipe(path)
    sections = getattr(cls, "SECTIONS", {})
    for key, value in overrides.items():
        if value is None or value == () or value == []:
            continue
        values[key] = {**(values.get(key) or {}), **value} if key in sections else value
    return build_config(cls, values, path or "options")


def build_config(cls, values: dict[str, Any], source: str = "config"):
    """`cls(**values)`, refusing unknown keys (in nested sections too) with the valid ones named."""
    for name, section in (("", cls), *getattr(cls, "SECTIONS", {}).items()):
        given = (values.get(name) or {}) if name else values
        known = {f.name for f in fields(section)}
        unknown = sorted(set(given) - known)
        if unknown:
            where = f"{source}: {name + '.' if name else ''}"
            raise ValueError(f"{where}unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"{source}: {error}") from error


def coerce_numbers(config, prefix: str = "") -> None:
    """Numbers written as strings become numbers: YAML 1.1 (PyYAML) reads `2e-4`, with no dot, as the string
    '2e-4'. A string that is not a number fails with the field's name."""
    for item in fields(config):
        value = getattr(config, item.name)
        wanted = str(item.type).replace(" ", "").removesuffix("|None")
        if isinstance(value, str) and wanted in ("float", "int"):
            try:
                setattr(config, item.name, float(value) if wanted == "float" else int(value))
            except ValueError:
                raise ValueError(f"{prefix}{item.name}: expected a number ({wanted}), got {value!r}") from None


def _positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None or value <= 0:
            raise ValueError(f"{type(config).__name__}.{name} must be > 0, got {value!r}")
