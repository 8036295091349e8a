"""Data tooling: schema errors with file:line, loaders for every format, validate, stats, synth against a real
local chat server; and the project's own data passes `enhancer data validate data/`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from enhancer.data import (
    DataError,
    load_eval,
    load_hf_pairs,
    load_original_pairs,
    load_original_prompts,
    load_pairs,
    load_prompts,
)
from enhancer.data.schema import check_stage1
from enhancer.data.stats import card
from enhancer.data.synth import synth
from enhancer.data.validate import validate

from chat_server import ChatServer
from conftest import BIN, REPO

STARTER = [json.loads(line) for line in (REPO / "data/stage1/starter.jsonl").read_text().splitlines()]


def _write(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_malformed_rows_are_named_by_file_and_line(tmp_path):
    good = STARTER[0]
    path = _write(
        tmp_path / "stage1" / "bad.jsonl",
        [
            good,
            '{"simple": "broken',
            {k: v for k, v in good.items() if k != "detailed"},
            {**good, "style": "vaporwave"},
            {**good, "simple": "  "},
        ],
    )
    with pytest.raises(DataError) as error:
        load_pairs([path])
    assert error.value.problems == [
        f"{path}:2: invalid JSON (Unterminated string starting at at column 12)",
        f"{path}:3: missing or empty 'detailed'",
        f"{path}:4: unknown style 'vaporwave'; valid: realistic, cinematic, anime, 3d-animation, 2d-cartoon, "
        "pixel-art, claymation, watercolor, low-poly, film-noir",
        f"{path}:5: missing or empty 'simple'",
    ]


def test_schema_checks_form_length_and_quotes():
    row = next(r for r in STARTER if r["target"] == "structured")
    assert check_stage1(row) == []
    assert (
        "expected Subject, Action" in check_stage1({**row, "detailed": row["detailed"].replace("Lens:", "Optics:")})[0]
    )
    short = {**row, "target": "paragraph", "detailed": "A fox runs."}
    assert check_stage1(short) == ["paragraph detailed prompt has 3 words; expected 60-120"]
    quoted = {**row, "simple": 'a sign that says "CLOSED"'}
    assert 'quoted text "CLOSED" from simple is not verbatim in detailed' in check_stage1(quoted)


def test_original_project_formats(tmp_path):
    shard = tmp_path / "pairs.json"
    shard.write_text(
        json.dumps(
            {
                "pair_01": {"lay": "a fox", "elaborate": STARTER[0]["detailed"]},
                "pair_02": {"lay": "", "elaborate": "x"},
            }
        )
    )
    with pytest.raises(DataError, match=f"{shard}:pair_02: missing or empty 'lay'"):
        load_original_pairs(shard)
    shard.write_text(json.dumps({"pair_01": {"lay": "a fox", "elaborate": STARTER[1]["detailed"]}}))
    pairs = load_original_pairs(shard)
    assert (pairs[0].id, pairs[0].simple, pairs[0].form) == ("pair_01", "a fox", STARTER[1]["target"])
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(["a cat", "  a dog "]))
    assert load_original_prompts(prompts) == ["a cat", "a dog"]
    prompts.write_text(json.dumps(["a cat", 3]))
    with pytest.raises(DataError, match=r"prompts.json:\[1\]: expected a non-empty string"):
        load_original_prompts(prompts)


def test_hugging_face_datasets(tmp_path):
    from datasets import Dataset

    dataset = Dataset.from_list([{"input": r["simple"], "output": r["detailed"]} for r in STARTER[:3]])
    assert [p.simple for p in load_hf_pairs(dataset, simple="input", detailed="output")] == [
        r["simple"] for r in STARTER[:3]
    ]
    dataset.save_to_disk(str(tmp_path / "saved"))
    assert len(load_hf_pairs(tmp_path / "saved", simple="input", detailed="output")) == 3
    with pytest.raises(DataError, match="no column"):
        load_hf_pairs(dataset)
    broken = Dataset.from_list([{"simple": "a", "detailed": "b"}, {"simple": "", "detailed": "c"}])
    with pytest.raises(DataError, match=r"dataset\[1\]: missing or empty 'simple'"):
        load_hf_pairs(broken)


def test_validate_finds_duplicates_and_overlap_between_splits(tmp_path):
    _write(tmp_path / "stage1" / "a.jsonl", STARTER[:3] + [{**STARTER[3], "id": STARTER[0]["id"]}])
    _write(
        tmp_path / "stage2" / "b.jsonl",
        [
            {"id": "rl-1", "simple": STARTER[1]["simple"].upper() + "!"},  # the same prompt, shouted
            {"id": "rl-2", "simple": "cat sleeping on the sunny windowsill"},  # STARTER[0] reworded: cosine 0.95
            {"id": "rl-3", "simple": "a submarine surfacing beside an iceberg"},
        ],
    )
    _write(
        tmp_path / "eval" / "c.jsonl",
        [
            {
                "id": "e-1",
                "simple": "three red kites",
                "keep": ["three", "kites", "blue"],
                "style": None,
                "quote": [],
                "kind": "normal",
            },
        ],
    )
    report = validate([str(tmp_path)])
    text = "\n".join(report.problems)
    assert f"a.jsonl:4: duplicate id '{STARTER[0]['id']}'" in text
    assert "b.jsonl:1: duplicate simple prompt (first at" in text
    assert "b.jsonl:2: across splits: simple is 0.9" in text
    assert "c.jsonl:1: keep word 'blue' does not occur in simple" in text
    assert not any("b.jsonl:3" in p for p in report.problems)
    result = subprocess.run(
        [str(BIN / "enhancer"), "data", "validate", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and result.stdout.splitlines() == report.problems


def test_stats_card_counts(tmp_path):
    _write(tmp_path / "stage1" / "a.jsonl", STARTER[:10])
    _write(tmp_path / "stage2" / "b.jsonl", [{"id": "rl-1", "simple": "a submarine"}])
    text = card([str(tmp_path)])
    assert "| stage1 | 10 |" in text and "| stage2 | 1 |" in text
    structured = sum(r["target"] == "structured" for r in STARTER[:10])
    assert f"| **all** | {structured} | {10 - structured} | 10 |" in text
    assert "most common five-word opening" in text and "distinct-2" in text


def test_synth_against_a_local_teacher(tmp_path):
    pool = _write(tmp_path / "data" / "stage1" / "pool.jsonl", STARTER[:10])
    fields = ("simple", "detailed", "negative")
    fresh = {form: [r for r in STARTER[10:] if r["target"] == form] for form in ("structured", "paragraph")}
    in_pool = {form: next(r for r in STARTER[:10] if r["target"] == form) for form in ("structured", "paragraph")}
    scripted = [
        lambda form: "I'm sorry, here you go: a fox",
        lambda form: json.dumps({"simple": "a fox", "detailed": "Too short.", "negative": "blur"}),
        lambda form: json.dumps({k: in_pool[form][k] for k in fields}),  # a pair the data already has
    ]
    asked: list[str] = []

    def teacher(body):
        form = "structured" if "labelled sections" in body["messages"][-1]["content"] else "paragraph"
        asked.append(form)
        if len(asked) <= len(scripted):
            return scripted[len(asked) - 1](form)
        row = fresh[form].pop(0)
        return "```json\n" + json.dumps({k: row[k] for k in fields}) + "\n```"

    out = tmp_path / "data" / "stage1" / "synth.jsonl"
    with ChatServer(responder=teacher) as server:
        # realistic and cinematic only: a scripted idea without a style name would be an imposed style otherwise
        default = ["realistic", "cinematic"]
        first = synth(
            server.base_url,
            "teacher",
            3,
            out,
            pool=[str(pool)],
            against=[str(tmp_path / "data")],
            styles=default,
            log=lambda m: None,
        )
        assert (first.written, first.requests) == (3, 6)
        too_short = f"{asked[1]} detailed prompt has 2 words"
        assert dict(first.rejected) == {"not a JSON object": 1, too_short: 1, "duplicate or near-duplicate": 1}
        second = synth(
            server.base_url,
            "teacher",
            4,
            out,
            pool=[str(pool)],
            against=[str(tmp_path / "data")],
            styles=default,
            log=lambda m: None,
        )
    assert (second.already, second.written) == (3, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["synth-00001", "synth-00002", "synth-00003", "synth-00004"]
    assert all(check_stage1(r) == [] for r in rows)
    assert len({r["simple"] for r in rows}) == 4
    assert validate([str(tmp_path / "data")]).problems == []


def test_validate_flags_pairs_that_drop_the_users_words_or_impose_a_style():
    from enhancer.data.validate import facts_dropped

    detailed = "A beagle kneads dough in a farmhouse kitchen, flour drifting through warm window light."
    row = {"simple": "dog baking bread", "detailed": detailed, "style": "realistic"}
    assert facts_dropped(row) == ["word(s) of simple missing in detailed: baking, bread, dog"]
    kept = "A dog baking bread in a farmhouse kitchen, flour drifting through warm window light."
    assert facts_dropped({**row, "detailed": kept}) == []
    assert facts_dropped({**row, "simple": "dog bakng bread", "detailed": kept}) == []  # the typo fixed
    [imposed] = facts_dropped({**row, "detailed": kept, "style": "claymation"})
    assert imposed.startswith("detailed is claymation but simple never asks for it")
    clay = {**row, "simple": "claymation dog baking bread", "detailed": kept, "style": "claymation"}
    assert facts_dropped(clay) == [
        "word(s) of simple missing in detailed: claymation",
        "simple asks for claymation but detailed never names it",
    ]
    assert facts_dropped({**clay, "detailed": "A claymation " + kept[2:]}) == []


def test_project_data_is_valid_and_disjoint():
    report = validate([str(REPO / "data")])
    assert report.problems == [], "\n".join(report.problems[:20])
    assert load_prompts([REPO / "data" / "stage2"]) and load_pairs([REPO / "data" / "stage1"])
    if (REPO / "data" / "eval").exists():
        assert load_eval([REPO / "data" / "eval"])


def test_quotes_in_a_json_prompt_are_syntax_not_text_to_render():
    from enhancer.data.schema import quoted

    assert quoted('{"prompt": "a red fox", "seed": 42}') == []
    assert quoted('a sign that says "OPEN" and "CLOSED"') == ["OPEN", "CLOSED"]
