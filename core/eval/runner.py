"""`enhancer eval`: every variant over the eval prompts, every output scored, one JSONL row per (variant, prompt),
then a summary with means, bootstrap 95% CIs, paired win rates and per-style and per-kind breakdowns.

    enhancer eval --prompts data/eval --variant raw --variant base=embedded-base \
        --variant baseline=baseline-system-prompt --out runs/eval     # CPU, about 10 minutes on 2 cores

Rows are appended as each chunk is scored, so a killed run resumes where it stopped (`--resume` is implied when
the output folder has rows: rows already there for a variant and prompt id are kept, not redone).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from enhancer import logs
from enhancer.contracts import Sample
from enhancer.data import EvalPrompt, load_eval
from enhancer.eval.config import DEFAULT_SCORERS
from enhancer.eval.statistics import bootstrap_mean, paired_difference, paired_win_rate
from enhancer.eval.variants import Variant
from enhancer.files import append_jsonl, cut_torn_tail, read_jsonl
from enhancer.registry import PluginRegistry
from enhancer.scoring import CleanScorer, CoverageScorer, combine
from enhancer.scoring.instructions import echo_problems, split_idea


def _generate(variant: Variant, enhancer, prompts: list[EvalPrompt], target: str, seed: int) -> list[dict]:
    if variant.kind == "raw":
        return [{"enhanced": p.simple, "status": "ok", "message": "", "seconds": 0.0} for p in prompts]
    rows = enhancer.enhance([p.simple for p in prompts], target=target, seed=seed)
    return [{"enhanced": r.enhanced, "status": r.status, "message": r.message, "seconds": r.seconds} for r in rows]


def _load_enhancer(variant: Variant, batch_size: int, max_new_tokens: int | None, dtype: str | None):
    from enhancer.enhance import Enhancer

    return Enhancer.load(
        model=variant.model,
        adapter=variant.adapter,
        engine=variant.engine,
        base_url=variant.base_url,
        prompt_format=variant.prompt,
        candidates=variant.candidates,
        **({} if variant.temperature is None else {"temperature": variant.temperature}),
        **({} if variant.guard is None else {"guard": variant.guard}),
        **({} if variant.recheck is None else {"recheck": variant.recheck}),
        translator=variant.translator,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        # the recipe's dtype is for the transformers variants: under engine=auto it would force transformers too
        dtype=variant.dtype or (None if variant.engine == "auto" else dtype),
    )


def composite(scores: dict[str, float | None], weights: dict[str, float]) -> float | None:
    value = combine(scores, weights)
    return round(value, 4) if value is not None else None


def evaluate(
    prompts_paths: list[str],
    variants: list[Variant],
    out_dir: str | Path,
    *,
    scorers: list[str] | None = None,
    weights: dict[str, float] | None = None,
    target: str = "generic",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    dtype: str | None = None,
    plugins: list[str] = (),
    command: str | None = None,
    rescore: bool = False,
    log=logs.info,
) -> dict:
    scorers = list(scorers or DEFAULT_SCORERS)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must differ: {', '.join(names)}")
    weights = weights or {}
    registry = PluginRegistry.load(extra_modules=plugins)
    scorer_objects = [registry.create("scorer", name) for name in scorers]
    prompts = load_eval(prompts_paths)[:limit] if limit else load_eval(prompts_paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    done = _done(results_path)
    if rescore and done:
        _rescore(results_path, prompts, scorer_objects, weights, target, log)
    (out / "eval_config.json").write_text(
        json.dumps(
            {
                "prompts": prompts_paths,
                "variants": {v.name: v.describe() for v in variants},
                "scorers": scorers,
                "weights": weights,
                "target": target,
                "limit": limit,
                "seed": seed,
                "n_prompts": len(prompts),
                "dtype": dtype,
                "max_new_tokens": max_new_tokens,
                "batch_size": batch_size,
                "command": command,
            },
            indent=2,
        ),
        encoding="utf-8",
    )

    for variant in variants:
        todo = [p for p in prompts if (variant.name, p.id) not in done]
        if not todo:
            log(f"eval: {variant.name}: all {len(prompts)} prompts already scored")
            continue
        log(f"eval: {variant.name} ({variant.describe()}): {len(todo)} prompts")
        enhancer = None if variant.kind == "raw" else _load_enhancer(variant, batch_size, max_new_tokens, dtype)
        started = time.perf_counter()
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            outputs = _generate(variant, enhancer, chunk, target, seed)
            chunk_scores = _score(chunk, [o["enhanced"] for o in outputs], scorer_objects, target)
            rows = [
                {
                    "variant": variant.name,
                    "id": prompt.id,
                    "simple": prompt.simple,
                    "kind": prompt.kind,
                    "lang": prompt.lang,
                    "style": prompt.style,
                    **output,
                    "scores": scores,
                    "composite": composite(scores, weights),
                }
                for prompt, output, scores in zip(chunk, outputs, chunk_scores, strict=True)
            ]
            append_jsonl(results_path, rows)  # the chunk whole, after cutting a line torn by a kill
            log(
                f"eval: {variant.name}: {min(start + batch_size, len(todo))}/{len(todo)} "
                f"({time.perf_counter() - started:.0f} s)"
            )
        del enhancer
    summary = summarise(
        results_path,
        [v.name for v in variants],
        scorers,
        seed=seed,
        ids={p.id for p in prompts},
        checks=OutputChecks(target),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def _rescore(results_path: Path, prompts: list[EvalPrompt], scorer_objects, weights, target: str, log) -> None:
    """Score the outputs already in results.jsonl again with the current scorers (after a scorer is fixed or
    added): the texts stay, scores and composites are replaced; written to a new file, then moved over."""
    by_id = {p.id: p for p in prompts}
    rows = read_jsonl(results_path)
    known = [row for row in rows if row["id"] in by_id]
    rescored = _score([by_id[row["id"]] for row in known], [row["enhanced"] for row in known], scorer_objects, target)
    changed = 0
    for row, scores in zip(known, rescored, strict=True):
        changed += scores != row["scores"]
        row["scores"], row["composite"] = scores, composite(scores, weights)
    temporary = results_path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    temporary.replace(results_path)
    log(f"eval: rescored {len(known)} rows with {', '.join(s.name for s in scorer_objects)}: {changed} changed")


def _score(prompts: list[EvalPrompt], texts: list[str], scorer_objects, target: str) -> list[dict[str, float]]:
    """Every scorer's score of each text as a rewrite of its prompt: one dict per text, scorer name -> score."""
    samples = [
        Sample(p.simple, text, keep=p.keep, quote=p.quote, style=p.style, target=target, kind=p.kind)
        for p, text in zip(prompts, texts, strict=True)
    ]
    per_scorer = {s.name: s.score(samples) for s in scorer_objects}
    return [{name: values[i] for name, values in per_scorer.items()} for i in range(len(samples))]


