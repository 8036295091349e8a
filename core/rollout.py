"""The rollout: enhanced prompts -> videos (through the registered backend) -> rewards (through the registered
scorers), cached, concurrent and budgeted, with one trace row per sample (schema in shared/DESIGN.md).

Policy trainers call it directly (`rollout(simple, enhanced)`) or through TRL's reward-function signature
(`rollout.as_reward_function()`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enhancer.contracts import Sample, Video
from enhancer.video_service import BudgetExceeded, VideoRequest, VideoService

__all__ = ["Budget", "BudgetExceeded", "Rollout", "rewards_by_step"]


@dataclass
class Budget:
    """Caps for stage 2. The spend itself lives in the video cache's ledger (enhancer.video_service), so a
    resumed run carries it over."""

    max_videos: int | None = None
    max_cost_usd: float | None = None


class Rollout:
    def __init__(
        self,
        backend,
        scorers: Sequence,
        *,
        out_dir: str | Path,
        weights: dict[str, float] | None = None,
        seconds: float = 2.0,
        size: str = "320x192",
        concurrency: int = 4,
        budget: Budget | None = None,
        video_seed: int = 0,
    ):
        self.backend = backend
        self.scorers = list(scorers)
        self.weights = weights or {}
        self.seconds = seconds
        self.size = size
        self.concurrency = concurrency
        self.budget = budget or Budget()
        self.video_seed = video_seed
        self.out_dir = Path(out_dir)
        self.traces_path = self.out_dir / "traces.jsonl"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # the cache, retries and ledger every backend shares; its per-job cap is the last line of defence, the
        # per-step check in _videos the first (a step is made whole or not at all, so the trainer stops cleanly)
        self.service = VideoService(
            backend,
            self.out_dir / "video-cache",
            concurrency=concurrency,
            max_cost_usd=self.budget.max_cost_usd,
            max_videos=self.budget.max_videos,
            seed=video_seed,
        )
        self.step = self._last_step() + 1

    # --------------------------------------------------------------------------------------------- public
    def __call__(
        self, simple_prompts: Sequence[str], enhanced_prompts: Sequence[str], *, step: int | None = None
    ) -> list[float | None]:
        if len(simple_prompts) != len(enhanced_prompts):
            raise ValueError(f"{len(simple_prompts)} simple prompts but {len(enhanced_prompts)} enhanced ones")
        step = self.step if step is None else step
        videos = asyncio.run(self._videos(list(enhanced_prompts)))
        samples = [
            Sample(s, e, video.path if video else None, self.video_seed)
            for s, e, video in zip(simple_prompts, enhanced_prompts, videos, strict=True)
        ]
        per_scorer = {scorer.name: self._score(scorer, samples) for scorer in self.scorers}
        rewards = [self._combine({n: scores[i] for n, scores in per_scorer.items()}) for i in range(len(samples))]
        finished = time.time()
        with self.traces_path.open("a", encoding="utf-8") as traces:
            for i, (sample, video) in enumerate(zip(samples, videos, strict=True)):
                row = {
                    "step": step,
                    "simple_prompt": sample.simple_prompt,
                    "detailed_prompt": sample.enhanced_prompt,
                    "reward": rewards[i],
                    "rewards": {n: scores[i] for n, scores in per_scorer.items()},
                    "seed": self.video_seed,
                    "video_path": sample.video_path,
                    "backend": getattr(self.backend, "name", "?"),
                    "latency_s": round(video.latency_s, 3) if video else None,
                    "cost_usd": 0.0 if video is None or video.cached else video.cost_usd,
                    "cached": bool(video and video.cached),
                    "time": round(finished, 3),  # when the step's rewards were in (unix seconds)
                }
                traces.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.step = step + 1
        return rewards

    def as_reward_function(self):
        """TRL's reward-function signature; needs a `simple_prompt` dataset column."""

        def enhancer_rollout(prompts, completions, **kwargs):
            simple = kwargs.get("simple_prompt")
            if simple is None:
                raise KeyError("the training dataset needs a 'simple_prompt' column for the rollout")
            texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
            return [r if r is not None else math.nan for r in self(simple, texts)]

        return enhancer_rollout

    def rewind(self, step: int) -> int:
        """Resume at `step`: trace rows of later steps (rollouts whose policy update a kill lost) move to
        traces.discarded.jsonl, so every step appears once in traces.jsonl. Their videos stay in the cache.
        Returns how many rows moved."""
        if not self.traces_path.exists():
            self.step = step
            return 0
        kept, moved = [], []
        for line in self.traces_path.read_text(encoding="utf-8").splitlines():
            try:
                later = int(json.loads(line)["step"]) >= step
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                later = True  # a torn last line: the kill came mid-write
            (moved if later else kept).append(line)
        if moved:
            with (self.out_dir / "traces.discarded.jsonl").open("a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in moved))
            partial = self.traces_path.with_suffix(".jsonl.partial")
            partial.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            partial.replace(self.traces_path)
        self.step = step
        return len(moved)

    def summary(self) -> dict:
        stats = self.service.summary()
        return {
            "videos": len(self.service.ledger.charges),
            "cost_usd": stats["spent_usd"],
            "cached": stats["cached_videos"],
            "cache_hits": stats["hits"],
            "failed_videos": stats["failed"],
            "retries": stats["retries"],
        }

    # -------------------------------------------------------------------------------------------- helpers
    async def _videos(self, prompts: list[str]) -> list[Video | None]:
        requests = [VideoRequest(p, self.video_seed, self.seconds, self.size) for p in prompts]
        plan = self.service.estimate(requests)
        made = len(self.service.ledger.charges)
        if self.budget.max_videos is not None and made + plan["to_generate"] > self.budget.max_videos:
            raise BudgetExceeded(
                f"max_videos={self.budget.max_videos} reached ({made} made, {plan['to_generate']} more asked)"
            )
        if not plan["fits_budget"]:
            raise BudgetExceeded(
                f"max_cost_usd={self.budget.max_cost_usd} reached (${plan['spent_usd']:.2f} spent, "
                f"${plan['cost_usd']:.2f} more asked)"
            )
        results = await self.service.agenerate(requests)
        failed = [r for r in results if r.status != "ok"]
        if failed and len(failed) == len(results):
            raise RuntimeError(f"every video of the step failed; first error: {failed[0].error}")
        return [r.video if r.status == "ok" else None for r in results]

    def _score(self, scorer, samples: list[Sample]) -> list[float | None]:
        scores = list(scorer.score(samples))
        if len(scores) != len(samples):
            raise ValueError(f"scorer {scorer.name!r} returned {len(scores)} scores for {len(samples)} samples")
        return [None if s is None or (isinstance(s, float) and math.isnan(s)) else float(s) for s in scores]

    def _combine(self, scores: dict[str, float | None]) -> float | None:
        known = {n: s for n, s in scores.items() if s is not None}
        if not known:
            return None
        total = sum(self.weights.get(n, 1.0) for n in known)
        return sum(self.weights.get(n, 1.0) * s for n, s in known.items()) / total

    def _last_step(self) -> int:
        if not self.traces_path.exists():
            return -1
        steps = []
        for line in self.traces_path.read_text(encoding="utf-8").splitlines():
            try:
                steps.append(int(json.loads(line)["step"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return max(steps, default=-1)


def rewards_by_step(traces: str | Path) -> dict[int, list[float]]:
    """The rewards of a trace file (ours, or the original project's stage2_traces.jsonl) grouped by step; rows
    without a reward (could not score) and a torn last line are left out."""
    by_step: dict[int, list[float]] = {}
    path = Path(traces)
    if not path.exists():
        return by_step
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("reward") is not None:
            by_step.setdefault(int(row["step"]), []).append(float(row["reward"]))
    return dict(sorted(by_step.items()))
