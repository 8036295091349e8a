"""`enhancer data synth`: grow stage-1 data with a teacher LLM over any OpenAI-compatible endpoint.

    enhancer data synth --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-72B-Instruct --n 200 \
        --out data/stage1/synth.jsonl

Each request shows the teacher a few of our own pairs of the wanted style and form, and asks for one new pair
as JSON. A reply becomes a row only if it passes the same checks as `enhancer data validate` (schema, form,
length, kept quotes and counts) and is neither a duplicate nor a near-duplicate (MiniLM cosine > 0.92) of any
prompt already in the data or written before. Rows are appended as they pass, so a killed run resumes
where it stopped; ids are synth-00001, synth-00002, ...
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from enhancer import logs
from enhancer.data.loaders import read_lines
from enhancer.data.schema import FIELDS, FORMS, SECTIONS, STYLES, check_stage1
from enhancer.data.validate import NEAR_DUPLICATE, facts_dropped, numbers_in
from enhancer.files import append_jsonl, cut_torn_tail

TEACHER_INSTRUCTION = (
    "You write training data for a text-to-video prompt enhancer. Each item pairs a short idea as a real user "
    "would type it (`simple`) with the detailed prompt a skilled cinematographer would write for it "
    "(`detailed`), plus a short comma-separated negative prompt (`negative`). The detailed prompt keeps every "
    "fact of the idea in the user's own words, not synonyms (subjects, actions, counts, colours, quoted text "
    "verbatim, style); unless the style is realistic or cinematic, the idea names it. It adds shot, camera move, lens, "
    "lighting, palette, motion and atmosphere in words that suit the style. Invent a new idea unlike the "
    "examples. Reply with one JSON object with the keys simple, detailed, negative and nothing else."
)


@dataclass
class SynthSummary:
    written: int = 0
    already: int = 0
    requests: int = 0
    rejected: Counter = field(default_factory=Counter)

    def line(self) -> str:
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.rejected.most_common())
        return (
            f"synth: wrote {self.written} new rows ({self.already} were already there) from {self.requests} "
            f"requests; rejected {sum(self.rejected.values())}" + (f" ({reasons})" if reasons else "")
        )


def form_rule(target: str) -> str:
    if target == "structured":
        return "labelled sections, one per line: " + ", ".join(f"{s}:" for s in SECTIONS) + ", 70-150 words"
    return "one paragraph, no line breaks, 60-120 words"


def teacher_messages(style: str, target: str, examples: list[dict]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": TEACHER_INSTRUCTION}]
    for example in examples:
        messages.append(
            {"role": "user", "content": f"style: {example['style']}; detailed form: {form_rule(example['target'])}"}
        )
        messages.append(
            {
                "role": "assistant",
                "content": json.dumps({k: example[k] for k in ("simple", "detailed", "negative")}, ensure_ascii=False),
            }
        )
    messages.append({"role": "user", "content": f"style: {style}; detailed form: {form_rule(target)}"})
    return messages


def parse_reply(text: str) -> dict | None:
    """The JSON object in a reply, tolerating code fences and text around it."""
    match = re.search(r"\{.*\}", text, re.S)
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def synth(
    base_url: str,
    model: str,
    n: int,
    out: str | Path,
    *,
    pool: list[str],
    against: list[str],
    api_key: str | None = None,
    styles: list[str] | None = None,
    shots: int = 3,
    seed: int = 0,
    near_duplicate: float = NEAR_DUPLICATE,
    max_requests: int | None = None,
    timeout: float = 120.0,
    log=logs.info,
) -> SynthSummary:
    from openai import OpenAI

    from enhancer.data.embeddings import embed

    out = Path(out)
    problems: list[str] = []
    examples = [line.data for line in read_lines(pool, problems) if set(line.data) >= set(FIELDS["stage1"])]
    if not examples:
        raise ValueError(f"no stage-1 pairs to show the teacher in {', '.join(pool)}")
    known = [line.data["simple"] for line in read_lines(against, problems) if isinstance(line.data.get("simple"), str)]
    cut_torn_tail(out)  # a run killed mid-write: its torn last row goes (the file is truncated, not rewritten)
    done = [line.data for line in read_lines([out], problems)] if out.exists() and out.stat().st_size else []
    known += [row["simple"] for row in done if row.get("simple")]
    summary = SynthSummary(already=len(done))
    normal = {re.sub(r"\W+", " ", k.lower()).strip() for k in known}
    vectors = embed(known)
    client = OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=2, timeout=timeout)
    rng = random.Random(seed + len(done))
    next_id = len(done) + 1
    max_requests = max_requests or 4 * n
    out.parent.mkdir(parents=True, exist_ok=True)
    while summary.already + summary.written < n and summary.requests < max_requests:
        style, target = rng.choice(styles or list(STYLES)), rng.choice(FORMS)
        matching = [e for e in examples if e["style"] == style and e["target"] == target] or examples
        shown = rng.sample(matching, k=min(shots, len(matching)))
        summary.requests += 1
        try:
            response = client.chat.completions.create(
                model=model,
                messages=teacher_messages(style, target, shown),
                temperature=0.9,
                seed=rng.randrange(2**31),
            )
            reply = response.choices[0].message.content or ""
        except Exception as error:  # the endpoint failed after retries: count it, keep going
            summary.rejected[f"request failed ({type(error).__name__})"] += 1
            continue
        value = parse_reply(reply)
        if value is None:
            summary.rejected["not a JSON object"] += 1
            continue
        row = {
            "id": f"synth-{next_id:05d}",
            "simple": value.get("simple"),
            "detailed": value.get("detailed"),
            "style": style,
            "target": target,
            "negative": value.get("negative"),
        }
        found = check_stage1(row)
        if not found and numbers_in(row["simple"]) - numbers_in(row["detailed"]):
            found = ["a count from simple is missing in detailed"]
        if not found:
            # a pair that drops the user's words (or imposes a style) teaches the student to do the same
            found = [p.split(":")[0] for p in facts_dropped(row)]
        if found:
            summary.rejected[found[0].split(";")[0]] += 1
            continue
        key = re.sub(r"\W+", " ", row["simple"].lower()).strip()
        vector = embed([row["simple"]])
        if key in normal or (len(vectors) and float((vectors @ vector.T).max()) > near_duplicate):
            summary.rejected["duplicate or near-duplicate"] += 1
            continue
        append_jsonl(out, [row])
        normal.add(key)
        vectors = np.vstack([vectors, vector]) if len(vectors) else vector
        summary.written += 1
        next_id += 1
        log(f"synth: {summary.already + summary.written}/{n} {row['id']} ({style}, {target})")
    return summary