def _done(results_path: Path) -> set[tuple[str, str]]:
    cut_torn_tail(results_path)  # a run killed mid-write: the torn line goes (truncated, not rewritten)
    return {(row["variant"], row["id"]) for row in read_jsonl(results_path)}


class OutputChecks:
    """Pass/fail facts about each output, beside the scores: the gates a shipped model must clear.

    - chatter: the output talks to the user ("Sure! Here is", "this prompt") instead of being the prompt;
    - loop: a repetition loop;
    - video prompt: it reads as a video prompt, not an answer or a refusal: no chatter, meta text or leaked
      instruction, at least half the target's minimum words, and at least one cinematic decision (camera, lens,
      lighting, palette, motion or atmosphere), and, when the idea speaks to the model (an instruction, a
      question, a role to play; enhancer.scoring.instructions), no echo of it: no run of its words copied, no
      word of its task, no "you" or "I". For adversarial inputs (questions, instructions, markup) this is the
      whole test: did the model write a prompt about what they show, or obey or quote them?
    """

    def __init__(self, target: str):
        from enhancer.prompts import get_profile

        # the core's own scorers, not whatever is registered under these names: the gates must not move
        self.clean = CleanScorer()
        self.coverage = CoverageScorer()
        self.profile = get_profile(target)

    def check(self, simple: str, enhanced: str, kind: str | None = None) -> dict:
        problems = set(self.clean.problems(enhanced)) if enhanced.strip() else {"empty"}
        idea = split_idea(simple)
        if idea.instructions or kind == "adversarial":
            problems |= {f"echo: {p}" for p in echo_problems(simple, enhanced, idea)}
        covered = self.coverage.score([Sample(simple, enhanced)])[0] if enhanced.strip() else 0.0
        words = len(enhanced.split())
        return {
            "chatter": bool(problems & {"chatter", "meta text"}),
            "loop": "repetition" in problems,
            "video_prompt": not problems & {"chatter", "meta text", "leaked instructions", "empty"}
            and not any(p.startswith("echo") for p in problems)
            and words >= self.profile.min_words / 2
            and covered > 0,
            "words": words,
        }

    def summarise(self, rows: list[dict]) -> dict:
        checked = [(row, self.check(row["simple"], row["enhanced"], row.get("kind"))) for row in rows]
        adversarial = [c for row, c in checked if row["kind"] == "adversarial"]
        words = sorted(c["words"] for _, c in checked)
        median = statistics.median(words) if words else 0
        return {
            "outputs": len(checked),
            "chatter": sum(c["chatter"] for _, c in checked),
            "loops": sum(c["loop"] for _, c in checked),
            "loop_share": round(sum(c["loop"] for _, c in checked) / max(1, len(checked)), 4),
            "adversarial": len(adversarial),
            "adversarial_video_prompt": round(sum(c["video_prompt"] for c in adversarial) / len(adversarial), 4)
            if adversarial
            else None,
            "median_words": median,
            "budget": [self.profile.min_words, self.profile.budget_words()],
            "median_in_budget": self.profile.min_words <= median <= self.profile.budget_words(),
        }


