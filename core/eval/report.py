"""`enhancer report DIR`: a self-contained HTML page (report.html, with PNG plots beside it) for an eval folder
(results.jsonl + summary.json) and/or an RL run folder or trace file (traces.jsonl, or the original research
project's stage2_traces.jsonl: rows with `step` and `reward`).

    enhancer report runs/eval-embedded                  # eval: bars with CIs, win rates, styles, examples
    enhancer report runs/demo                           # RL: reward versus step
    enhancer report --traces stage2_traces.jsonl out/   # the original project's mean-reward plot
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(summary: dict, path: Path) -> Path:
    """One group of bars per metric, one bar per variant, with 95% CI whiskers."""
    plt = _plt()
    variants, metrics = summary["variants"], summary["metrics"]
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(metrics) * len(variants) / 2), 4.5))
    for k, variant in enumerate(variants):
        stats = [summary["means"][variant][m] for m in metrics]
        means = [s["mean"] if s["mean"] is not None else 0 for s in stats]
        errors = [
            [m - (s["low"] if s["low"] is not None else m) for m, s in zip(means, stats, strict=True)],
            [(s["high"] if s["high"] is not None else m) - m for m, s in zip(means, stats, strict=True)],
        ]
        x = np.arange(len(metrics)) + (k - (len(variants) - 1) / 2) * width
        ax.bar(x, means, width, yerr=errors, capsize=3, label=variant, color=COLOURS[k % len(COLOURS)])
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean score (0 = worst, 1 = best)")
    ax.set_title(f"Scores per metric, mean over {summary['n_prompts']} prompts, 95% bootstrap CI")
    ax.legend(title="variant", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_win_rates(summary: dict, path: Path) -> Path:
    """Matrix: how often the row's variant beats the column's on the composite score."""
    plt = _plt()
    variants = summary["variants"]
    matrix = np.full((len(variants), len(variants)), np.nan)
    for i, a in enumerate(variants):
        for j, b in enumerate(variants):
            if a != b and summary["win_rates"][a][b]["rate"] is not None:
                matrix[i, j] = summary["win_rates"][a][b]["rate"]
    size = 1.2 * len(variants) + 2.5
    fig, ax = plt.subplots(figsize=(size, size - 0.6))
    image = ax.imshow(matrix, cmap="RdBu", vmin=0, vmax=1)
    for i in range(len(variants)):
        for j in range(len(variants)):
            text = "-" if i == j else f"{matrix[i, j]:.0%}"
            ax.text(j, i, text, ha="center", va="center", fontsize=11)
    ax.set_xticks(range(len(variants)), variants)
    ax.set_yticks(range(len(variants)), variants)
    ax.set_xlabel("... against this variant")
    ax.set_ylabel("this variant wins ...")
    ax.set_title("Paired win rate on the composite score")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of prompts won (ties count half)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_breakdown(summary: dict, field: str, path: Path, title: str) -> Path:
    """Composite score per style (or kind) and variant, horizontal bars with CIs."""
    plt = _plt()
    variants = summary["variants"]
    groups = sorted({g for v in variants for g in summary[field][v]})
    height = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(groups) * max(1, len(variants) / 2) + 1.5))
    for k, variant in enumerate(variants):
        stats = [summary[field][variant].get(g, {"mean": None}) for g in groups]
        means = [s["mean"] or 0 for s in stats]
        errors = [
            [m - (s.get("low") or m) for m, s in zip(means, stats, strict=True)],
            [(s.get("high") or m) - m for m, s in zip(means, stats, strict=True)],
        ]
        y = np.arange(len(groups)) + (k - (len(variants) - 1) / 2) * height
        ax.barh(y, means, height, xerr=errors, capsize=2, label=variant, color=COLOURS[k % len(COLOURS)])
    labels = [f"{g} (n={summary[field][variants[0]].get(g, {}).get('n', 0)})" for g in groups]
    ax.set_yticks(np.arange(len(groups)), labels)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("mean composite score, 95% CI")
    ax.set_title(title)
    ax.legend(title="variant", loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reward_by_step(traces: Path) -> tuple[np.ndarray, np.ndarray]:
    from enhancer.train.rollout import rewards_by_step

    by_step = rewards_by_step(traces)
    steps = np.array(list(by_step))
    return steps, np.array([np.mean(by_step[s]) for s in by_step])


def scorer_means_by_step(traces: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per scorer in the trace rows' `rewards`: the steps it judged a sample in, and its mean score per step."""
    from enhancer.files import read_jsonl

    by_scorer: dict[str, dict[int, list[float]]] = {}
    for row in read_jsonl(traces):
        for name, value in (row.get("rewards") or {}).items():
            if value is not None and row.get("step") is not None:
                by_scorer.setdefault(name, {}).setdefault(int(row["step"]), []).append(float(value))
    return {
        name: (np.array(sorted(steps)), np.array([np.mean(steps[s]) for s in sorted(steps)]))
        for name, steps in sorted(by_scorer.items())
    }


