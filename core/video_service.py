"""What every video backend gets from the core: a content-addressed cache, bounded concurrency, retries and a
persisted budget ledger. Backends only make videos; this module makes sure the same request is never generated
or paid twice (across restarts too), that faults are retried or recorded, and that spend never passes the cap.

    service = VideoService(backend, "runs/x/video-cache", max_cost_usd=20.0, concurrency=16)
    results = service.generate([VideoRequest("a fox in the snow", seed=0, seconds=4, size="320x192")])

Layout of the cache folder:

    index.jsonl      one record per event, the last one per key wins: submitted (with the backend's job id),
                     ok (with the mp4 path), failed (with the reason); append-only, fsync'd, a torn last line
                     from a killed process is ignored
    ledger.jsonl     one charge per key, written before the job is submitted (the cap is checked first)
    videos/KEY.mp4   finished videos, moved in atomically

Backends that submit jobs to a server (the sora plugin) may implement `submit(...) -> job_id` and
`fetch(job_id, ...) -> Video`; the service records the job id, so a retry or a restarted client polls the job it
already paid for instead of creating another. Other backends implement `generate` only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from enhancer.contracts import TransientVideoError, Video, VideoJobFailed


class BudgetExceeded(RuntimeError):
    """The next video would pass the spending cap (or the video count cap)."""


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    seed: int = 0
    seconds: float = 4.0
    size: str = "320x192"
    negative_prompt: str | None = None

    def key(self, identity: dict) -> str:
        """The cache key: the backend's identity (name, model, settings that change the video) and the request."""
        text = json.dumps([identity, asdict(self)], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass
class VideoResult:
    request: VideoRequest
    key: str
    status: str  # "ok", "failed" (the backend said no, or retries ran out) or "skipped" (budget)
    video: Video | None = None
    error: str | None = None
    attempts: int = 0
    cached: bool = False


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when it asks for longer."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    attempt_timeout_s: float | None = 600.0  # a hung connection or a stuck job counts as a transient fault

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))
        return max(backoff, retry_after or 0.0)


def backend_identity(backend) -> dict:
    """What makes two backends' videos interchangeable: `cache_identity()` when the backend defines it."""
    if hasattr(backend, "cache_identity"):
        return dict(backend.cache_identity())
    return {"backend": getattr(backend, "name", type(backend).__name__), "model": getattr(backend, "model", None)}


