"""The rollout: enhanced prompts -> videos (through the registered backend) -> rewards (through the registered
scorers), cached, concurrent and budgeted, with one trace row per sample (schema in docs/architecture.md).

Policy trainers call it directly (`rollout(simple, enhanced)`) or through TRL's reward-function signature
(`rollout.as_reward_function()`).

Under several processes (torchrun, accelerate) every process calls the rollout with its own share of the step's
samples, at the same time (TRL's trainers do). Each makes its videos through the shared video cache (one maker
per video across processes, one budget) and scores them; the step's trace rows are gathered to the main
process, which alone writes traces.jsonl: one row per sample, with the global step and the sample's index in
the step. A budget stop or an error on any process stops every process at the same step, so none waits forever.

Resuming: a trainer calls `rewind(step)` with the update its checkpoint resumes at (0 without one); trace rows
of later steps move to traces.discarded.jsonl. A trainer that never calls it starts at step 0, as a trainer
without checkpoints does.
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
from enhancer.files import append_jsonl, cut_torn_tail, read_jsonl
from enhancer.scoring import combine
from enhancer.train.distributed import ProcessContext
from enhancer.video.service import BudgetExceeded, VideoRequest, VideoService

__all__ = ["Budget", "BudgetExceeded", "Rollout", "merge_summaries", "rewards_by_step"]


@dataclass
class Budget:
    """Caps for stage 2. The spend itself lives in the video cache's ledger (enhancer.video.service), so a
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
        process: ProcessContext | None = None,
    ):
        self.backend = backend
        self.scorers = list(scorers)
        self.weights = weights or {}
        self.seconds = seconds
        self.size = size
        self.concurrency = concurrency
        self.budget = budget or Budget()
        self.video_seed = video_seed
        self.process = process or ProcessContext()
        self.out_dir = Path(out_dir)
        self.traces_path = self.out_dir / "traces.jsonl"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # the cache, retries and ledger every backend (and every process) shares; its per-job cap is the last
        # line of defence, the per-step check in _check_budget the first (a step is made whole or not at all)
        self.service = VideoService(
            backend,
            self.out_dir / "video-cache",
            concurrency=concurrency,
            max_cost_usd=self.budget.max_cost_usd,
            max_videos=self.budget.max_videos,
            seed=video_seed,
        )
        self.step = 0
        self._rewound = False

    # --------------------------------------------------------------------------------------------- public
    def __call__(
        self, simple_prompts: Sequence[str], enhanced_prompts: Sequence[str], *, step: int | None = None
    ) -> list[float | None]:
        """Rewards for this process's samples; under several processes, every process calls it once per step."""
        if len(simple_prompts) != len(enhanced_prompts):
            raise ValueError(f"{len(simple_prompts)} simple prompts but {len(enhanced_prompts)} enhanced ones")
        if not self._rewound:
            self.rewind(0)
        step = self.step if step is None else step
        simple_prompts, enhanced_prompts = list(simple_prompts), list(enhanced_prompts)
        self._check_budget(enhanced_prompts)  # the same verdict on every process
        local_error = None
        try:
            rewards, rows, video_error = self._local(simple_prompts, enhanced_prompts)
            outcome = {"rows": rows, "video_error": video_error}
        except Exception as error:  # every process must hear of it, or the others would wait for this one forever
            rewards, local_error = None, error
            outcome = {"error": f"{type(error).__name__}: {error}", "budget": isinstance(error, BudgetExceeded)}
        gathered = self.process.gather(outcome)
        if local_error is not None:
            raise local_error
        for rank, other in enumerate(gathered):
            if "error" in other:
                if other["budget"]:
                    raise BudgetExceeded(other["error"])
                raise RuntimeError(f"the rollout failed on process {rank}: {other['error']}")
        if all(row["video_path"] is None for other in gathered for row in other["rows"]):
            errors = [other["video_error"] for other in gathered if other["video_error"]]
            if errors:  # no video at all for the step: nothing to learn from, and likely a broken backend
                raise RuntimeError(f"every video of the step failed; first error: {errors[0]}")
        if self.process.is_main:
            finished = round(time.time(), 3)  # when the step's rewards were in (unix seconds)
            rows = [row for other in gathered for row in other["rows"]]
            append_jsonl(
                self.traces_path, [{"step": step, "index": i, **row, "time": finished} for i, row in enumerate(rows)]
            )
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
        """Resume at `step` (0: from the start): trace rows of later steps (rollouts whose policy update a kill
        lost, or a run started again without a checkpoint) move to traces.discarded.jsonl, so every step appears
        once in traces.jsonl. Their videos stay in the cache. Every process calls it; the main one moves the rows.
        Returns how many rows moved."""
        moved: list[dict] = []
        if self.process.is_main and self.traces_path.exists():
            cut_torn_tail(self.traces_path)  # a kill mid-write: the fragment goes to traces.jsonl.torn
            kept: list[dict] = []
            for row in read_jsonl(self.traces_path):
                earlier = _step_of(row) is not None and _step_of(row) < step
                (kept if earlier else moved).append(row)
            if moved:
                append_jsonl(self.out_dir / "traces.discarded.jsonl", moved)
                partial = self.traces_path.with_suffix(".jsonl.partial")
                partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
                partial.replace(self.traces_path)  # whole or not at all
        count = self.process.broadcast(len(moved))
        self.step = step
        self._rewound = True
        return count

    def summary(self) -> dict:
        """The run's video totals (every process's, from the shared ledger) and this process's cache counters;
        `merge_summaries` adds up the counters of several processes."""
        self.service.refresh()
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
    def _check_budget(self, enhanced_prompts: list[str]) -> None:
        """Refuse the whole step, on every process alike, when its new videos would pass a cap."""
        requests = [VideoRequest(p, self.video_seed, self.seconds, self.size) for p in enhanced_prompts]
        everyone = [r for share in self.process.gather(requests) for r in share]
        verdict = None
        if self.process.is_main:
            try:
                plan = self.service.estimate(everyone)
            except Exception as error:  # told to every process below, so none waits for the others
                plan, verdict = None, f"the budget check failed: {type(error).__name__}: {error}"
            if (
                plan
                and self.budget.max_videos is not None
                and plan["videos"] + plan["to_generate"] > self.budget.max_videos
            ):
                verdict = (
                    f"budget: max_videos={self.budget.max_videos} reached ({plan['videos']} made, "
                    f"{plan['to_generate']} more asked)"
                )
            elif plan and not plan["fits_budget"]:
                verdict = (
                    f"budget: max_cost_usd={self.budget.max_cost_usd} reached (${plan['spent_usd']:.2f} spent, "
                    f"${plan['reserved_usd']:.2f} reserved, ${plan['cost_usd']:.2f} more asked)"
                )
        verdict = self.process.broadcast(verdict)
        if verdict:
            raise (BudgetExceeded if verdict.startswith("budget") else RuntimeError)(verdict)

    def _local(self, simple_prompts: list[str], enhanced_prompts: list[str]) -> tuple[list, list[dict], str | None]:
        """Videos and rewards for this process's samples, their trace rows (without step, index and time) and the
        first video error, if any."""
        videos, video_error = asyncio.run(self._videos(enhanced_prompts)) if enhanced_prompts else ([], None)
        samples = [
            Sample(s, e, video.path if video else None, self.video_seed)
            for s, e, video in zip(simple_prompts, enhanced_prompts, videos, strict=True)
        ]
        per_scorer = {scorer.name: self._score(scorer, samples) for scorer in self.scorers}
        rewards = [
            combine({n: scores[i] for n, scores in per_scorer.items()}, self.weights) for i in range(len(samples))
        ]
        rows = [
            {
                "simple_prompt": sample.simple,
                "detailed_prompt": sample.enhanced,
                "reward": rewards[i],
                "rewards": {n: scores[i] for n, scores in per_scorer.items()},
                "seed": self.video_seed,
                "video_path": sample.video_path,
                "backend": getattr(self.backend, "name", "?"),
                "latency_s": round(video.latency_s, 3) if video else None,
                "cost_usd": 0.0 if video is None or video.cached else video.cost_usd,
                "cached": bool(video and video.cached),
                "rank": self.process.rank,
            }
            for i, (sample, video) in enumerate(zip(samples, videos, strict=True))
        ]
        return rewards, rows, video_error

    async def _videos(self, prompts: list[str]) -> tuple[list[Video | None], str | None]:
        requests = [VideoRequest(p, self.video_seed, self.seconds, self.size) for p in prompts]
        results = await self.service.agenerate(requests)
        skipped = [r for r in results if r.status == "skipped"]
        if skipped:  # another run sharing the cache spent the budget after the step's check
            raise BudgetExceeded(skipped[0].error)
        failed = [r.error for r in results if r.status != "ok"]
        return [r.video if r.status == "ok" else None for r in results], (failed[0] if failed else None)

    def _score(self, scorer, samples: list[Sample]) -> list[float | None]:
        scores = list(scorer.score(samples))
        if len(scores) != len(samples):
            raise ValueError(f"scorer {scorer.name!r} returned {len(scores)} scores for {len(samples)} samples")
        return [None if s is None or (isinstance(s, float) and math.isnan(s)) else float(s) for s in scores]


def merge_summaries(summaries: list[dict]) -> dict:
    """One run summary from every process's `Rollout.summary()`: the shared totals once, the counters added."""
    merged = dict(summaries[0])
    for key in ("cache_hits", "failed_videos", "retries"):
        merged[key] = sum(s[key] for s in summaries)
    return merged


def _step_of(row: dict) -> int | None:
    try:
        return int(row["step"])
    except (KeyError, TypeError, ValueError):
        return None


def rewards_by_step(traces: str | Path) -> dict[int, list[float]]:
    """The rewards of a trace file (ours, or the original project's stage2_traces.jsonl) grouped by step; rows
    without a reward (could not score) and a torn last line are left out."""
    by_step: dict[int, list[float]] = {}
    path = Path(traces)
    if not path.exists():
        return by_step
    for row in read_jsonl(path):
        if row.get("reward") is not None:
            by_step.setdefault(int(row["step"]), []).append(float(row["reward"]))
    return dict(sorted(by_step.items()))
