"""`enhancer serve`'s batcher: requests that arrive together share one generate call, the queue is bounded
(`max_queue` rewrites, 429 beyond), and work whose clients left is dropped or stopped (enhancer.serve.api uses
it; docs/security.md lists the limits)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, field

from enhancer.contracts import takes_keyword


@dataclass
class _Job:
    prompt: str
    key: tuple
    future: asyncio.Future  # cancelled when its client leaves or times out: the batcher then skips the job
    units: int = 1  # rewrites it asks for (its n): what it counts against max_queue
    queued: float = field(default_factory=time.perf_counter)
    started: bool = False  # handed to a model call: its units stay counted until that call ends


async def until_client_leaves(request) -> None:
    """Returns once the client has closed its connection. The route has read the whole body, so the next ASGI
    message is the disconnect, which uvicorn sends as soon as the socket closes (no polling)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Batcher:
    """Collects requests for `window` seconds (or `max_batch` of them) and runs each group of compatible ones
    (same key: target, n, seed, temperature, negative and the further keywords, e.g. max_new_tokens and instructions,
    as a tuple of (name, value) pairs) as one `enhancer.enhance(list)` call in a worker thread.

    It also keeps the queue's count (`load`: rewrites admitted and not finished, against `max_queue`), drops jobs
    whose client left before the model saw them, and stops a call at the next token once all its clients have left
    (through `enhance(..., should_stop=...)` where the enhancer takes it)."""

    def __init__(self, enhancer, window_s: float, max_batch: int, max_queue: int = 64):
        self.enhancer = enhancer
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # generate calls made, for tests and /healthz
        self.requests = 0
        self.load = 0  # rewrites (a request's n) admitted and not finished: waiting, or in a model call
        self.hung_up = 0  # requests whose client closed the connection before the answer
        self.dropped = 0  # requests whose client left (or timed out) before the model saw them
        self.stopped = 0  # model calls ended early because every client in them had left
        self.seconds_per_unit: float | None = None  # model seconds per rewrite lately, for Retry-After
        self.takes_stop = takes_keyword(enhancer.enhance, "should_stop")
        # How many model calls may run at once: llama.cpp decodes its slots together, so several calls (and
        # streamed requests) overlap there; the transformers engine takes one batch at a time.
        self.concurrency = max(1, int(getattr(getattr(enhancer, "engine", None), "concurrency", 1)))
        self.gate: asyncio.Semaphore | None = None
        self.running: set[asyncio.Task] = set()

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.gate = asyncio.Semaphore(self.concurrency)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    def admit(self, units: int) -> int | None:
        """Counts a request's `units` (its n) in and returns None; when they do not fit under `max_queue`, counts
        nothing and returns the seconds to suggest in Retry-After. Whoever admitted calls `release` (a job given to
        `submit` is released by the batcher)."""
        if self.load + units <= self.max_queue:
            self.load += units
            return None
        return self.retry_after(units)

    def release(self, units: int) -> None:
        self.load -= units

    def retry_after(self, units: int) -> int:
        """Seconds until `units` would fit, at the pace of recent model calls: the rewrites that must finish first,
        times the measured seconds per rewrite, spread over the calls that run at once. 1 before any call has
        finished; at most 60, which OpenAI SDKs honour (newer ones give up past 120 s, older ones ignore past 60)."""
        if self.seconds_per_unit is None:
            return 1
        waiting_for = self.load + units - self.max_queue
        return min(60, max(1, math.ceil(waiting_for * self.seconds_per_unit / self.concurrency)))

    def measured(self, seconds: float, units: int) -> None:
        """A finished model call: `seconds` for `units` rewrites (a moving average, so one odd call weighs little)."""
        rate = seconds / max(units, 1)
        self.seconds_per_unit = rate if self.seconds_per_unit is None else 0.7 * self.seconds_per_unit + 0.3 * rate

    def submit(self, prompt: str, key: tuple, units: int = 1) -> _Job:
        """Queues a prompt whose `units` `admit` counted; `job.future` gets (row, queue_s, generate_s, batch size).
        Cancel the future when its client leaves: a job not yet in a model call is dropped and its units freed."""
        job = _Job(prompt, key, asyncio.get_running_loop().create_future(), units)
        job.future.add_done_callback(lambda _: self._cancelled_before_start(job))
        self.queue.put_nowait(job)
        return job

    def _cancelled_before_start(self, job: _Job) -> None:
        if job.future.cancelled() and not job.started:
            self.dropped += 1
            self.release(job.units)

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            deadline = time.perf_counter() + self.window_s
            while len(jobs) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                if not job.future.done():  # its client gave up (timeout): do not spend the model on it
                    groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                await self.gate.acquire()  # waits while `concurrency` calls run
                group = [job for job in group if not job.future.done()]  # clients that left during that wait
                if not group:
                    self.gate.release()
                    continue
                for job in group:
                    job.started = True
                task = asyncio.get_running_loop().create_task(self._generate(key, group))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def _generate(self, key: tuple, group: list[_Job]) -> None:
        try:
            await self._generate_group(key, group)
        finally:
            self.gate.release()

    async def _generate_group(self, key: tuple, group: list[_Job]) -> None:
        target, n, seed, temperature, negative, options = key
        started = time.perf_counter()
        everyone_left = threading.Event()  # read by the engine's thread at every token

        def left(_future) -> None:
            if all(job.future.cancelled() for job in group):
                everyone_left.set()

        for job in group:
            job.future.add_done_callback(left)
        stop = {"should_stop": everyone_left.is_set} if self.takes_stop else {}
        try:
            rows = await asyncio.to_thread(
                self.enhancer.enhance,
                [job.prompt for job in group],
                target=target,
                n=n,
                seed=seed,
                temperature=temperature,
                negative=negative,
                **dict(options),
                **stop,
            )
        except Exception as error:  # the whole call failed: every request in it says why
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        finally:
            self.release(sum(job.units for job in group))
        if everyone_left.is_set():  # stopped early (its rows say so) and no one to answer
            self.stopped += 1
            return
        self.batches += 1
        self.requests += len(group)
        generate_s = time.perf_counter() - started
        self.measured(generate_s, sum(job.units for job in group))
        for job, row in zip(group, rows, strict=True):
            if not job.future.done():
                job.future.set_result((row, started - job.queued, generate_s, len(group)))