def summarise(
    results_path: Path,
    variants: list[str],
    scorers: list[str],
    seed: int = 0,
    ids: set[str] | None = None,
    checks: OutputChecks | None = None,
) -> dict:
    """Statistics over the prompts every variant answered (and, given `ids`, only those prompts)."""
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in read_jsonl(results_path):
        if row["variant"] in variants and (ids is None or row["id"] in ids):
            rows[row["variant"]][row["id"]] = row
    ids = (
        sorted(set.intersection(*(set(rows[v]) for v in variants)))
        if variants and all(rows[v] for v in variants)
        else []
    )
    metrics = [*scorers, "composite"]

    def value(variant, prompt_id, metric):
        row = rows[variant][prompt_id]
        return row["composite"] if metric == "composite" else row["scores"].get(metric)

    summary: dict = {
        "n_prompts": len(ids),
        "variants": variants,
        "metrics": metrics,
        "means": {},
        "win_rates": {},
        "differences": {},  # variant - the first variant, per metric, paired over prompts
        "by_style": {},
        "by_kind": {},
        "by_lang": {},  # per language the prompts are written in (all "en" on the yardstick)
        "answered_by_lang": {},  # rows with status ok, of all, per language
        "status": {},
        "checks": {},
    }
    for variant in variants:
        summary["means"][variant] = {m: bootstrap_mean([value(variant, i, m) for i in ids], seed) for m in metrics}
        statuses = [rows[variant][i]["status"] for i in ids]
        summary["status"][variant] = {s: statuses.count(s) for s in sorted(set(statuses))}
        answered = defaultdict(lambda: [0, 0])
        for i in ids:
            counts = answered[rows[variant][i].get("lang") or "en"]
            counts[0] += rows[variant][i]["status"] == "ok"
            counts[1] += 1
        summary["answered_by_lang"][variant] = {lang: tuple(c) for lang, c in sorted(answered.items())}
        if checks is not None:
            summary["checks"][variant] = checks.summarise([rows[variant][i] for i in ids])
        for field, key in (("by_style", "style"), ("by_kind", "kind"), ("by_lang", "lang")):
            groups = defaultdict(list)
            for i in ids:
                groups[rows[variant][i].get(key) or ("en" if key == "lang" else "none")].append(
                    value(variant, i, "composite")
                )
            summary[field][variant] = {g: bootstrap_mean(v, seed) for g, v in sorted(groups.items())}
    for a in variants:
        summary["win_rates"][a] = {
            b: paired_win_rate([value(a, i, "composite") for i in ids], [value(b, i, "composite") for i in ids], seed)
            for b in variants
            if b != a
        }
    for variant in variants[1:]:
        summary["differences"][variant] = {
            m: paired_difference([value(variant, i, m) for i in ids], [value(variants[0], i, m) for i in ids], seed)
            for m in metrics
        }
    return summary


