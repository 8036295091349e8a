"""The data that crosses plugin boundaries: videos, samples, enhancements, and the three plugin protocols.

Plugins depend on this module only (plus `enhancer.hookimpl`), so it imports nothing heavy.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from enhancer import logs
from enhancer.train.distributed import ProcessContext

if TYPE_CHECKING:
    from enhancer.config import RLConfig


class TransientVideoError(RuntimeError):
    """A fault worth retrying (429, 5xx, timeout, dropped connection). `retry_after`: seconds the server asked for."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class VideoJobFailed(RuntimeError):
    """The backend ran the job and it failed for good (moderation, a model error): recorded, never retried, and
    never replaced by a fake video."""


@dataclass
class Video:
    """A generated video file and what it cost."""

    path: str
    backend: str
    model: str
    seconds_of_video: float
    latency_s: float
    cost_usd: float = 0.0
    seed: int | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """One thing to score: the user's idea, the rewrite, and (when a backend ran) the video made from it."""

    simple: str  # the user's idea
    enhanced: str  # the rewrite being judged
    video_path: str | None = None
    seed: int | None = None
    # Annotations, when the prompt comes from an annotated set (data/eval): scorers use them if present.
    keep: list[str] | None = None  # words a faithful rewrite must contain
    quote: list[str] | None = None  # strings it must copy verbatim
    style: str | None = None  # the style the user asked for
    target: str | None = None  # the target profile the rewrite was written for
    kind: str | None = None  # "normal", "edge", "adversarial" (an instruction, not a video idea) or "multilingual"

    # the names scorers written before `simple`/`enhanced` use; read-only
    @property
    def simple_prompt(self) -> str:
        return self.simple

    @property
    def enhanced_prompt(self) -> str:
        return self.enhanced


@dataclass
class Enhancement:
    """The result of enhancing one prompt (status "ok", "fallback" or "error"; see docs/architecture.md)."""

    prompt: str
    enhanced: str
    negative: str | None = None
    status: Literal["ok", "fallback", "error"] = "ok"
    message: str = ""
    model: str = ""
    target: str = "generic"
    seed: int | None = None
    seconds: float = 0.0
    variants: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        if len(self.variants) <= 1:
            row.pop("variants")
        return row


@dataclass
class TrainContext:
    """Everything the core tells a policy trainer besides the policy, the prompts and the rollout: where its files
    go, the stage-2 settings, the seed, which process it is and where to log. Under several processes (torchrun,
    accelerate) only the main process writes files; TRL's trainers save that way themselves, and a trainer's own
    files (metadata, extra checkpoints) must too."""

    out_dir: Path  # the stage's folder (OUT/stage2): checkpoints and the final adapter go here
    rl: RLConfig  # steps, batch (prompts_per_step x samples_per_prompt), learning rate, sampling, video settings
    seed: int = 0
    process: ProcessContext = field(default_factory=ProcessContext)
    log: Callable[[str], None] = logs.info


@runtime_checkable
class VideoBackend(Protocol):
    """Turns a prompt into a video file. `generate` is async so the core can run many at once.

    Optional, declared rather than discovered: `submits_jobs = True` with `async submit(prompt, *, idempotency_key,
    seed, seconds, size, negative_prompt) -> job_id` and `async fetch(job_id, *, seed, seconds, size,
    negative_prompt) -> Video`, for servers that queue jobs (enhancer.video.service records the job ids); and
    `cache_identity() -> dict`, what makes two of the backend's videos interchangeable in the cache."""

    name: str

    async def generate(
        self, prompt: str, *, seed: int, seconds: float, size: str, negative_prompt: str | None = None
    ) -> Video: ...

    def estimate_cost(self, *, seconds: float, size: str) -> float: ...


@runtime_checkable
class RewardScorer(Protocol):
    """Scores samples; `None` means "could not score", never a fake 0."""

    name: str

    def score(self, samples: Sequence[Sample]) -> list[float | None]: ...


@runtime_checkable
class PolicyTrainer(Protocol):
    """Updates the policy from rewards that `rollout` computes; returns the checkpoint directory."""

    name: str

    def train(self, policy: Any, dataset: Any, rollout: Callable[..., Any], context: TrainContext) -> str: ...


def as_trl_reward_function(scorer: RewardScorer) -> Callable[..., list[float | None]]:
    """Present a scorer with TRL's reward-function signature `f(prompts, completions, **kwargs)`.

    TRL passes every dataset column as a keyword list; `simple_prompt` (or the prompts themselves) gives the
    user's idea and `video_path` the video when a rollout made one.
    """

    def reward_function(prompts, completions, **kwargs):
        simple = kwargs.get("simple_prompt") or [_plain_text(p) for p in prompts]
        videos = kwargs.get("video_path") or [None] * len(completions)
        samples = [
            Sample(simple=s, enhanced=_plain_text(c), video_path=v)
            for s, c, v in zip(simple, completions, videos, strict=True)
        ]
        return scorer.score(samples)

    reward_function.__name__ = f"reward_{scorer.name}"
    return reward_function


def _plain_text(value: Any) -> str:
    """TRL gives either strings or chat message lists; take the last message's text from the latter."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


def takes_keyword(function, name: str) -> bool:
    """Whether `function` accepts the keyword `name`: how a caller tells which options an enhancer (or a stand-in,
    or an older version) takes, e.g. `should_stop`, `instructions` or `image`."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
