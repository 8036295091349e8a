"""Files and caches that several processes share: crash-safe JSONL appends (a torn line from a killed writer is
cut off, nothing after it is lost), and the video cache's budget and one-maker-per-video rule across real CLI
processes talking to a real OpenAI-videos-protocol server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from enhancer.files import JsonlTail, append_jsonl, read_jsonl
from enhancer.plugins.sora import SoraBackend
from enhancer.plugins.synthetic import SyntheticBackend
from enhancer.scoring import KeepScorer
from enhancer.serve.videos import VideoProtocolServer
from enhancer.train.rollout import Rollout
from enhancer.video.service import RetryPolicy, VideoRequest, VideoService

from conftest import BIN

FAST = RetryPolicy(max_attempts=6, base_delay_s=0.01, max_delay_s=0.1, attempt_timeout_s=60.0)
TORN = b'{"key": "5f1e0c", "cost_u'  # what a writer killed mid-line leaves


def test_a_torn_last_line_is_cut_off_before_the_next_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"n": 1}, {"n": 2}])
    whole = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(TORN)
    assert [r["n"] for r in read_jsonl(path)] == [1, 2]  # readers skip the fragment

    append_jsonl(path, [{"n": 3}])
    assert path.read_bytes() == whole + b'{"n": 3}\n'  # truncated to the last whole line, then appended
    assert (tmp_path / "rows.jsonl.torn").read_bytes() == TORN + b"\n"  # the fragment, for the curious

    tail = JsonlTail(path)
    assert [r["n"] for r in tail.read_new()] == [1, 2, 3]
    with path.open("ab") as handle:
        handle.write(b'{"n": 4}\n{"n": 5')
    assert [r["n"] for r in tail.read_new()] == [4]  # an unfinished line waits for its newline
    with path.open("ab") as handle:
        handle.write(b"}\n")
    assert [r["n"] for r in tail.read_new()] == [5]


WRITER = """
import sys
from enhancer.files import append_jsonl
path, writer = sys.argv[1], int(sys.argv[2])
for i in range(0, 240, 3):  # rows of ~3 KB, three at a time: far over what one write is atomic for on a pipe
    append_jsonl(path, [{"writer": writer, "i": j, "pad": "x" * 3000} for j in range(i, i + 3)], fsync=False)
