"""The core's video service and the sora plugin against a real OpenAI-videos-protocol server on 127.0.0.1 that
injects faults: 429 with Retry-After, 500, slow answers, hung connections, lost replies and failed jobs."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
from collections import Counter

import pytest

from enhancer.contracts import VideoJobFailed
from enhancer.files import read_jsonl
from enhancer.plugins.sora import SoraBackend
from enhancer.plugins.synthetic import SyntheticBackend
from enhancer.serve.videos import VideoProtocolServer
from enhancer.video import read_frames
from enhancer.video.service import BudgetExceeded, BudgetLedger, RetryPolicy, VideoRequest, VideoService

from conftest import BIN

# hung connections are caught by the SDK's per-request timeout (1 s below); the attempt timeout covers a whole
# create-poll-download and must outlast the server's queue
FAST = RetryPolicy(max_attempts=12, base_delay_s=0.01, max_delay_s=0.2, attempt_timeout_s=60.0)


class Refusing(SyntheticBackend):
    """The synthetic renderer, except that prompts with "forbidden" fail the way a moderation check would."""

    async def generate(self, prompt, **options):
        if "forbidden" in prompt:
            raise RuntimeError("moderation_blocked: the prompt was refused")
        return await super().generate(prompt, **options)


class FaultPlan:
    """Seeded faults on a share of requests; thread-safe, and counts what it injected."""

    def __init__(self, seed: int = 0, share_post: float = 0.3, share_get: float = 0.05):
        self.rng = random.Random(seed)
        self.share = {"POST": share_post, "GET": share_get}  # a job is polled several times: fewer faults there
        self.lock = threading.Lock()
        self.injected = Counter()

    def __call__(self, method: str, path: str):
        with self.lock:
            if self.rng.random() >= self.share[method]:
                return None
            action = self.rng.choice(
                [("status", 429, 0.05), ("status", 500), ("status", 503), ("sleep", 0.3), ("hang", 1.3)]
                + ([("lose_reply",)] if method == "POST" else [])
            )
            self.injected[action[0] if action[0] != "status" else str(action[1])] += 1
            return action


def _billed(server) -> Counter:
    """What the server would bill: jobs created per (prompt, seed)."""
    return Counter((job.prompt, job.seed) for job in server.jobs.values())


def _sora(server, tmp_path, **options):
    options = {"request_timeout_s": 1.0, **options}
    return SoraBackend(str(tmp_path / "client"), base_url=server.base_url, poll_interval_s=0.02, **options)


def test_200_requests_through_faults_end_as_videos_or_recorded_failures_and_none_is_paid_twice(tmp_path):
    faults = FaultPlan(seed=1)
    prompts = [f"a red kite number {i} over the sea" for i in range(190)]
    prompts += [f"a forbidden scene number {i}" for i in range(10)]
    with VideoProtocolServer(Refusing(str(tmp_path / "server")), concurrency=8, faults=faults) as server:
        service = VideoService(
            _sora(server, tmp_path), tmp_path / "cache", concurrency=16, max_cost_usd=25.0, retry=FAST
        )
        requests = [VideoRequest(p, seed=0, seconds=1, size="64x48") for p in prompts]
        results = service.generate(requests)

        statuses = Counter(r.status for r in results)
        assert statuses == {"ok": 190, "failed": 10}, [r.error for r in results if r.status != "ok"][:5]
        assert all("moderation_blocked" in r.error for r in results if r.status == "failed")
        assert all(read_frames(r.video.path).shape == (8, 48, 64, 3) for r in results[:3])
        billed = _billed(server)
        assert max(billed.values()) == 1 and len(billed) == 200  # every request created exactly one job
        assert service.ledger.spent_usd == pytest.approx(0.1 * 200) and service.ledger.spent_usd <= 25.0
        assert sum(faults.injected.values()) > 50 and {"429", "500", "hang", "lose_reply"} <= set(faults.injected)
        assert service.stats.retries > 0

        # a second client on the same cache: everything answered from it, failures included, nothing paid again
        again = VideoService(
            _sora(server, tmp_path), tmp_path / "cache", concurrency=16, max_cost_usd=25.0, retry=FAST
        )
        second = again.generate(requests)
        assert [r.status for r in second] == [r.status for r in results] and all(r.cached for r in second)
        assert len(server.jobs) == 200 and again.ledger.spent_usd == service.ledger.spent_usd


def test_spend_never_passes_the_cap(tmp_path):
    with VideoProtocolServer(SyntheticBackend(str(tmp_path / "server")), concurrency=8) as server:
        service = VideoService(
            _sora(server, tmp_path), tmp_path / "cache", concurrency=16, max_cost_usd=2.05, retry=FAST
        )
        results = service.generate([VideoRequest(f"a boat number {i}", seconds=1, size="64x48") for i in range(40)])
    statuses = Counter(r.status for r in results)
    assert statuses == {"ok": 20, "skipped": 20}  # $0.10 a video: 20 fit under $2.05, checked before each job
    assert len(server.jobs) == 20 and service.ledger.spent_usd == pytest.approx(2.0)
    assert "raise max_cost_usd" in next(r.error for r in results if r.status == "skipped")
    assert len((tmp_path / "cache" / "ledger.jsonl").read_text().splitlines()) == 20
    assert service.estimate([VideoRequest("a new boat", seconds=1, size="64x48")])["fits_budget"] is False


def test_a_killed_client_resumes_the_job_it_already_paid_for(tmp_path):
    slow = SyntheticBackend(str(tmp_path / "server"), latency_s=2.5)
    with VideoProtocolServer(slow, concurrency=2) as server:
        impatient = RetryPolicy(max_attempts=1, attempt_timeout_s=1.5)  # enough to submit, too little to wait
        first = VideoService(_sora(server, tmp_path), tmp_path / "cache", retry=impatient)
        [result] = first.generate([VideoRequest("a lighthouse in a storm", seconds=1, size="64x48")])
        assert result.status == "failed" and "gave up" in result.error  # submitted, then the client "died"
        index = [json.loads(line) for line in (tmp_path / "cache" / "index.jsonl").read_text().splitlines()]
        assert index[-1]["status"] == "submitted" and index[-1]["job_id"].startswith("video_")

        resumed = VideoService(_sora(server, tmp_path), tmp_path / "cache", retry=FAST)
        [result] = resumed.generate([VideoRequest("a lighthouse in a storm", seconds=1, size="64x48")])
        assert result.status == "ok" and len(server.jobs) == 1  # polled the old job; no second one was created
        assert resumed.ledger.spent_usd == pytest.approx(0.1)


def test_retry_after_is_honoured_and_backoff_grows():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(0)
    assert policy.delay(1, 5.0, rng) >= 5.0
    assert all(0 <= policy.delay(4, None, rng) <= 8.0 for _ in range(50))
    assert max(policy.delay(1, None, rng) for _ in range(50)) <= 1.0


def test_ledger_persists_and_charges_a_key_once(tmp_path):
    ledger = BudgetLedger(tmp_path / "ledger.jsonl", max_cost_usd=1.0)
    ledger.reserve("a", 0.6)
    with pytest.raises(BudgetExceeded):
        ledger.reserve("b", 0.6)  # 0.6 reserved + 0.6 > 1.0, even though nothing is spent yet
    ledger.commit("a")
    ledger.reserve("a", 0.6)  # already paid: a retry costs nothing
    reopened = BudgetLedger(tmp_path / "ledger.jsonl", max_cost_usd=1.0)
    assert reopened.spent_usd == pytest.approx(0.6)
    reopened.reserve("c", 0.4)
    reopened.release("c")
    assert reopened.spent_usd == pytest.approx(0.6) and not reopened.reserved


def test_sora_backend_needs_a_server_and_explains_why(tmp_path, monkeypatch):
    monkeypatch.delenv("ENHANCER_SORA_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="closed on 2026-09-24"):
        SoraBackend(str(tmp_path))
    with pytest.raises(ValueError, match="closed on 2026-09-24"):
        SoraBackend(str(tmp_path), base_url="https://api.openai.com/v1")


def test_the_server_asks_for_its_key_and_refuses_bad_requests(tmp_path):
    import asyncio

    with VideoProtocolServer(SyntheticBackend(str(tmp_path / "server")), api_key="s3cret") as server:
        wrong = _sora(server, tmp_path, api_key="nope")
        with pytest.raises(VideoJobFailed, match="401"):
            asyncio.run(wrong.generate("a fox", seed=0, seconds=1, size="64x48"))
        refused = VideoService(wrong, tmp_path / "cache", max_cost_usd=1.0, retry=FAST)
        [result] = refused.generate([VideoRequest("a fox", seconds=1, size="64x48")])
        assert result.status == "failed" and "401" in result.error
        assert refused.ledger.spent_usd == 0 and not refused.ledger.reserved  # refused at create: nothing spent
        right = _sora(server, tmp_path, api_key="s3cret")
        video = asyncio.run(right.generate("a fox", seed=3, seconds=1, size="64x48"))
        assert read_frames(video.path).shape[1:] == (48, 64, 3)
        assert next(iter(server.jobs.values())).seed == 3  # the seed travels as an extension field
        with pytest.raises(VideoJobFailed, match="422.*prompt: required"):
            asyncio.run(right.generate("   ", seed=0, seconds=1, size="64x48"))
    assert server.httpd.server_address[0] == "127.0.0.1"


def test_cli_video_generate_and_estimate(tmp_path):
    out = tmp_path / "fox.mp4"
    command = [str(BIN / "enhancer"), "video", "generate", "a fox in the snow", "--backend", "synthetic"]
    result = subprocess.run(
        [*command, "--out", str(out), "--seconds", "1", "--size", "64x48", "--cache", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert read_frames(out).shape == (8, 48, 64, 3)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox in the snow\na boat at dawn\n")
    estimate = subprocess.run(
        [
            str(BIN / "enhancer"),
            "video",
            "estimate",
            "--backend",
            "synthetic",
            "--prompts",
            str(prompts),
            "--seconds",
            "1",
            "--size",
            "64x48",
            "--cache",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert estimate.returncode == 0, estimate.stderr
    assert json.loads(estimate.stdout) | {} == {
        "requests": 2,
        "unique": 2,
        "cached": 1,
        "to_generate": 1,
        "cost_usd": 0.0,
        "spent_usd": 0.0,
        "reserved_usd": 0.0,
        "videos": 1,
        "max_cost_usd": None,
        "fits_budget": True,
    }


def test_concurrency_runs_that_many_jobs_at_once(tmp_path):
    """16 videos at concurrency 16 are all at the backend together: each job waits at a gate that opens only
    when 16 are in (so a service that ran them one by one would time out there). The speed-up itself is
    bench/video.py's (docs/benchmarks.md), not a test's: wall-clock asserts fail on busy machines."""
    gated = Gated(str(tmp_path / "render"), need=16)
    service = VideoService(gated, tmp_path / "cache", concurrency=16, retry=FAST)
    results = service.generate([VideoRequest(f"a paper boat number {i}", seconds=1, size="32x32") for i in range(16)])
    assert [r.status for r in results] == ["ok"] * 16 and gated.most == 16
    serial = Gated(str(tmp_path / "render-serial"), need=1)
    one_by_one = VideoService(serial, tmp_path / "cache-serial", concurrency=1, retry=FAST)
    results = one_by_one.generate([VideoRequest(f"a kite number {i}", seconds=1, size="32x32") for i in range(4)])
    assert [r.status for r in results] == ["ok"] * 4 and serial.most == 1


class Counting(SyntheticBackend):
    """The synthetic renderer, counting how many jobs it runs at once."""

    def __init__(self, out_dir, **options):
        super().__init__(out_dir, **options)
        self.running, self.most, self.lock = 0, 0, threading.Lock()

    async def generate(self, prompt, **options):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return await super().generate(prompt, **options)
        finally:
            with self.lock:
                self.running -= 1


class Gated(Counting):
    """Counting, and each job waits until `need` jobs are in at once."""

    def __init__(self, out_dir, need: int, **options):
        super().__init__(out_dir, **options)
        self.need, self.opened = need, threading.Event()

    async def generate(self, prompt, **options):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            if self.running >= self.need:
                self.opened.set()
        try:
            await asyncio.to_thread(self.opened.wait, 60)
            assert self.opened.is_set(), f"only {self.most} jobs ever ran at once; {self.need} expected"
            return await SyntheticBackend.generate(self, prompt, **options)
        finally:
            with self.lock:
                self.running -= 1


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_worker_pool_spreads_jobs_with_per_worker_concurrency(tmp_path):
    workers = [Counting(str(tmp_path / f"server-{i}"), latency_s=0.4) for i in range(2)]
    with VideoProtocolServer(workers[0], concurrency=4) as one, VideoProtocolServer(workers[1], concurrency=4) as two:
        pool = SoraBackend(
            str(tmp_path / "client"),
            base_url=f"{one.base_url},{two.base_url}",  # as --option base_url=A,B gives it
            poll_interval_s=0.02,
            request_timeout_s=5,
            worker_concurrency=1,
        )
        service = VideoService(pool, tmp_path / "cache", concurrency=8, retry=FAST)
        results = service.generate([VideoRequest(f"a tram number {i}", seconds=1, size="32x32") for i in range(8)])
        assert [r.status for r in results] == ["ok"] * 8
        assert (len(one.jobs), len(two.jobs)) == (4, 4)  # the least busy worker took each job
        assert workers[0].most == workers[1].most == 1  # and never more than one at a time
        jobs = {r["job_id"] for r in read_jsonl(tmp_path / "cache" / "index.jsonl") if r["status"] == "ok"}
        assert {j.split("@")[1] for j in jobs} == {one.base_url, two.base_url}  # each job id names its worker

        # a client that gave up after submitting: the resumed one polls the job on the worker that has it
        impatient = RetryPolicy(max_attempts=1, attempt_timeout_s=0.2)
        first = VideoService(pool, tmp_path / "cache", retry=impatient)
        [result] = first.generate([VideoRequest("a late tram", seconds=1, size="32x32")])
        assert result.status == "failed" and "gave up" in result.error
        again = VideoService(pool, tmp_path / "cache", retry=FAST)
        [result] = again.generate([VideoRequest("a late tram", seconds=1, size="32x32")])
        assert result.status == "ok" and len(one.jobs) + len(two.jobs) == 9  # polled, not created again


def test_a_dead_worker_is_rested_and_the_others_take_its_jobs(tmp_path):
    live = Counting(str(tmp_path / "server"))
    dead = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    with VideoProtocolServer(live, concurrency=4) as server:
        pool = SoraBackend(
            str(tmp_path / "client"), base_url=[dead, server.base_url], poll_interval_s=0.02, request_timeout_s=5
        )
        service = VideoService(pool, tmp_path / "cache", concurrency=4, retry=FAST)
        results = service.generate([VideoRequest(f"a mill number {i}", seconds=1, size="32x32") for i in range(6)])
    assert [r.status for r in results] == ["ok"] * 6 and len(server.jobs) == 6
    assert service.stats.retries >= 1 and pool._rested[dead][0] >= 1  # it was tried, failed and rested
    assert pool.cache_identity()["base_url"] == sorted([dead, server.base_url])


def test_a_job_id_that_is_not_one_is_refused(tmp_path):
    """A server answering with a job id like '../../x' (it becomes a file name and a URL path) gets a clear,
    permanent failure, and nothing is written outside the video folder."""
    import http.server

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"id": "../../escape", "object": "video", "status": "queued", "model": "sora-2"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = SoraBackend(str(tmp_path / "videos"), base_url=f"http://127.0.0.1:{server.server_port}/v1")
        with pytest.raises(VideoJobFailed, match=r"job id '\.\./\.\./escape': not a job id"):
            asyncio.run(backend.generate("a kite", seed=0, seconds=1, size="32x32"))
        with pytest.raises(VideoJobFailed, match="not a job id"):  # an id read back from a tampered cache
            asyncio.run(backend.fetch("a/b", seed=0, seconds=1, size="32x32"))
    finally:
        server.shutdown()
    assert not (tmp_path / "escape.mp4").exists() and not list(tmp_path.glob("**/*.mp4"))
