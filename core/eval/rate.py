"""Human ratings: pairwise A/B judgements of two variants' outputs for the same prompt, stored in SQLite, and
Bradley-Terry strengths with bootstrap confidence intervals (`enhancer rate serve|scores|export`).

Pairs come from an eval folder's results.jsonl: for every prompt, every two variants whose outputs both
succeeded (or a chosen subset of variants). A pair's id is derived from its content (`pair_id`: the prompt, the two
variant names and their texts), not from its position in the list, so adding a variant to the results (or a
rerun that changes other rows) leaves every existing pair's id, and the ratings stored under it, as they were.
Which output shows on the left is drawn per pair from that id, so a rater's side bias does not favour a variant and
no pair changes sides when others come or go. Each rating is one committed row, so a restart loses nothing, and
many raters can rate at once. A row with a `video_path` (a results file that has videos) shows the videos.

Databases from before content ids stored list positions (0, 1, 2, ...) in an INTEGER `pair` column. Opening one
rebuilds the table once with a TEXT column (so an all-digit hex id is never turned into a number); its old rows
keep their ids as text ("3"), which match no pair any more (those pairs show as unrated again), while `scores`
and `export` still count them: they read the variant names and winner stored in each row, not the pair id.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import random
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINNERS = ("a", "b", "tie")
PAIR_ID = re.compile(r"^[0-9a-f]{16}$")  # what pair_id returns; the API refuses anything else up front
# The ratings table. `pair` is TEXT: an INTEGER column would turn an all-digit hex id into a number.
COLUMNS = (
    "id INTEGER PRIMARY KEY, time REAL, rater TEXT, pair TEXT, prompt_id TEXT, variant_a TEXT, variant_b TEXT, "
    "winner TEXT"
)


def pair_id(prompt_id: str, first: tuple[str, str], second: tuple[str, str]) -> str:
    """A pair's stable id from its content: the prompt id and two (variant, text) sides, in name order so the id
    does not depend on which side is shown left. 16 hex digits (64 bits) of sha256: no collision in any
    realistic number of pairs. JSON keeps the fields apart (no text can fake a field boundary)."""
    (name_1, text_1), (name_2, text_2) = sorted([first, second])
    content = json.dumps([prompt_id, name_1, text_1, name_2, text_2], ensure_ascii=False)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


@dataclass
class RatingPair:
    id: str  # pair_id(...): stable across reloads
    prompt_id: str
    simple: str
    variant_a: str
    text_a: str
    variant_b: str
    text_b: str
    video_a: str | None = None
    video_b: str | None = None

    def public(self) -> dict:
        """What the rater sees: no variant names (the judgement stays blind), no file paths."""
        return {
            "pair": self.id,
            "simple": self.simple,
            "a": self.text_a,
            "b": self.text_b,
            "video_a": bool(self.video_a),
            "video_b": bool(self.video_b),
        }


def load_rating_pairs(results_dir: str | Path, variants: list[str] | None = None, seed: int = 0) -> list[RatingPair]:
    path = Path(results_dir) / "results.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results here; run `enhancer eval` first and give its --out folder")
    by_prompt: dict[str, dict[str, dict]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("status", "ok") != "ok" or (variants and row["variant"] not in variants):
            continue
        by_prompt.setdefault(row["id"], {})[row["variant"]] = row
    found = sorted({v for rows in by_prompt.values() for v in rows})
    if variants and set(variants) - set(found):
        raise ValueError(f"variant(s) {', '.join(sorted(set(variants) - set(found)))} not in {path}; it has {found}")
    pairs: list[RatingPair] = []
    for prompt_id in sorted(by_prompt):
        rows = by_prompt[prompt_id]
        for left, right in itertools.combinations(sorted(rows), 2):
            if rows[left]["enhanced"].strip() == rows[right]["enhanced"].strip():
                continue  # nothing to choose between
            key = pair_id(prompt_id, (left, rows[left]["enhanced"]), (right, rows[right]["enhanced"]))
            # Seeded by the pair itself, not by a shared sequence: another variant's pairs do not shift this draw.
            if random.Random(f"{seed}/{key}").random() < 0.5:
                left, right = right, left
            a, b = rows[left], rows[right]
            pairs.append(
                RatingPair(
                    key,
                    prompt_id,
                    a["simple"],
                    left,
                    a["enhanced"],
                    right,
                    b["enhanced"],
                    a.get("video_path"),
                    b.get("video_path"),
                )
            )
    if not pairs:
        raise ValueError(f"{path}: no pair of differing outputs to rate (need two variants per prompt)")
    return pairs


class RatingStore:
    """Ratings in SQLite (WAL): one committed row each; safe for many threads of one server."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"CREATE TABLE IF NOT EXISTS ratings ({COLUMNS})")
        self.db.commit()
        self._upgrade_pair_column()

    def _upgrade_pair_column(self) -> None:
        """Before content ids, `pair` was declared INTEGER; SQLite would store an all-digit id such as
        "0123456789012345" in such a column as the number 123456789012345, which then matches nothing. Rebuild
        that table once with `pair TEXT`; the old rows keep their (position) ids as text."""
        declared = {row[1]: row[2].upper() for row in self.db.execute("PRAGMA table_info(ratings)")}
        if declared.get("pair") == "TEXT":
            return
        with self.lock:
            self.db.executescript(
                "BEGIN; ALTER TABLE ratings RENAME TO ratings_before_content_ids; "
                f"CREATE TABLE ratings ({COLUMNS}); "
                "INSERT INTO ratings (id, time, rater, pair, prompt_id, variant_a, variant_b, winner) "
                "SELECT id, time, rater, pair, prompt_id, variant_a, variant_b, winner "
                "FROM ratings_before_content_ids; "
                "DROP TABLE ratings_before_content_ids; COMMIT;"
            )

    def add(self, rater: str, pair: RatingPair, winner: str) -> None:
        if winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {winner!r}")
        with self.lock:
            self.db.execute(
                "INSERT INTO ratings (time, rater, pair, prompt_id, variant_a, variant_b, winner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), rater, pair.id, pair.prompt_id, pair.variant_a, pair.variant_b, winner),
            )
            self.db.commit()

    def rows(self) -> list[dict]:
        with self.lock:
            cursor = self.db.execute(
                "SELECT id, time, rater, pair, prompt_id, variant_a, variant_b, winner FROM ratings ORDER BY id"
            )
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def rated_by(self, rater: str) -> set[str]:
        with self.lock:
            return {r[0] for r in self.db.execute("SELECT pair FROM ratings WHERE rater = ?", (rater,))}

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.db.execute("SELECT pair, COUNT(*) FROM ratings GROUP BY pair").fetchall())

    def close(self) -> None:
        self.db.close()