class _JsonLog:
    """Append-only JSON lines with fsync; reading skips a torn last line."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # torn by a killed process
        return rows

    def append(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class BudgetLedger:
    """Money spent per cache key, persisted. A key is charged once, before its job is submitted; the cap is
    checked against what is spent plus what running jobs have reserved, so concurrency cannot overshoot it."""

    def __init__(self, path: Path, max_cost_usd: float | None = None, max_videos: int | None = None):
        self.log = _JsonLog(path)
        self.max_cost_usd = max_cost_usd
        self.max_videos = max_videos
        self.charges: dict[str, float] = {row["key"]: float(row["cost_usd"]) for row in self.log.read()}
        self.reserved: dict[str, float] = {}

    @property
    def spent_usd(self) -> float:
        return sum(self.charges.values())

    def reserve(self, key: str, cost: float) -> None:
        if key in self.charges or key in self.reserved:
            return  # paid (or being paid) already: a retry or a resumed job costs nothing more
        spent = self.spent_usd + sum(self.reserved.values())
        if self.max_cost_usd is not None and spent + cost > self.max_cost_usd + 1e-9:
            raise BudgetExceeded(
                f"the budget cap of ${self.max_cost_usd:.2f} would be passed (${spent:.2f} spent or reserved, "
                f"${cost:.2f} more asked); raise max_cost_usd to go on"
            )
        videos = len(self.charges) + len(self.reserved)
        if self.max_videos is not None and videos + 1 > self.max_videos:
            raise BudgetExceeded(f"max_videos={self.max_videos} reached ({videos} made or running)")
        self.reserved[key] = cost

    def commit(self, key: str) -> None:
        if key in self.reserved:
            cost = self.reserved.pop(key)
            self.charges[key] = cost
            self.log.append({"key": key, "cost_usd": cost, "time": time.time()})

    def release(self, key: str) -> None:
        """The server never accepted the job (e.g. 429 on create): nothing was spent."""
        self.reserved.pop(key, None)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    generated: int = 0


class VideoService:
    def __init__(
        self,
        backend,
        cache_dir: str | Path,
        *,
        concurrency: int = 4,
        max_cost_usd: float | None = None,
        max_videos: int | None = None,
        retry: RetryPolicy | None = None,
        seed: int = 0,
        log=None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.backend = backend
        self.identity = backend_identity(backend)
        self.dir = Path(cache_dir)
        (self.dir / "videos").mkdir(parents=True, exist_ok=True)
        self.index = _JsonLog(self.dir / "index.jsonl")
        self.ledger = BudgetLedger(self.dir / "ledger.jsonl", max_cost_usd, max_videos)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.rng = random.Random(seed)
        self.stats = CacheStats()
        self.log = log or (lambda message: None)
        self.records: dict[str, dict] = {}
        for row in self.index.read():
            self.records[row["key"]] = row

    # ------------------------------------------------------------------------------------------------ public
    def estimate(self, requests: Sequence[VideoRequest]) -> dict:
        """A dry run: how many requests the cache answers, how many would be generated and what they would cost."""
        keys = {r.key(self.identity): r for r in requests}
        new = {k: r for k, r in keys.items() if self._cached(k) is None and k not in self.ledger.charges}
        cost = sum(self.backend.estimate_cost(seconds=r.seconds, size=r.size) for r in new.values())
        return {
            "requests": len(requests),
            "unique": len(keys),
            "cached": sum(1 for k in keys if self._cached(k) is not None),
            "to_generate": len(new),
            "cost_usd": round(cost, 4),
            "spent_usd": round(self.ledger.spent_usd, 4),
            "max_cost_usd": self.ledger.max_cost_usd,
            "fits_budget": self.ledger.max_cost_usd is None
            or self.ledger.spent_usd + cost <= self.ledger.max_cost_usd + 1e-9,
        }

    def generate(self, requests: Sequence[VideoRequest]) -> list[VideoResult]:
        return asyncio.run(self.agenerate(requests))

    async def agenerate(self, requests: Sequence[VideoRequest]) -> list[VideoResult]:
        """One result per request, in order. Duplicate requests share one job."""
        semaphore = asyncio.Semaphore(self.concurrency)
        tasks: dict[str, asyncio.Task] = {}
        for request in requests:
            key = request.key(self.identity)
            if key not in tasks:
                tasks[key] = asyncio.ensure_future(self._one(request, key, semaphore))
        done = {key: await task for key, task in tasks.items()}
        return [done[r.key(self.identity)] for r in requests]

    def summary(self) -> dict:
        return {
            **asdict(self.stats),
            "spent_usd": round(self.ledger.spent_usd, 4),
            "cached_videos": sum(1 for r in self.records.values() if r.get("status") == "ok"),
        }

    # ----------------------------------------------------------------------------------------------- helpers
    def _cached(self, key: str) -> dict | None:
        record = self.records.get(key)
        if record and record.get("status") == "ok" and Path(record["path"]).is_file():
            return record
        return None

    def _record(self, key: str, **row) -> None:
        row = {"key": key, **row, "time": time.time()}
        self.records[key] = row
        self.index.append(row)

    async def _one(self, request: VideoRequest, key: str, semaphore: asyncio.Semaphore) -> VideoResult:
        cached = self._cached(key)
        if cached is not None:
            self.stats.hits += 1
            return VideoResult(request, key, "ok", self._video(cached, cached=True), cached=True)
        previous = self.records.get(key, {})
        if previous.get("status") == "failed":
            self.stats.hits += 1  # a recorded failure is an answer too: asking again would pay again
            return VideoResult(request, key, "failed", error=previous.get("error"), cached=True)
        self.stats.misses += 1
        cost = self.backend.estimate_cost(seconds=request.seconds, size=request.size)
        try:
            self.ledger.reserve(key, cost)
        except BudgetExceeded as error:
            self.stats.skipped += 1
            return VideoResult(request, key, "skipped", error=str(error))
        async with semaphore:
            return await self._attempts(request, key, cost, previous.get("job_id"))

    async def _attempts(self, request: VideoRequest, key: str, cost: float, job_id: str | None) -> VideoResult:
        two_phase = hasattr(self.backend, "submit") and hasattr(self.backend, "fetch")
        options = dict(
            seed=request.seed, seconds=request.seconds, size=request.size, negative_prompt=request.negative_prompt
        )
        attempt, error_text = 0, ""
        while attempt < self.retry.max_attempts:
            attempt += 1
            started = time.perf_counter()
            try:
                if two_phase:
                    if job_id is None:
                        job_id = await self._timed(self.backend.submit(request.prompt, idempotency_key=key, **options))
                        self.ledger.commit(key)  # the server accepted it: it is paid
                        self._record(key, status="submitted", job_id=job_id)
                    video = await self._timed(self.backend.fetch(job_id, **options))
                else:
                    video = await self._timed(self.backend.generate(request.prompt, **options))
                    self.ledger.commit(key)
            except VideoJobFailed as error:
                if two_phase and job_id is None:
                    self.ledger.release(key)  # the server refused to create it (401, 400): nothing was spent
                else:
                    self.ledger.commit(key)  # a job that ran and failed may well be billed: count it
                self.stats.failed += 1
                self._record(key, status="failed", error=str(error), job_id=job_id)
                return VideoResult(request, key, "failed", error=str(error), attempts=attempt)
            except (TransientVideoError, TimeoutError, ConnectionError) as error:
                retry_after = getattr(error, "retry_after", None)
                error_text = f"{type(error).__name__}: {error}"
                if attempt >= self.retry.max_attempts:
                    break
                self.stats.retries += 1
                delay = self.retry.delay(attempt, retry_after, self.rng)
                self.log(f"video: {error_text}; retry {attempt} in {delay:.1f} s")
                await asyncio.sleep(delay)
                continue
            except Exception as error:  # a bug or an unexpected reply: record it, do not retry it forever
                if job_id is None:
                    self.ledger.release(key)
                self.stats.failed += 1
                message = f"{type(error).__name__}: {error}"
                self._record(key, status="failed", error=message, job_id=job_id)
                return VideoResult(request, key, "failed", error=message, attempts=attempt)
            video.latency_s = video.latency_s or time.perf_counter() - started
            path = self._store(key, Path(video.path))
            video = Video(
                **{**video.to_dict(), "path": str(path), "cost_usd": video.cost_usd or cost, "cached": False}
            )
            self.stats.generated += 1
            self._record(
                key, status="ok", job_id=job_id, **{k: v for k, v in video.to_dict().items() if k != "cached"}
            )
            return VideoResult(request, key, "ok", video, attempts=attempt)
        if job_id is None:
            self.ledger.release(key)  # never accepted by the server: nothing spent
        self.stats.failed += 1
        message = f"gave up after {attempt} attempts; last error {error_text}"
        # not recorded as failed: a later run may retry a fault that was only transient
        return VideoResult(request, key, "failed", error=message, attempts=attempt)

    async def _timed(self, awaitable):
        if self.retry.attempt_timeout_s is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, self.retry.attempt_timeout_s)
        except TimeoutError as error:
            raise TransientVideoError(f"no answer within {self.retry.attempt_timeout_s} s") from error

    def _store(self, key: str, source: Path) -> Path:
        """Move (or copy) the backend's file into the cache under its key, atomically."""
        if not source.is_file():
            raise FileNotFoundError(f"the backend reported {source}, which does not exist")
        target = self.dir / "videos" / f"{key}{source.suffix or '.mp4'}"
        partial = target.with_name(target.name + ".partial")
        try:
            os.link(source, partial)  # same filesystem: no copy
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, target)
        return target

    @staticmethod
    def _video(record: dict, cached: bool) -> Video:
        fields = Video.__dataclass_fields__
        return Video(**{k: v for k, v in record.items() if k in fields and k != "cached"}, cached=cached)
