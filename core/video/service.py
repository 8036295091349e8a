"""What every video backend gets from the core: a content-addressed cache, bounded concurrency, retries and a
persisted budget ledger. Backends only make videos; this module makes sure the same request is never generated
or paid twice (across restarts too), that faults are retried or recorded, and that spend never passes the cap.

    service = VideoService(backend, "runs/x/video-cache", max_cost_usd=20.0, concurrency=16)
    results = service.generate([VideoRequest("a fox in the snow", seed=0, seconds=4, size="320x192")])

Layout of the cache folder (safe to share between processes, and between machines on a file system with flock:
see enhancer.files):

    index.jsonl         one record per event, the last one per key wins: submitted (with the backend's job id),
                        ok (with the mp4 path), failed (with the reason); append-only, fsync'd
    ledger.jsonl        one charge per key, ever: written when the job is paid (accepted by the server, or made)
    reservations.jsonl  reserve / release events: a job's cost is reserved under the ledger lock before it is
                        submitted, so every process sharing the folder sees it against the cap
    ledger.lock         held while a process reads the ledger and reserves, commits or releases
    locks/KEY.lock      held by the one process making video KEY; the others wait, then find it in the cache
    videos/KEY.mp4      finished videos, moved in atomically

The budget holds for any number of processes: the cap is checked against what every process has spent plus
what every process has reserved. A reservation left by a process killed mid-job stays counted (the job may have
been paid) until the same video is asked for again; then the asker takes it over without paying twice.

Backends that submit jobs to a server (the sora plugin) declare `submits_jobs = True` and implement
`submit(...) -> job_id` and `fetch(job_id, ...) -> Video`; the service records the job id, so a retry or a
restarted client polls the job it already paid for instead of creating another. Other backends implement
`generate` only. A backend may also define `cache_identity()` (what makes two of its videos interchangeable).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from enhancer.contracts import TransientVideoError, Video, VideoJobFailed
from enhancer.files import JsonlTail, append_jsonl, async_file_lock, file_lock


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


def submits_jobs(backend) -> bool:
    """Whether a backend declared `submits_jobs = True` (two-phase jobs: `submit` then `fetch`, see the module
    docstring); a declaration without both methods is a plugin bug, reported as such."""
    if not getattr(backend, "submits_jobs", False):
        return False
    missing = [m for m in ("submit", "fetch") if not callable(getattr(backend, m, None))]
    if missing:
        raise TypeError(
            f"backend {getattr(backend, 'name', backend)!r} declares submits_jobs but has no {' or '.join(missing)}"
        )
    return True


def backend_identity(backend) -> dict:
    """What makes two backends' videos interchangeable: `cache_identity()` when the backend defines it."""
    if hasattr(backend, "cache_identity"):
        return dict(backend.cache_identity())
    return {"backend": getattr(backend, "name", type(backend).__name__), "model": getattr(backend, "model", None)}