def next_pair(pairs: list[RatingPair], store: RatingStore, rater: str, seed: int = 0) -> RatingPair | None:
    """A pair this rater has not rated, among the least-rated ones (so ratings spread over all pairs)."""
    done = store.rated_by(rater)
    counts = store.counts()
    open_pairs = [p for p in pairs if p.id not in done]
    if not open_pairs:
        return None
    fewest = min(counts.get(p.id, 0) for p in open_pairs)
    candidates = [p for p in open_pairs if counts.get(p.id, 0) == fewest]
    return random.Random(f"{seed}-{rater}-{len(done)}").choice(candidates)


def bradley_terry(ratings: list[dict], iterations: int = 500) -> dict[str, float]:
    """Bradley-Terry strengths by the MM algorithm (Hunter 2004); a tie is half a win each way. Returned on a log
    scale centred at 0; a variant that never won or never lost is pulled in by a weak prior (one tie against a
    virtual average opponent), so every strength is finite."""
    names = sorted({r["variant_a"] for r in ratings} | {r["variant_b"] for r in ratings})
    index = {n: i for i, n in enumerate(names)}
    k = len(names) + 1  # the last one is the virtual opponent
    wins = np.zeros((k, k))
    for r in ratings:
        a, b = index[r["variant_a"]], index[r["variant_b"]]
        if r["winner"] == "a":
            wins[a, b] += 1
        elif r["winner"] == "b":
            wins[b, a] += 1
        else:
            wins[a, b] += 0.5
            wins[b, a] += 0.5
    wins[:-1, -1] += 0.5
    wins[-1, :-1] += 0.5
    games = wins + wins.T
    strength = np.ones(k)
    for _ in range(iterations):
        total = wins.sum(axis=1)
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        updated = total / denominator
        updated[-1] = 1.0  # the virtual opponent anchors the scale
        if np.allclose(updated, strength, rtol=1e-9, atol=1e-12):
            strength = updated
            break
        strength = updated
    logs = np.log(strength[:-1])
    logs -= logs.mean()
    return {name: float(logs[i]) for name, i in index.items()}


def scores(ratings: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    """Strengths with 95% bootstrap intervals (resampling ratings), win rates and rating counts per variant."""
    if not ratings:
        return {"ratings": 0, "variants": {}}
    point = bradley_terry(ratings)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(resamples):
        sample = [ratings[i] for i in rng.integers(0, len(ratings), len(ratings))]
        fitted = bradley_terry(sample, iterations=200)
        for name in point:
            if name in fitted:
                draws[name].append(fitted[name])
    out = {}
    for name, value in sorted(point.items(), key=lambda item: -item[1]):
        played = [r for r in ratings if name in (r["variant_a"], r["variant_b"])]
        won = sum(
            1.0
            if (r["winner"] == "a") == (r["variant_a"] == name) and r["winner"] != "tie"
            else 0.5 * (r["winner"] == "tie")
            for r in played
        )
        low, high = np.percentile(draws[name], [2.5, 97.5]) if draws[name] else (float("nan"), float("nan"))
        out[name] = {
            "strength": round(value, 4),
            "ci95": [round(float(low), 4), round(float(high), 4)],
            "ratings": len(played),
            "win_rate": round(won / len(played), 4) if played else None,
        }
    return {"ratings": len(ratings), "raters": len({r["rater"] for r in ratings}), "variants": out}


def export_csv(store: RatingStore, pairs: list[RatingPair] | None, out: str | Path) -> Path:
    """Every rating as a CSV row, with the two texts when the pairs are given."""
    by_id = {p.id: p for p in pairs or []}
    out = Path(out)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "time", "rater", "pair", "prompt_id", "variant_a", "variant_b", "winner", "simple", "a", "b"]
        )
        for row in store.rows():
            pair = by_id.get(row["pair"])
            writer.writerow(
                [row[k] for k in ("id", "time", "rater", "pair", "prompt_id", "variant_a", "variant_b", "winner")]
                + ([pair.simple, pair.text_a, pair.text_b] if pair else ["", "", ""])
            )
    return out