def plot_rewards(traces: Path, path: Path, window: int = 5) -> Path:
    """Mean reward per RL step, its rolling mean and a least-squares line: did the reward go up? Below it, when
    the traces record each scorer's score, the rolling mean of each: which part of the reward moved."""
    plt = _plt()
    steps, means = reward_by_step(traces)
    if len(steps) == 0:
        raise ValueError(f"{traces}: no rows with a step and a reward")
    scorers = {n: v for n, v in scorer_means_by_step(traces).items() if len(v[0]) >= window}
    if scorers:
        fig, (ax, below) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
        for i, (name, (at, values)) in enumerate(scorers.items()):
            rolling = np.convolve(values, np.ones(window) / window, mode="valid")
            below.plot(at[window - 1 :], rolling, "-", label=name, color=COLOURS[i % len(COLOURS)])
        below.set_ylabel(f"score, rolling mean ({window} steps)")
        below.set_xlabel("RL step")
        below.legend(ncol=4, fontsize=8)
        below.grid(alpha=0.3)
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, means, "o-", alpha=0.5, label="mean reward per step", color=COLOURS[0])
    if len(steps) >= window:
        rolling = np.convolve(means, np.ones(window) / window, mode="valid")
        ax.plot(
            steps[window - 1 :], rolling, "-", linewidth=2.5, label=f"rolling mean ({window} steps)", color=COLOURS[1]
        )
    if len(steps) >= 2:
        slope, intercept = np.polyfit(steps, means, 1)
        ax.plot(steps, slope * steps + intercept, "--", color=COLOURS[3], label=f"linear fit: {slope:+.4f} per step")
    ax.set_xlabel("RL step")
    ax.set_ylabel("reward")
    ax.set_title(f"Reward versus step ({traces.name}, {len(steps)} steps)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _examples(results: Path, variants: list[str], count: int = 6) -> list[dict]:
    """Prompts with every variant's output, spread over kinds and picked where the variants differ most."""
    rows: dict[str, dict] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows.setdefault(
            row["id"], {"simple": row["simple"], "kind": row["kind"], "style": row["style"], "outputs": {}}
        )["outputs"][row["variant"]] = row
    complete = [r for r in rows.values() if all(v in r["outputs"] for v in variants)]

    def spread(r):
        values = [r["outputs"][v]["composite"] or 0 for v in variants]
        return max(values) - min(values)

    picked: list[dict] = []
    for kind in ("normal", "edge", "adversarial"):
        of_kind = sorted((r for r in complete if r["kind"] == kind), key=spread, reverse=True)
        picked += of_kind[: max(1, count // 3)]
    return picked[:count]


def render(directory: str | Path, traces: str | Path | None = None) -> Path:
    """Write report.html (and its PNGs) into `directory`; returns the HTML path."""
    out = Path(directory)
    summary_path, results_path = out / "summary.json", out / "results.jsonl"
    trace_path = Path(traces) if traces else (out / "traces.jsonl" if (out / "traces.jsonl").exists() else None)
    # a run folder has a summary.json too (of the run); an eval summary is the one that lists variants
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    if "variants" not in summary and trace_path is None:
        raise FileNotFoundError(f"{out}: no summary.json (from `enhancer eval`) and no traces.jsonl (from a run)")
    out.mkdir(parents=True, exist_ok=True)
    parts = ["<h1>enhancer report</h1>", f"<p class=note>Folder: <code>{html.escape(str(out))}</code></p>"]
    if "variants" in summary:
        config = json.loads((out / "eval_config.json").read_text()) if (out / "eval_config.json").exists() else {}
        plot_metrics(summary, out / "metrics.png")
        plot_win_rates(summary, out / "win_rates.png")
        plot_breakdown(summary, "by_style", out / "by_style.png", "Composite score by the style the prompt asked for")
        plot_breakdown(summary, "by_kind", out / "by_kind.png", "Composite score by kind of prompt")
        from enhancer.eval.runner import summary_markdown

        parts += [
            "<h2>Variants</h2><ul>"
            + "".join(
                f"<li><b>{html.escape(v)}</b>: {html.escape(config.get('variants', {}).get(v, ''))}</li>"
                for v in summary["variants"]
            )
            + "</ul>",
            f"<p>{summary['n_prompts']} prompts; scorers: {html.escape(', '.join(summary['metrics'][:-1]))}; "
            "the composite is their weighted mean. Each score runs from 0 (worst) to 1 (best).</p>",
            "<h2>Scores per metric</h2><img src=metrics.png alt='scores per metric'>",
            "<h2>Who wins, prompt by prompt</h2><img src=win_rates.png alt='win-rate matrix'>",
            "<h2>By style and by kind of prompt</h2><img src=by_style.png alt='by style'>"
            "<img src=by_kind.png alt='by kind'>",
            "<h2>Table</h2><pre>" + html.escape(summary_markdown(summary)) + "</pre>",
        ]
        if results_path.exists():
            parts.append("<h2>Examples</h2><p class=note>Where the variants differ most, for each kind of prompt.</p>")
            for example in _examples(results_path, summary["variants"]):
                cells = "".join(
                    f"<td><div class=score>{html.escape(v)}: composite "
                    f"{example['outputs'][v]['composite'] if example['outputs'][v]['composite'] is not None else 'n/a'}"
                    f"</div>{html.escape(example['outputs'][v]['enhanced'])}</td>"
                    for v in summary["variants"]
                )
                parts.append(
                    f"<table><tr><th colspan={len(summary['variants'])}>{html.escape(example['kind'])}"
                    f" &middot; {html.escape(example['simple'])}</th></tr><tr>{cells}</tr></table>"
                )
    if trace_path is not None:
        plot_rewards(trace_path, out / "rewards.png")
        parts += ["<h2>RL reward versus step</h2>", "<img src=rewards.png alt='reward versus step'>"]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "img{max-width:100%;display:block;margin:1em 0}table{border-collapse:collapse;margin:1em 0;width:100%}"
        "td,th{border:1px solid #ccc;padding:.5em;vertical-align:top;font-size:.9em;text-align:left}"
        "th{background:#f3f3f3}.score{font-weight:bold;margin-bottom:.3em}.note{color:#666}"
        "pre{background:#f7f7f7;padding:1em;overflow-x:auto}"
    )
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>enhancer report</title><style>{style}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
