"""Video backend "sora": any server that speaks the OpenAI videos protocol (create a job, poll it, download the
mp4), through the official `openai` SDK.

OpenAI shut its own hosted Sora API down on 2026-09-24, so `base_url` has no default: point it at a server that
speaks the same protocol, for example `enhancer video serve --backend diffusers ...` on a GPU machine, or a
provider that kept the protocol.

    enhancer video generate "a fox in the snow" --backend sora \\
        --option base_url=http://127.0.0.1:8100/v1 --option model=wan2.2 --out fox.mp4
    enhancer run --backend sora --backend-option base_url=http://gpu-1:8100/v1 ...

Options: base_url (or ENHANCER_SORA_BASE_URL), api_key (or ENHANCER_SORA_API_KEY / OPENAI_API_KEY), model,
cost_per_second (USD per second of video, for the budget; default 0.10, what sora-2 cost at 720p),
poll_interval_s, request_timeout_s. Retries, the cache and the budget are the core's (enhancer.video.service):
the SDK's own retries are off so that faults are counted once, and each job is created with an Idempotency-Key,
so a retried create returns the job already made instead of paying for a second.

A pool of workers: `base_url` may name several servers (a list in a recipe, or comma-separated), for example one
`enhancer video serve` per GPU. Each job goes to the least busy worker that has room (`worker_concurrency` jobs
at most per worker; unlimited when left out); a worker that refuses connections or answers 5xx is rested for a
while (2, 4, 8 ... 60 s) while others take its jobs; a job's retries stay on the worker that got it (its
Idempotency-Key only means something there), and the job id recorded in the cache names its worker, so a
resumed run polls the right one. `worker_concurrency` counts this process's jobs: under N training processes
a worker may get N times as many, and the server's own `--concurrency` (jobs it runs at once; it queues the
rest) is the hard limit.

    enhancer run --recipe R   # backend_options: {base_url: [http://gpu-1:8100/v1, http://gpu-2:8100/v1],
                              #                   worker_concurrency: 1}
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import warnings
from pathlib import Path

from enhancer import Video, hookimpl
from enhancer.contracts import TransientVideoError, VideoJobFailed

# The SDK warns on every call that OpenAI's own endpoint is closing; this plugin exists for the other servers
# that speak the protocol, and refuses OpenAI's endpoint itself with an explanation (CLOSED_NOTE).
warnings.filterwarnings("ignore", message="The Sora API is scheduled", category=DeprecationWarning)

CLOSED_NOTE = (
    "OpenAI's hosted Sora API closed on 2026-09-24: set base_url to a server that speaks the OpenAI videos "
    "protocol (e.g. `enhancer video serve --backend diffusers --model ...` on a GPU machine), "
    "with --option base_url=URL or ENHANCER_SORA_BASE_URL"
)


def _retry_after(error) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the core's backoff decides


def _urls(base_url) -> list[str]:
    """One URL, a comma-separated string of them, or a list (a recipe's YAML list)."""
    values = base_url if isinstance(base_url, (list, tuple)) else str(base_url or "").split(",")
    urls = [str(u).strip().rstrip("/") for u in values if str(u).strip()]
    if len(set(urls)) != len(urls):
        raise ValueError(f"base_url names a worker twice: {', '.join(urls)}")
    return urls


class SoraBackend:
    """The OpenAI videos protocol: create, poll, download; one server or a pool of them."""

    name = "sora"
    submits_jobs = True  # create a job, then poll it: the core records job ids so nothing is paid twice

    def __init__(
        self,
        out_dir: str,
        base_url: str | list[str] | None = None,
        api_key: str | None = None,
        model: str = "sora-2",
        cost_per_second: float = 0.10,
        poll_interval_s: float = 2.0,
        request_timeout_s: float = 60.0,
        worker_concurrency: int | None = None,
    ):
        urls = _urls(base_url or os.environ.get("ENHANCER_SORA_BASE_URL"))
        if not urls or any(u.startswith("https://api.openai.com") for u in urls):
            raise ValueError(CLOSED_NOTE)
        if worker_concurrency is not None and int(worker_concurrency) < 1:
            raise ValueError(f"worker_concurrency must be at least 1, got {worker_concurrency}")
        self.out_dir = Path(out_dir)
        self.base_urls = urls
        self.base_url = urls[0]
        self.model = model
        self.cost_per_second = float(cost_per_second)
        self.poll_interval_s = float(poll_interval_s)
        self.worker_concurrency = int(worker_concurrency) if worker_concurrency is not None else None
        self._api_key = (
            api_key or os.environ.get("ENHANCER_SORA_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        )
        self._timeout = float(request_timeout_s)
        self._clients: dict = {}
        self._busy: dict[str, set[str]] = {url: set() for url in urls}  # jobs each worker is running for us
        self._rested: dict[str, tuple[int, float]] = {}  # worker -> (faults in a row, resting until)
        self._assigned: dict[str, str] = {}  # idempotency key -> the worker its create went to
        self._turn = 0

    def client(self, url: str | None = None):
        """One SDK client per worker and event loop: a connection pool belongs to the loop that made it, and each
        `VideoService.generate` call runs its own loop."""
        from openai import AsyncOpenAI

        loop = id(asyncio.get_running_loop())
        if any(held != loop for held, _ in self._clients):
            self._clients = {}
        url = url or self.base_url
        if (loop, url) not in self._clients:
            self._clients[(loop, url)] = AsyncOpenAI(
                base_url=url, api_key=self._api_key, max_retries=0, timeout=self._timeout
            )
        return self._clients[(loop, url)]

    async def _worker_for(self, key: str) -> str:
        """The worker for a new job: the one its earlier attempt went to, else the least busy rested one with room."""
        if key in self._assigned:
            return self._assigned[key]
        while True:
            now = time.monotonic()
            awake = [u for u in self.base_urls if self._rested.get(u, (0, 0.0))[1] <= now]
            candidates = awake or [min(self.base_urls, key=lambda u: self._rested[u][1])]  # all resting: soonest
            room = [
                u
                for u in candidates
                if self.worker_concurrency is None or len(self._busy[u]) < self.worker_concurrency
            ]
            if room:
                # ties go round, starting at this process's rank, so the processes of a run do not all pick the
                # same first worker
                self._turn += 1
                start = self._turn + int(os.environ.get("RANK", "0"))
                order = {u: (i - start) % len(self.base_urls) for i, u in enumerate(self.base_urls)}
                worker = min(room, key=lambda u: (len(self._busy[u]), order[u]))
                self._assigned[key] = worker
                return worker
            await asyncio.sleep(min(self.poll_interval_s, 0.1))

    def _fault(self, worker: str, error: Exception) -> None:
        """Rest a worker that refused a connection or failed on the server side; others take its new jobs."""
        if isinstance(error, TransientVideoError) and not str(error).startswith("429"):
            faults = self._rested.get(worker, (0, 0.0))[0] + 1
            self._rested[worker] = (faults, time.monotonic() + min(60.0, 2.0**faults))

    def cache_identity(self) -> dict:
        # workers of one pool serve the same model: a video is the pool's, whichever worker made it
        urls = self.base_url if len(self.base_urls) == 1 else sorted(self.base_urls)
        return {"backend": self.name, "base_url": urls, "model": self.model}

    def estimate_cost(self, *, seconds: float, size: str) -> float:
        return round(self.cost_per_second * float(seconds), 6)

    async def _call(self, coroutine):
        """Run one SDK call, turning its errors into the core's: transient (retry) or failed (record)."""
        import openai

        try:
            return await coroutine
        except openai.RateLimitError as error:
            raise TransientVideoError(f"429 rate limited: {error}", _retry_after(error)) from error
        except openai.InternalServerError as error:
            raise TransientVideoError(f"server error {error.status_code}: {error}", _retry_after(error)) from error
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            raise TransientVideoError(f"{type(error).__name__}: {error}") from error
        except openai.APIStatusError as error:
            if error.status_code in (408, 409, 425):
                raise TransientVideoError(f"{error.status_code}: {error}", _retry_after(error)) from error
            raise VideoJobFailed(f"the server refused the request ({error.status_code}): {error}") from error

    async def submit(self, prompt, *, idempotency_key, seed, seconds, size, negative_prompt=None) -> str:
        extra = {"seed": seed, **({"negative_prompt": negative_prompt} if negative_prompt else {})}
        worker = await self._worker_for(idempotency_key)
        busy = self._busy[worker]
        busy.add(idempotency_key)  # the slot is taken from the create on
        try:
            job = await self._call(
                self.client(worker).videos.create(
                    prompt=prompt,
                    model=self.model,
                    seconds=str(int(seconds)) if float(seconds).is_integer() else str(seconds),
                    size=size,
                    extra_headers={"Idempotency-Key": idempotency_key},
                    extra_body=extra,
                )
            )
        except TransientVideoError as error:
            self._fault(worker, error)
            if not _maybe_accepted(error):
                self._assigned.pop(idempotency_key, None)  # never reached the server: another worker may take it
            raise
        finally:
            busy.discard(idempotency_key)
        self._rested.pop(worker, None)
        _check_job_id(job.id, worker)
        busy.add(job.id)  # until fetch has it
        # even a job that failed at once exists (and may be billed): fetch reports the failure
        return job.id if len(self.base_urls) == 1 else f"{job.id}@{worker}"

    async def fetch(self, job_id, *, seed, seconds, size, negative_prompt=None) -> Video:
        job_id, _, worker = job_id.partition("@")
        worker = worker or self.base_url
        _check_job_id(job_id, worker)  # it names a file below: a resumed id from the cache is checked again
        client = self.client(worker)
        busy = self._busy.setdefault(worker, set())
        busy.add(job_id)  # a resumed job counts against its worker too
        started = time.perf_counter()
        try:
            while True:
                job = await self._call(client.videos.retrieve(job_id))
                if job.status == "completed":
                    break
                if job.status == "failed":
                    raise VideoJobFailed(_job_error(job))
                await asyncio.sleep(self.poll_interval_s)
            content = await self._call(client.videos.download_content(job_id, variant="video"))
        finally:
            busy.discard(job_id)
        data = content.content
        if not data:
            raise TransientVideoError(f"video {job_id}: empty download")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"sora-{job_id}.mp4"
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        return Video(
            str(path),
            self.name,
            job.model or self.model,
            float(seconds),
            time.perf_counter() - started,
            self.estimate_cost(seconds=seconds, size=size),
            seed,
        )

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None) -> Video:
        key = hashlib.sha256(repr((self.model, prompt, seed, seconds, size, negative_prompt)).encode()).hexdigest()
        job_id = await self.submit(
            prompt, idempotency_key=key, seed=seed, seconds=seconds, size=size, negative_prompt=negative_prompt
        )
        return await self.fetch(job_id, seed=seed, seconds=seconds, size=size, negative_prompt=negative_prompt)


def _maybe_accepted(error: TransientVideoError) -> bool:
    """Could the server have created the job although we saw an error? Not when it said 429 or when no
    connection was made; yes after a timeout or a dropped reply (the retry must then go to the same worker)."""
    if str(error).startswith("429"):
        return False
    cause = error.__cause__  # the SDK's APIConnectionError, itself caused by the HTTP library's error
    return type(getattr(cause, "__cause__", None)).__name__ != "ConnectError"  # httpx and its successors


_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _check_job_id(job_id, worker: str) -> None:
    """A job id from the server becomes part of a file name (sora-ID.mp4) and a URL path: letters, digits, '_',
    '-' and '.' only, so a server cannot write outside the video folder ("../x") or reach another route."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id) or ".." in job_id:
        raise VideoJobFailed(
            f"{worker} answered with job id {job_id!r}: not a job id (letters, digits, '_', '-', '.'; at most 128); "
            "is this server speaking Sora's video protocol?"
        )


def _job_error(job) -> str:
    error = getattr(job, "error", None)
    message = getattr(error, "message", None) or (error.get("message") if isinstance(error, dict) else None)
    code = getattr(error, "code", None) or (error.get("code") if isinstance(error, dict) else None)
    return f"video {job.id} failed" + (f" ({code})" if code else "") + (f": {message}" if message else "")


@hookimpl
def enhancer_video_backends():
    return {"sora": SoraBackend}
