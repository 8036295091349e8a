"""`enhancer data validate|stats|synth`."""

from __future__ import annotations

import sys

import click

from enhancer.cli.app import main

# --------------------------------------------------------------------------------------------------------- data


@main.group()
def data() -> None:
    """Check, describe and grow enhancer's data (data/stage1, data/stage2, data/eval)."""


@data.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--near-duplicate",
    type=click.FloatRange(0, 1),
    default=0.92,
    show_default=True,
    help="MiniLM cosine above which two simple prompts count as near-duplicates.",
)
def data_validate(paths, near_duplicate):
    """Print every problem in PATHS (files or folders) as file:line: problem; exit 1 when there is any."""
    from enhancer.data.validate import validate

    report = validate(list(paths), near_duplicate=near_duplicate)
    for problem in report.problems:
        click.echo(problem)
    click.echo(report.summary(), err=True)
    if report.problems:
        sys.exit(1)


@data.command("stats")
@click.argument("paths", nargs=-1)
@click.option("--out", default="data/CARD.md", show_default=True, help="Where to write the data card.")
def data_stats(paths, out):
    """Write the data card: counts per style, target and split, lengths, diversity, how the data was made."""
    from enhancer.data.stats import write_card

    path = write_card(list(paths) or ["data"], out)
    click.echo(f"wrote {path}", err=True)


@data.command("synth")
@click.option("--base-url", required=True, help="OpenAI-compatible endpoint of the teacher model.")
@click.option("--model", required=True, help="The teacher model's name on that endpoint.")
@click.option("--n", "n", type=click.IntRange(1), required=True, help="Rows the output file should hold.")
@click.option("--out", default="data/stage1/synth.jsonl", show_default=True)
@click.option(
    "--pool", multiple=True, default=["data/stage1"], show_default=True, help="Pairs to show the teacher as examples."
)
@click.option(
    "--against", multiple=True, default=["data"], show_default=True, help="Data the new prompts must not duplicate."
)
@click.option("--style", "styles", multiple=True, help="Only these styles (repeatable).")
@click.option("--api-key", envvar="ENHANCER_API_KEY")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(base_url, model, n, out, pool, against, styles, api_key, seed):
    """Append validated, deduplicated pairs written by a teacher LLM to --out (resumable)."""
    from enhancer.data.schema import STYLES
    from enhancer.data.synth import synth

    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise click.UsageError(f"unknown style(s) {', '.join(unknown)}; valid: {', '.join(STYLES)}")
    summary = synth(
        base_url,
        model,
        n,
        out,
        pool=list(pool),
        against=list(against),
        api_key=api_key,
        styles=list(styles) or None,
        seed=seed,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(summary.line(), err=True)
    if summary.already + summary.written < n:
        sys.exit(1)