"""


def test_processes_appending_to_one_file_never_interleave(tmp_path):
    path = tmp_path / "shared.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)]) for n in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    lines = path.read_bytes().splitlines()
    rows = [json.loads(line) for line in lines]  # every line parses: no two writes were interleaved
    assert Counter((r["writer"], r["i"]) for r in rows) == Counter((w, i) for w in range(4) for i in range(240))


def _sora(server, tmp_path):
    return SoraBackend(str(tmp_path / "client"), base_url=server.base_url, poll_interval_s=0.02, request_timeout_s=5)


def test_a_torn_ledger_line_loses_no_charge(tmp_path):
    cache = tmp_path / "cache"
    with VideoProtocolServer(SyntheticBackend(str(tmp_path / "server")), concurrency=4) as server:
        first = VideoService(_sora(server, tmp_path), cache, max_cost_usd=1.0, retry=FAST)
        assert [
            r.status for r in first.generate([VideoRequest(f"a kite {i}", seconds=1, size="32x32") for i in range(2)])
        ] == ["ok"] * 2
        with (cache / "ledger.jsonl").open("ab") as handle:
            handle.write(TORN)  # killed while charging a third video
        with (cache / "index.jsonl").open("ab") as handle:
            handle.write(
                b'{"key": "0a9',
            )

        again = VideoService(_sora(server, tmp_path), cache, max_cost_usd=1.0, retry=FAST)
        results = again.generate([VideoRequest(f"a kite {i}", seconds=1, size="32x32") for i in range(4)])
    assert [r.status for r in results] == ["ok"] * 4 and [r.cached for r in results] == [True, True, False, False]
    charges = read_jsonl(cache / "ledger.jsonl")
    assert len(charges) == 4 and len({c["key"] for c in charges}) == 4  # the two new charges were not glued on
    assert VideoService(_sora(server, tmp_path), cache).ledger.spent_usd == pytest.approx(0.4)
    assert (cache / "ledger.jsonl.torn").read_bytes() == TORN + b"\n"
    assert len(server.jobs) == 4  # and nothing was made twice


def test_a_torn_trace_line_loses_no_row(tmp_path):
    def rollout():
        backend = SyntheticBackend(str(tmp_path / "videos"))
        return Rollout(backend, [KeepScorer()], out_dir=tmp_path, seconds=0.5, size="32x32")

    first = rollout()
    first(["a fox in the snow", "a heron"], ["A red fox in the snow.", "A heron in reeds."])
    with (tmp_path / "traces.jsonl").open("ab") as handle:
        handle.write(b'{"step": 1, "index": 0, "simple_pro')  # killed writing step 1

    resumed = rollout()
    assert resumed.rewind(1) == 0  # the checkpoint was after update 0: nothing whole to set aside
    resumed(["a kite"], ["A kite over a beach."])
    resumed(["a boat"], ["A boat at dawn."])
    rows = read_jsonl(tmp_path / "traces.jsonl")
    assert [(r["step"], r["index"], r["simple_prompt"]) for r in rows] == [
        (0, 0, "a fox in the snow"),
        (0, 1, "a heron"),
        (1, 0, "a kite"),
        (2, 0, "a boat"),
    ]
    assert (tmp_path / "traces.jsonl").read_text().count("\n") == 4  # every line whole
    assert b"simple_pro" in (tmp_path / "traces.jsonl.torn").read_bytes()


def _generate(server, cache, prompt, cap):
    return subprocess.Popen(
        [
            str(BIN / "enhancer"),
            "video",
            "generate",
            prompt,
            "--backend",
            "sora",
            "--option",
            f"base_url={server.base_url}",
            "--option",
            "poll_interval_s=0.05",
            "--seconds",
            "1",  # $0.10 a video at the sora plugin's default price
            "--size",
            "32x32",
            "--cache",
            str(cache),
            "--max-cost-usd",
            str(cap),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_sharing_a_cache_keep_the_cap_and_make_each_video_once(tmp_path):
    cache = tmp_path / "cache"
    slow = SyntheticBackend(str(tmp_path / "server"), latency_s=1.0)  # every job is in flight while the others ask
    with VideoProtocolServer(slow, concurrency=8) as server:
        # three processes, three different videos, room for one
        runs = [_generate(server, cache, f"a lighthouse number {i}", 0.10) for i in range(3)]
        done = [(run.wait(timeout=300), *run.communicate()) for run in runs]
        made = [out for code, out, _ in done if code == 0]
        refused = [err for code, _, err in done if code != 0]
        assert len(made) == 1 and len(refused) == 2, done
        assert all("budget" in err and "$0.10" in err for err in refused), refused
        assert sum(c["cost_usd"] for c in read_jsonl(cache / "ledger.jsonl")) == pytest.approx(0.10)
        assert len(server.jobs) == 1

        # five more processes on a cap of $0.40: two ask for the same new video, which is made (and paid) once
        prompts = ["a red kite", "a red kite", "a grey boat", "a green field", "a blue door"]
        runs = [_generate(server, cache, prompt, 0.40) for prompt in prompts]
        done = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    billed = Counter(job.prompt for job in server.jobs.values())
    assert max(billed.values()) == 1  # no video was made twice, whichever process asked
    charges = read_jsonl(cache / "ledger.jsonl")
    assert len(charges) == len({c["key"] for c in charges}) == len(server.jobs) <= 4
    assert sum(c["cost_usd"] for c in charges) <= 0.40 + 1e-9
    ok = [prompt for prompt, (code, _, _) in zip(prompts, done, strict=True) if code == 0]
    assert ok.count("a red kite") in (0, 2)  # both askers got the one video, or the cap refused both
    assert all("budget" in err for code, _, err in done if code != 0), done


class Refusing(SyntheticBackend):
    """Refuses prompts that mention a forbidden thing, the way a moderation check would."""

    async def generate(self, prompt, **options):
        if "forbidden" in prompt:
            raise RuntimeError("moderation_blocked")
        return await super().generate(prompt, **options)


def test_a_step_goes_on_with_some_videos_and_stops_with_none(tmp_path):
    rollout = Rollout(Refusing(str(tmp_path / "videos")), [KeepScorer()], out_dir=tmp_path, seconds=0.5, size="32x32")
    rewards = rollout(["a fox", "a fox"], ["A fox at dawn.", "A forbidden fox."])
    assert rewards == [1.0, 1.0]  # the text scorer still judges the rewrite whose video failed
    rows = read_jsonl(tmp_path / "traces.jsonl")
    assert [r["video_path"] is None for r in rows] == [False, True]
    with pytest.raises(RuntimeError, match="every video of the step failed; first error: .*moderation_blocked"):
        rollout(["a fox"], ["Another forbidden fox."])
    assert len(read_jsonl(tmp_path / "traces.jsonl")) == 2  # the failed step wrote no rows
