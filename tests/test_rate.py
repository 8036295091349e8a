"""Human ratings: pairs from eval results, Bradley-Terry strengths with intervals, SQLite that survives a restart,
the rating API with many raters at once, CSV export, and ten pairs rated in a real headless browser."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import http.client
import json
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from enhancer.eval.rate import PAIR_ID, RatingStore, bradley_terry, load_rating_pairs, next_pair, pair_id, scores

from browser import chromium
from conftest import BIN
from local_http import call
from raw_http import status_for_host


@pytest.fixture()
def results(tmp_path):
    rows = []
    for i in range(8):
        simple = f"a paper boat number {i} on a pond"
        for variant, text in (
            ("raw", simple),
            ("sft", f"A paper boat {i} drifts, wide shot."),
            ("rl", f"Boat {i}."),
        ):
            rows.append({"variant": variant, "id": f"p{i}", "simple": simple, "enhanced": text, "status": "ok"})
    rows.append({"variant": "rl", "id": "p9", "simple": "x", "enhanced": "", "status": "error"})
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_pairs_are_blind_balanced_and_skip_failures(results):
    pairs = load_rating_pairs(results)
    assert len(pairs) == 8 * 3  # three variants: three pairs per prompt; the failed row is left out
    lefts = [p.variant_a for p in pairs]
    assert 0 < lefts.count("raw") < 16  # sides are drawn, not fixed by name order
    assert set(pairs[0].public()) == {"pair", "simple", "a", "b", "video_a", "video_b"}  # no variant names
    assert len(load_rating_pairs(results, ["sft", "rl"])) == 8
    with pytest.raises(ValueError, match="variant\\(s\\) gpt not in"):
        load_rating_pairs(results, ["sft", "gpt"])


def test_bradley_terry_recovers_the_order_with_intervals():
    rng = np.random.default_rng(0)
    truth = {"best": 1.0, "mid": 0.0, "worst": -1.0}
    ratings = []
    for _ in range(300):
        a, b = rng.choice(list(truth), 2, replace=False)
        p = 1 / (1 + np.exp(truth[b] - truth[a]))
        ratings.append({"variant_a": a, "variant_b": b, "winner": "a" if rng.random() < p else "b", "rater": "r"})
    fitted = bradley_terry(ratings)
    assert fitted["best"] > fitted["mid"] > fitted["worst"]
    assert fitted["best"] - fitted["worst"] == pytest.approx(2.0, abs=0.5)
    summary = scores(ratings, resamples=100)
    for row in summary["variants"].values():
        low, high = row["ci95"]
        assert low <= row["strength"] <= high
    assert list(summary["variants"]) == ["best", "mid", "worst"]
    # all ties: equal strengths; one variant that always wins stays finite
    ties = [{"variant_a": "x", "variant_b": "y", "winner": "tie", "rater": "r"}] * 5
    assert bradley_terry(ties) == pytest.approx({"x": 0.0, "y": 0.0})
    sweep = [{"variant_a": "x", "variant_b": "y", "winner": "a", "rater": "r"}] * 5
    assert np.isfinite(list(bradley_terry(sweep).values())).all()


def test_ratings_survive_a_restart_and_export(results, tmp_path):
    pairs = load_rating_pairs(results)
    store = RatingStore(tmp_path / "r.sqlite")
    for pair in pairs[:3]:
        store.add("ana", pair, "a")
    store.close()
    again = RatingStore(tmp_path / "r.sqlite")
    assert [r["pair"] for r in again.rows()] == [p.id for p in pairs[:3]]
    assert next_pair(pairs, again, "ana").id not in {p.id for p in pairs[:3]}
    with pytest.raises(ValueError, match="winner must be one of"):
        again.add("ana", pairs[4], "left")
    result = subprocess.run(
        [str(BIN / "enhancer"), "rate", "export", "--results", str(results), "--db", str(tmp_path / "r.sqlite")]
        + ["--out", str(tmp_path / "r.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["rater"] for r in rows] == ["ana"] * 3 and rows[0]["a"] == pairs[0].text_a


def _serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return server, thread, f"http://{host}:{port}"


def test_many_raters_at_once_and_clear_refusals(results, tmp_path):
    from enhancer.serve.rate import create_rating_app

    pairs = load_rating_pairs(results)
    store = RatingStore(tmp_path / "r.sqlite")
    server, thread, url = _serve(create_rating_app(pairs, store, api_key="k"))
    try:
        assert call(f"{url}/api/next?rater=ana")[0] == 401

        def rater(name):
            for _ in range(6):
                status, pair = call(f"{url}/api/next?rater={name}", key="k")
                assert status == 200 and not pair["done"]
                status, _ = call(f"{url}/api/rate", {"pair": pair["pair"], "winner": "b", "rater": name}, key="k")
                assert status == 200

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(rater, [f"rater{i}" for i in range(6)]))
        assert len(store.rows()) == 36
        assert all(len(store.rated_by(f"rater{i}")) == 6 for i in range(6))  # nobody got a pair twice
        rated = next(r["pair"] for r in store.rows() if r["rater"] == "rater0")
        status, body = call(f"{url}/api/rate", {"pair": rated, "winner": "a", "rater": "rater0"}, "k")
        assert status == 409 and "already rated" in body["error"]
        assert call(f"{url}/api/rate", {"pair": 999, "winner": "a", "rater": "ana"}, "k")[0] == 422
        assert call(f"{url}/api/next?rater=" + "x" * 80, key="k")[0] == 422
        status, summary = call(f"{url}/api/scores", key="k")
        assert status == 200 and summary["ratings"] == 36 and summary["raters"] == 6
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_ten_pairs_rated_in_the_browser(results, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from enhancer.serve.rate import create_rating_app

    pairs = load_rating_pairs(results)
    store = RatingStore(tmp_path / "r.sqlite")
    server, thread, url = _serve(create_rating_app(pairs, store))
    driver = chromium()
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "rater").send_keys("bea")
        driver.find_element(By.ID, "start").click()
        shown = []
        for i in range(10):
            WebDriverWait(driver, 20).until(
                lambda d, i=i: d.find_element(By.ID, "progress").text.startswith(f"rated {i} ")
            )
            shown.append(driver.find_element(By.ID, "task").get_attribute("data-pair"))
            winner = ("a", "b", "tie")[i % 3]
            driver.find_element(By.CSS_SELECTOR, f'#choices button[data-winner="{winner}"]').click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "progress").text.startswith("rated 10 "))
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)
    rows = store.rows()
    assert [r["pair"] for r in rows] == shown and len(set(shown)) == 10
    assert [r["winner"] for r in rows] == [("a", "b", "tie")[i % 3] for i in range(10)]
    assert {r["rater"] for r in rows} == {"bea"}


@pytest.fixture()
def video_results(tmp_path):
    """An eval folder whose two variants have real (tiny) mp4 files for one prompt."""
    from enhancer.plugins.synthetic import render
    from enhancer.video import write_mp4

    rows = []
    for variant in ("sft", "rl"):
        video = write_mp4(render(f"a {variant} kite", seed=0, seconds=1.0, size="64x48"), tmp_path / f"{variant}.mp4")
        rows.append(
            {
                "variant": variant,
                "id": "p0",
                "simple": "a kite",
                "enhanced": f"A {variant} kite.",
                "video_path": str(video),
            }
        )
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "eval"


def test_videos_are_served_by_pair_never_by_path(video_results, tmp_path):
    import urllib.error
    import urllib.request

    from enhancer.serve.rate import create_rating_app

    pairs = load_rating_pairs(video_results)
    assert pairs[0].public()["video_a"] is True and "video" not in json.dumps(pairs[0].public()).replace("video_", "")
    server, thread, url = _serve(create_rating_app(pairs, RatingStore(tmp_path / "r.sqlite")))
    try:
        status, shown = call(f"{url}/api/next?rater=ana")
        assert status == 200 and shown["video_a_url"] == f"/api/video/{pairs[0].id}/a"  # no key: a plain URL
        with urllib.request.urlopen(url + shown["video_a_url"], timeout=30) as response:
            assert response.headers["content-type"] == "video/mp4"
            assert response.read() == open(pairs[0].video_a, "rb").read()
        for bad in (
            f"/api/video/{pairs[0].id}/c",
            "/api/video/0123456789abcdef/a",
            "/api/video/..%2F..%2Fetc%2Fpasswd/a",
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + bad, timeout=30)
            assert refused.value.code in (404, 422)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def _serving(app):
    server, thread, url = _serve(app)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _post(url: str, path: str, body: bytes, chunked: bool = False, piece: int = 16_000):
    """POST `body` (with Content-Length, or Transfer-Encoding: chunked so no size is known up front) and read the
    answer even when the server gives it and hangs up before taking the whole body, as a server refusing an
    oversized body should: a write failing on that closed connection is not the test's verdict, the answer is."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", len(body))))
        connection.endheaders()
        try:
            for i in range(0, len(body), piece):
                part = body[i : i + piece]
                connection.send(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if chunked:
                connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered early; the answer is waiting to be read
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_pair_ids_survive_a_new_variant_and_a_restart(tmp_path):
    from enhancer.serve.rate import create_rating_app

    folder = tmp_path / "eval"
    folder.mkdir()

    def rows(variant, text):
        return "".join(
            json.dumps({"variant": variant, "id": f"p{i}", "simple": f"a kite {i}", "enhanced": text.format(i)}) + "\n"
            for i in range(4)
        )

    (folder / "results.jsonl").write_text(rows("raw", "a kite {}") + rows("sft", "A red kite {} over dunes."))
    before = load_rating_pairs(folder)
    assert all(PAIR_ID.fullmatch(p.id) for p in before) and len({p.id for p in before}) == 4
    # the id is the pair's content, whichever side is shown left
    assert pair_id("p0", ("raw", "x"), ("sft", "y")) == pair_id("p0", ("sft", "y"), ("raw", "x"))
    assert {p.id for p in load_rating_pairs(folder, seed=1)} == {p.id for p in before}
    store = RatingStore(tmp_path / "r.sqlite")
    with _serving(create_rating_app(before, store)) as url:
        status, shown = call(f"{url}/api/next?rater=ana")
        assert status == 200 and shown["pair"] in {p.id for p in before}
        assert call(f"{url}/api/rate", {"pair": shown["pair"], "winner": "a", "rater": "ana"})[0] == 200
        for bad in (3, "3", "0123456789ABCDEF", "0123456789abcdef0", "0123456789abcdef\n"):  # old id, case, length
            status, body = call(f"{url}/api/rate", {"pair": bad, "winner": "a", "rater": "ana"})
            assert status == 422 and "pair:" in body["error"], bad
        assert call(f"{url}/api/next?rater=ana")[0] == 200  # still serving
    store.close()
    rated = shown["pair"]
    position = [p.id for p in before].index(rated)

    with (folder / "results.jsonl").open("a") as results:
        results.write(rows("rl", "Kite {}."))
    after = load_rating_pairs(folder)
    assert len(after) == 12
    by_id = {p.id: p for p in after}
    for pair in before:  # same id, same sides: adding a variant neither re-labels nor flips a pair
        assert (by_id[pair.id].variant_a, by_id[pair.id].text_a) == (pair.variant_a, pair.text_a)
    other = after[position]  # the pair that now sits where the rated one was (it had this id when ids were positions)
    assert other.id != rated

    store = RatingStore(tmp_path / "r.sqlite")
    with _serving(create_rating_app(after, store)) as url:
        status, shown = call(f"{url}/api/next?rater=ana")
        assert status == 200 and shown["rated"] == 1 and shown["pair"] != rated
        status, body = call(f"{url}/api/rate", {"pair": rated, "winner": "b", "rater": "ana"})
        assert status == 409 and "already rated" in body["error"]
        status, body = call(f"{url}/api/rate", {"pair": other.id, "winner": "b", "rater": "ana"})
        assert status == 200 and body["rated"] == 2
    assert [r["pair"] for r in store.rows()] == [rated, other.id]


def test_an_old_database_with_position_ids_opens_and_still_counts(results, tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "old.sqlite")
    old.execute(
        "CREATE TABLE ratings (id INTEGER PRIMARY KEY, time REAL, rater TEXT, pair INTEGER, "
        "prompt_id TEXT, variant_a TEXT, variant_b TEXT, winner TEXT)"
    )
    old.execute("INSERT INTO ratings VALUES (1, 0.0, 'ana', 3, 'p1', 'raw', 'sft', 'b')")
    old.commit()
    old.close()
    pairs = load_rating_pairs(results)
    store = RatingStore(tmp_path / "old.sqlite")
    assert store.rows()[0]["pair"] == "3" and store.rows()[0]["variant_b"] == "sft"  # readable, matches no pair
    assert next_pair(pairs, store, "ana") is not None and store.rated_by("ana") == {"3"}
    digits = dataclasses.replace(pairs[0], id="0123456789012345")  # all digits: an INTEGER column would mangle it
    store.add("ana", digits, "a")
    assert store.rated_by("ana") == {"3", "0123456789012345"}
    assert scores(store.rows(), resamples=10)["ratings"] == 2  # the old row still counts: it names its variants


def test_oversized_bodies_get_413_and_the_server_keeps_serving(results, tmp_path):
    from enhancer.serve.rate import create_rating_app

    pairs = load_rating_pairs(results)
    with _serving(create_rating_app(pairs, RatingStore(tmp_path / "r.sqlite"))) as url:
        status, body = _post(url, "/api/rate", b'{"rater": "' + b"x" * 1_000_000 + b'"}')
        assert status == 413 and "limit is 16000" in body["error"]
        assert call(f"{url}/api/next?rater=ana")[0] == 200
        # refused on its declared size alone: the answer comes though the body is never sent
        parts = urlsplit(url)
        announced = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        announced.putrequest("POST", "/api/rate")
        announced.putheader("Content-Length", "1000000")
        announced.endheaders()
        response = announced.getresponse()
        assert response.status == 413 and "limit is 16000" in json.loads(response.read())["error"]
        announced.close()
        status, body = _post(url, "/api/rate", b'{"rater": "' + b"x" * 1_000_000 + b'"}', chunked=True)
        assert status == 413 and "limit is 16000" in body["error"]  # no Content-Length: counted as it arrives
        status, shown = call(f"{url}/api/next?rater=ana")
        assert status == 200 and not shown["done"]
        small = json.dumps({"pair": shown["pair"], "winner": "tie", "rater": "ana"}).encode()
        assert _post(url, "/api/rate", small, chunked=True) == (200, {"ok": True, "rated": 1})  # small chunked is fine
        # a Content-Length that is no byte count: a 400 (uvicorn's parser refuses it before the app sees it)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as raw:
            raw.sendall(b"POST /api/rate HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}")
            assert raw.recv(100).split(b" ")[1] == b"400"
        assert call(f"{url}/api/next?rater=ana")[0] == 200
    with _serving(create_rating_app(pairs, RatingStore(tmp_path / "r.sqlite"), max_body_bytes=50)) as url:
        status, body = call(
            f"{url}/api/rate", {"pair": pairs[1].id, "winner": "tie", "rater": "someone-with-a-long-name"}
        )
        assert status == 413 and "limit is 50" in body["error"]


def test_signed_video_links_play_without_a_header_and_nothing_else_does(video_results, tmp_path):
    import urllib.error
    import urllib.request

    from enhancer.serve.rate import create_rating_app, sign_video

    def fetch(path):
        try:
            with urllib.request.urlopen(url + path, timeout=30) as response:
                return response.status, response.headers["content-type"], response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["content-type"], json.loads(error.read())

    pairs = load_rating_pairs(video_results)
    with _serving(create_rating_app(pairs, RatingStore(tmp_path / "r.sqlite"), api_key="k")) as url:
        status, shown = call(f"{url}/api/next?rater=ana", key="k")
        assert status == 200 and shown["video_a_url"].startswith(f"/api/video/{shown['pair']}/a?token=")
        assert fetch(shown["video_a_url"]) == (200, "video/mp4", open(pairs[0].video_a, "rb").read())
        assert fetch(shown["video_b_url"])[2] == open(pairs[0].video_b, "rb").read()

        query = parse_qs(urlsplit(shown["video_a_url"]).query)
        token, expires = query["token"][0], int(query["expires"][0])
        flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
        past = int(time.time()) - 60
        refused = {
            "tampered": f"/api/video/{shown['pair']}/a?token={flipped}&expires={expires}",
            "other side": f"/api/video/{shown['pair']}/b?token={token}&expires={expires}",
            "expired": f"/api/video/{shown['pair']}/a?token={sign_video('k', shown['pair'], 'a', past)}&expires={past}",
            "no token": f"/api/video/{shown['pair']}/a",
            "token on another route": f"/api/next?rater=ana&token={token}&expires={expires}",
        }
        for why, path in refused.items():
            status, _, body = fetch(path)
            assert status == 401 and body["error"], why
        assert "expired" in fetch(refused["expired"])[2]["error"]
        assert call(f"{url}/api/next?rater=ana", key="k")[0] == 200  # still serving


def test_without_a_key_only_loopback_host_names_are_answered(results, tmp_path):
    from enhancer.serve.rate import create_rating_app

    pairs = load_rating_pairs(results)
    with _serving(create_rating_app(pairs, RatingStore(tmp_path / "r.sqlite"))) as url:
        port = urlsplit(url).port
        for host, expected in (("attacker.example", 403), (f"attacker.example:{port}", 403), ("localhost", 200)):
            status, body = status_for_host(port, "GET", "/api/next?rater=ana", host)
            assert status == expected, (host, body)
            if expected == 403:
                assert "--api-key" in body["error"]
        assert call(f"{url}/api/next?rater=ana")[0] == 200  # 127.0.0.1:PORT, as every local client sends it