class BudgetLedger:
    """Money spent per cache key, persisted and shared by every process using the cache folder.

    A job's cost is reserved (under the ledger lock, against what every process has spent or reserved) before
    it is submitted, then committed when it is paid or released when the server never took it. A key is charged
    once. Reserve only while holding the key's lock (`VideoService` does), so one process at a time makes it."""

    def __init__(self, path: str | Path, max_cost_usd: float | None = None, max_videos: int | None = None):
        self.path = Path(path)
        self.reservations_path = self.path.with_name("reservations.jsonl")
        self.lock_path = self.path.with_suffix(".lock")
        self.max_cost_usd = max_cost_usd
        self.max_videos = max_videos
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.charges: dict[str, float] = {}
        self.reserved: dict[str, float] = {}  # open reservations of every process: key -> cost
        self._charge_rows = JsonlTail(self.path)
        self._reservation_rows = JsonlTail(self.reservations_path)
        self.refresh()

    @property
    def spent_usd(self) -> float:
        return sum(self.charges.values())

    @property
    def reserved_usd(self) -> float:
        return sum(self.reserved.values())

    def videos(self) -> int:
        """Videos paid for or being made, by any process sharing the ledger."""
        return len(self.charges) + len(self.reserved)

    def refresh(self) -> None:
        """Read what other processes (and earlier runs) wrote since the last look."""
        for row in self._charge_rows.read_new():
            self.charges.setdefault(row["key"], float(row["cost_usd"]))
        for row in self._reservation_rows.read_new():
            if row.get("event") == "reserve":
                self.reserved[row["key"]] = float(row["cost_usd"])
            elif row.get("event") == "release":
                self.reserved.pop(row["key"], None)
        for key in self.charges.keys() & self.reserved.keys():
            del self.reserved[key]

    def reserve(self, key: str, cost: float) -> None:
        with file_lock(self.lock_path):
            self.refresh()
            if key in self.charges or key in self.reserved:
                # paid already, or reserved by a process that died mid-job (the caller holds the key's lock, so
                # nobody is making it now): a retry, a resumed job or a take-over costs nothing more
                return
            if self.max_cost_usd is not None and self.spent_usd + self.reserved_usd + cost > self.max_cost_usd + 1e-9:
                raise BudgetExceeded(
                    f"budget: the cap of ${self.max_cost_usd:.2f} would be passed (${self.spent_usd:.2f} spent and "
                    f"${self.reserved_usd:.2f} reserved by every process sharing {self.path.parent}, ${cost:.2f} "
                    "more asked); raise max_cost_usd to go on"
                )
            if self.max_videos is not None and self.videos() + 1 > self.max_videos:
                raise BudgetExceeded(f"budget: max_videos={self.max_videos} reached ({self.videos()} made or running)")
            self._event("reserve", key, cost)
            self.reserved[key] = cost

    def commit(self, key: str) -> None:
        """The job is paid: charge its key (once, whichever process or restart gets here)."""
        with file_lock(self.lock_path):
            self.refresh()
            if key in self.charges or key not in self.reserved:
                return  # charged already, or never reserved: nothing to charge
            cost = self.reserved.pop(key)
            append_jsonl(self.path, [{"key": key, "cost_usd": cost, "time": time.time()}])
            self.charges[key] = cost

    def release(self, key: str) -> None:
        """The server never accepted the job (e.g. 429 on create): nothing was spent."""
        with file_lock(self.lock_path):
            self.refresh()
            if key in self.reserved and key not in self.charges:
                self._event("release", key, self.reserved.pop(key))

    def _event(self, event: str, key: str, cost: float) -> None:
        row = {"event": event, "key": key, "cost_usd": cost, "owner": self.owner, "time": time.time()}
        append_jsonl(self.reservations_path, [row])


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
        submits_jobs(backend)  # a broken declaration fails here, not mid-run
        self.identity = backend_identity(backend)
        self.dir = Path(cache_dir)
        (self.dir / "videos").mkdir(parents=True, exist_ok=True)
        self.index_path = self.dir / "index.jsonl"
        self._index_rows = JsonlTail(self.index_path)
        self.ledger = BudgetLedger(self.dir / "ledger.jsonl", max_cost_usd, max_videos)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.rng = random.Random(seed)
        self.stats = CacheStats()
        self.log = log or (lambda message: None)
        self.records: dict[str, dict] = {}
        self.refresh()

    # ------------------------------------------------------------------------------------------------ public
    def refresh(self) -> None:
        """Read what other processes sharing the cache folder recorded and spent since the last look."""
        for row in self._index_rows.read_new():
            self.records[row["key"]] = row
        self.ledger.refresh()

    def estimate(self, requests: Sequence[VideoRequest]) -> dict:
        """A dry run: how many requests the cache answers, how many would be generated and what they would cost
        (against what every process sharing the cache has spent or reserved)."""
        self.refresh()
        ledger = self.ledger
        keys = {r.key(self.identity): r for r in requests}
        paid = ledger.charges.keys() | ledger.reserved.keys()
        new = {k: r for k, r in keys.items() if self._cached(k) is None and k not in paid}
        cost = sum(self.backend.estimate_cost(seconds=r.seconds, size=r.size) for r in new.values())
        committed = ledger.spent_usd + ledger.reserved_usd
        return {
            "requests": len(requests),
            "unique": len(keys),
            "cached": sum(1 for k in keys if self._cached(k) is not None),
            "to_generate": len(new),
            "cost_usd": round(cost, 4),
            "spent_usd": round(ledger.spent_usd, 4),
            "reserved_usd": round(ledger.reserved_usd, 4),
            "videos": ledger.videos(),
            "max_cost_usd": ledger.max_cost_usd,
            "fits_budget": ledger.max_cost_usd is None or committed + cost <= ledger.max_cost_usd + 1e-9,
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
            "reserved_usd": round(self.ledger.reserved_usd, 4),
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
        append_jsonl(self.index_path, [row])

    def _answer(self, request: VideoRequest, key: str) -> VideoResult | None:
        """The cache's answer for `key`: a video, a recorded failure, or None (it has to be made)."""
        cached = self._cached(key)
        if cached is not None:
            self.stats.hits += 1
            return VideoResult(request, key, "ok", self._video(cached, cached=True), cached=True)
        if self.records.get(key, {}).get("status") == "failed":
            self.stats.hits += 1  # a recorded failure is an answer too: asking again would pay again
            return VideoResult(request, key, "failed", error=self.records[key].get("error"), cached=True)
        return None

    async def _one(self, request: VideoRequest, key: str, semaphore: asyncio.Semaphore) -> VideoResult:
        answer = self._answer(request, key)
        if answer is not None:
            return answer
        # one maker per key across every process sharing the folder; the others wait here, then find it made
        async with async_file_lock(self.dir / "locks" / f"{key}.lock"):
            for row in self._index_rows.read_new():
                self.records[row["key"]] = row
            answer = self._answer(request, key)
            if answer is not None:
                return answer
            self.stats.misses += 1
            cost = self.backend.estimate_cost(seconds=request.seconds, size=request.size)
            try:
                self.ledger.reserve(key, cost)
            except BudgetExceeded as error:
                self.stats.skipped += 1
                return VideoResult(request, key, "skipped", error=str(error))
            async with semaphore:
                return await self._attempts(request, key, cost, self.records.get(key, {}).get("job_id"))

    async def _attempts(self, request: VideoRequest, key: str, cost: float, job_id: str | None) -> VideoResult:
        two_phase = submits_jobs(self.backend)
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
