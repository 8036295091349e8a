"""Human ratings: pairs from eval results, Bradley-Terry strengths with intervals, SQLite that survives a restart,
the rating API with many raters at once, CSV export, and ten pairs rated in a real headless browser."""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from enhancer.eval.rate import RatingStore, bradley_terry, load_rating_pairs, next_pair, scores

from browser import chromium
from conftest import BIN
from local_http import call


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
            shown.append(int(driver.find_element(By.ID, "task").get_attribute("data-pair")))
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


def test_videos_are_served_by_pair_never_by_path(tmp_path):
    import urllib.error
    import urllib.request

    from enhancer.plugins.synthetic import render
    from enhancer.serve.rate import create_rating_app
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
    pairs = load_rating_pairs(tmp_path / "eval")
    assert pairs[0].public()["video_a"] is True and "video" not in json.dumps(pairs[0].public()).replace("video_", "")
    server, thread, url = _serve(create_rating_app(pairs, RatingStore(tmp_path / "r.sqlite")))
    try:
        with urllib.request.urlopen(f"{url}/api/video/0/a", timeout=30) as response:
            assert response.headers["content-type"] == "video/mp4"
            assert response.read() == open(pairs[0].video_a, "rb").read()
        for bad in ("/api/video/0/c", "/api/video/7/a", "/api/video/..%2F..%2Fetc%2Fpasswd/a"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + bad, timeout=30)
            assert refused.value.code in (404, 422)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
