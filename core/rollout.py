"""The rollout: enhanced prompts -> videos (through the registered backend) -> rewards (through the registered
scorers), cached, concurrent and budgeted, with one trace row per sample (schema in shared/DESIGN.md).

Policy trainers call it directly (`rollout(simple, enhanced)`) or through TRL's reward-function signature
(`rollout.as_reward_function()`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enhancer.contracts import Sample, Video


class BudgetExceeded(RuntimeError):
    """The next videos would pass max_videos or max_cost_usd; the trainer should checkpoint and stop."""


@dataclass
class Budget:
    max_videos: int | None = None
    max_cost_usd: float | None = None
    videos: int = 0
    cost_usd: float = 0.0

    def check(self, new_videos: int, new_cost: float) -> None:
        if self.max_videos is not None and self.videos + new_videos > self.max_videos:
            raise BudgetExceeded(f"max_videos={self.max_videos} reached ({self.videos} made, {new_videos} more asked)")
        if self.max_cost_usd is not None and self.cost_usd + new_cost > self.max_cost_usd + 1e-9:
            raise BudgetExceeded(f"max_cost_usd={self.max_cost_usd} reached (${self.cost_usd:.2f} spent)")


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
        self.video_dir = self.out_dir / "videos"
        self.traces_path = self.out_dir / "traces.jsonl"
        self.cache_path = self.out_dir / "video_cache.jsonl"
        self.video_dir.mkdir(parents=True, exist_ok=True)
        self.cache: dict[str, Video] = self._load_cache()
        # a resumed run carries its spend over: every cached video was paid for once
        self.budget.videos = max(self.budget.videos, len(self.cache))
        self.budget.cost_usd = max(self.budget.cost_usd, sum(v.cost_usd for v in self.cache.values()))
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

    def summary(self) -> dict:
        return {"videos": self.budget.videos, "cost_usd": round(self.budget.cost_usd, 4), "cached": len(self.cache)}

    # -------------------------------------------------------------------------------------------- helpers
    def _key(self, prompt: str) -> str:
        text = json.dumps([getattr(self.backend, "name", "?"), prompt, self.video_seed, self.seconds, self.size])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    async def _videos(self, prompts: list[str]) -> list[Video | None]:
        keys = [self._key(p) for p in prompts]
        missing = {k: p for k, p in zip(keys, prompts, strict=True) if k not in self.cache}
        cost = sum(self.backend.estimate_cost(seconds=self.seconds, size=self.size) for _ in missing)
        self.budget.check(len(missing), cost)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str, prompt: str) -> None:
            async with semaphore:
                started = time.perf_counter()
                video = await self.backend.generate(prompt, seed=self.video_seed, seconds=self.seconds, size=self.size)
                video.latency_s = video.latency_s or time.perf_counter() - started
            self.cache[key] = video
            self.budget.videos += 1
            self.budget.cost_usd += video.cost_usd
            with self.cache_path.open("a", encoding="utf-8") as cache:
                cache.write(json.dumps({"key": key, **video.to_dict()}) + "\n")

        results = await asyncio.gather(*(one(k, p) for k, p in missing.items()), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors and len(errors) == len(results):
            raise RuntimeError(f"every video failed; first error: {errors[0]!r}")
        out = []
        for key in keys:
            video = self.cache.get(key)
            if video is not None and key not in missing:
                video = Video(**{**video.to_dict(), "cached": True})
            out.append(video)
        return out

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

    def _load_cache(self) -> dict[str, Video]:
        cache = {}
        if self.cache_path.exists():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a killed run
                key = row.pop("key")
                if Path(row["path"]).exists():
                    cache[key] = Video(**row)
        return cache

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