def _fmt(stat: dict, key: str = "mean") -> str:
    if stat.get(key) is None:
        return "n/a"
    return f"{stat[key]:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def _signed(stat: dict) -> str:
    if stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:+.3f} [{stat['low']:+.3f}, {stat['high']:+.3f}]"


def summary_markdown(summary: dict) -> str:
    variants, metrics = summary["variants"], summary["metrics"]
    lines = [
        f"Means over {summary['n_prompts']} prompts, bootstrap 95% CI in brackets.",
        "",
        "| metric | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for metric in metrics:
        lines.append(f"| {metric} | " + " | ".join(_fmt(summary["means"][v][metric]) for v in variants) + " |")
    lines += [
        "",
        "Paired win rate of the row's variant over the column's on the composite (ties count half).",
        "",
        "| | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for a in variants:
        cells = ["-" if a == b else _fmt(summary["win_rates"][a][b], "rate") for b in variants]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    if summary.get("differences"):
        others = variants[1:]
        lines += [
            "",
            f"Paired difference from {variants[0]} (variant - {variants[0]}, prompt by prompt), 95% CI: an interval "
            "that holds 0 is a difference within noise.",
            "",
            "| metric | " + " | ".join(others) + " |",
            "|---|" + "---|" * len(others),
        ]
        for metric in metrics:
            cells = [_signed(summary["differences"][v][metric]) for v in others]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    languages = sorted({lang for v in variants for lang in summary.get("by_lang", {}).get(v, {})})
    if len(languages) > 1:
        lines += [
            "",
            "By the language the prompt is written in: composite (95% CI), and rewrites answered (status ok) of all.",
            "",
            "| language | " + " | ".join(variants) + " |",
            "|---|" + "---|" * len(variants),
        ]
        for lang in languages:
            cells = []
            for v in variants:
                ok, total = summary["answered_by_lang"][v].get(lang, (0, 0))
                cells.append(f"{_fmt(summary['by_lang'][v][lang])}; {ok}/{total}")
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    if summary.get("checks"):
        lines += [
            "",
            "Output checks: chatter and loops count outputs; adversarial is the share of adversarial prompts "
            "answered with a video prompt; median words against the target's budget.",
            "",
            "| check | " + " | ".join(variants) + " |",
            "|---|" + "---|" * len(variants),
        ]
        c = summary["checks"]
        rows_out = (
            ("chatter", lambda x: f"{x['chatter']} of {x['outputs']}"),
            ("repetition loops", lambda x: f"{x['loops']} ({x['loop_share']:.1%})"),
            (
                "adversarial -> video prompt",
                lambda x: (
                    "n/a"
                    if x["adversarial_video_prompt"] is None
                    else f"{x['adversarial_video_prompt']:.1%} of {x['adversarial']}"
                ),
            ),
            ("median words", lambda x: f"{x['median_words']:g} (budget {x['budget'][0]}-{x['budget'][1]})"),
        )
        for label, cell in rows_out:
            lines.append(f"| {label} | " + " | ".join(cell(c[v]) for v in variants) + " |")
    lines += [
        "",
        "Status counts: "
        + "; ".join(f"{v}: " + ", ".join(f"{k} {n}" for k, n in summary["status"][v].items()) for v in variants),
    ]
    return "\n".join(lines) + "\n"
