"""`enhancer eval`, `enhancer report` and `enhancer rate` (human A/B ratings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from enhancer.cli.app import config_flag, config_overrides, main
from enhancer.eval.config import EvalConfig

# --------------------------------------------------------------------------------------------------------- eval


@main.command("eval")
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/eval/); flags override it.")
@config_flag(EvalConfig, "prompts")
@config_flag(EvalConfig, "variants", "--variant", "variants")
@config_flag(EvalConfig, "scorers", multiple=False, type=str)
@click.option("--weight", "weights", multiple=True, help="NAME=W: a scorer's weight in the composite (repeatable).")
@config_flag(EvalConfig, "target")
@config_flag(EvalConfig, "limit")
@config_flag(EvalConfig, "seed")
@config_flag(EvalConfig, "batch_size")
@config_flag(EvalConfig, "max_new_tokens")
@config_flag(EvalConfig, "dtype")
@config_flag(EvalConfig, "plugins", "--plugin", "plugins")
@config_flag(EvalConfig, "out", help="Output folder (default runs/eval); a folder with rows resumes.")
@click.option(
    "--rescore",
    is_flag=True,
    help="Score the outputs already in --out again with the current scorers (after a scorer changed).",
)
def eval_command(recipe, weights, rescore, **flags):
    """Run variants over the eval prompts and score every output; write results.jsonl and summary.{json,md}."""
    from enhancer.eval import evaluate, parse_variant

    parsed_weights = {}
    for item in weights:
        name, _, value = item.partition("=")
        try:
            parsed_weights[name] = float(value)
        except ValueError as error:
            raise click.UsageError(f"--weight {item!r}: expected NAME=NUMBER") from error
    config = EvalConfig.from_yaml(recipe, weights=parsed_weights or None, **config_overrides(flags))
    summary = evaluate(
        config.prompts,
        [parse_variant(v) for v in config.variants],
        config.out,
        scorers=config.scorers,
        weights=config.weights,
        target=config.target,
        limit=config.limit,
        seed=config.seed,
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        dtype=config.dtype,
        plugins=config.plugins,
        command=" ".join(["enhancer", *sys.argv[1:]]),
        rescore=rescore,
    )
    from enhancer.eval.runner import summary_markdown

    click.echo(summary_markdown(summary))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--traces",
    type=click.Path(dir_okay=False, exists=True),
    help="An RL trace file (traces.jsonl, or the original project's stage2_traces.jsonl).",
)
def report(directory, traces):
    """Write DIRECTORY/report.html with PNG plots, from `enhancer eval` results and/or RL traces."""
    from enhancer.eval.report import render

    click.echo(str(render(directory, traces)))


@main.group()
def rate() -> None:
    """Human ratings: blind A/B judgements of two variants' outputs (from an `enhancer eval` folder)."""


def _rating_inputs(results, variants, db):
    from enhancer.eval.rate import RatingStore, load_rating_pairs

    try:
        pairs = load_rating_pairs(results, [v.strip() for v in variants.split(",")] if variants else None)
    except (FileNotFoundError, ValueError) as error:
        raise click.UsageError(str(error)) from error
    return pairs, RatingStore(db or Path(results) / "ratings.sqlite")


@rate.command("serve")
@click.option("--results", required=True, type=click.Path(file_okay=False), help="An `enhancer eval` --out folder.")
@click.option("--variants", help="Only these variants, comma-separated (default: every pair of them).")
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: RESULTS/ratings.sqlite).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; beyond loopback only with a key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8300, show_default=True)
@click.option("--api-key", envvar="ENHANCER_RATE_API_KEY", help="Require Authorization: Bearer KEY.")
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=16_000,  # enhancer.serve.rate.MAX_BODY_BYTES, written out: importing it here would load pydantic and numpy
    show_default=True,
    help="Largest request body; larger ones get 413.",
)
def rate_serve(results, variants, db, host, port, api_key, max_body_bytes):
    """Serve the rating page: raters pick the better of two outputs; every rating is saved at once."""
    import uvicorn

    from enhancer.serve.rate import create_rating_app

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    pairs, store = _rating_inputs(results, variants, db)
    click.echo(f"enhancer: {len(pairs)} pairs to rate at http://{host}:{port}/ (ratings in {store.path})", err=True)
    app = create_rating_app(pairs, store, api_key, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@rate.command("scores")
@click.option("--results", required=True, type=click.Path(file_okay=False))
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: RESULTS/ratings.sqlite).")
def rate_scores(results, db):
    """Bradley-Terry strength per variant with 95% bootstrap intervals, win rates and counts (JSON)."""
    from enhancer.eval.rate import RatingStore, scores

    store = RatingStore(db or Path(results) / "ratings.sqlite")
    click.echo(json.dumps(scores(store.rows()), indent=2))


@rate.command("export")
@click.option("--results", required=True, type=click.Path(file_okay=False))
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: RESULTS/ratings.sqlite).")
@click.option("--out", default="ratings.csv", show_default=True, help="CSV file to write.")
def rate_export(results, db, out):
    """Every rating as a CSV row (rater, pair, variants, winner, and the two texts)."""
    from enhancer.eval.rate import export_csv

    pairs, store = _rating_inputs(results, None, db)
    click.echo(str(export_csv(store, pairs, out)))
