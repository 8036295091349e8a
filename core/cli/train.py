"""`enhancer run` (both stages through the plugins) and `enhancer train sft|dpo` (one stage)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from enhancer.cli.app import config_flag, config_overrides, main
from enhancer.config import RLConfig, RunConfig, SFTConfig
from enhancer.train.dpo import DPOSettings

# ---------------------------------------------------------------------------------------------------------- run


@main.command()
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/); flags below override it.")
@config_flag(RunConfig, "backend")
@config_flag(RunConfig, "rewards", "--reward", "rewards", multiple=False, type=str)
@config_flag(RunConfig, "trainer")
@config_flag(RunConfig, "model")
@config_flag(RunConfig, "adapter")
@config_flag(RunConfig, "out")
@config_flag(RunConfig, "plugins", "--plugin", "plugins")
@config_flag(RunConfig, "target")
@config_flag(RunConfig, "seed")
@config_flag(SFTConfig, "max_steps", "--sft-steps", "sft__max_steps")
@config_flag(RLConfig, "max_steps", "--rl-steps", "rl__max_steps")
@config_flag(RLConfig, "max_videos", "--max-videos", "rl__max_videos")
@config_flag(RLConfig, "max_cost_usd", "--max-cost-usd", "rl__max_cost_usd")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out (after a crash or kill) with its saved config.yaml; flags still override.",
)
def run(recipe, resume, **flags):
    """Run the two-stage recipe: stage 1 SFT, then stage 2 RL through the chosen plugins.

    A rerun into the same --out picks up where the last one stopped: a finished stage 1 is not trained again,
    stage 2 continues from its last checkpoint, cached videos are not made again and the budget carries over.
    `--resume --out DIR` does that with the run's own config.yaml, so no flag needs repeating."""
    from enhancer.train.distributed import current_process
    from enhancer.train.orchestrator import run as run_recipe

    if resume:
        out = flags["out"]
        if not out:
            raise click.UsageError("--resume needs --out, the folder of the run to continue")
        saved = Path(out) / "config.yaml"
        if not saved.is_file():
            raise click.UsageError(f"--resume: {saved} does not exist; is {out} the folder of an enhancer run?")
        if recipe:
            raise click.UsageError("--resume uses the run's own config.yaml; leave out --recipe")
        recipe = str(saved)
    summary = run_recipe(RunConfig.from_yaml(recipe, **config_overrides(flags)))
    if current_process().is_main:  # under several processes, the main one prints
        click.echo(json.dumps(summary, indent=2))


@main.group()
def train() -> None:
    """Train one stage on its own (`enhancer run` chains both)."""


@train.command("sft")
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/sft/); flags override it.")
@config_flag(RunConfig, "model")
@config_flag(RunConfig, "stage1_data", "--data", "stage1_data")
@config_flag(RunConfig, "out", help="Output folder; the adapter lands in OUT/stage1/adapter.")
@config_flag(RunConfig, "seed")
@config_flag(SFTConfig, "max_steps", "--max-steps", "sft__max_steps")
@config_flag(SFTConfig, "epochs", "--epochs", "sft__epochs")
@config_flag(SFTConfig, "learning_rate", "--learning-rate", "sft__learning_rate")
@config_flag(SFTConfig, "bf16", "--bf16", "sft__bf16")
@config_flag(SFTConfig, "batching", "--batching", "sft__batching")
def train_sft_command(recipe, **flags):
    """Stage 1: LoRA SFT with TRL. A folder with checkpoints resumes from the newest complete one."""
    from enhancer.data import load_pairs
    from enhancer.models import resolve_model
    from enhancer.train.distributed import current_process
    from enhancer.train.sft import train_sft

    config = RunConfig.from_yaml(recipe, **config_overrides(flags))
    process = current_process()
    log = process.logger(lambda m: click.echo(f"enhancer: {m}", err=True))
    if process.is_main:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        config.to_yaml(Path(config.out) / "config.yaml")
    with process.main_first():  # the embedded model's first use builds a cache: once
        resolved = resolve_model(config.model, "none" if config.model == "embedded" else None, log=log)
    adapter = train_sft(
        resolved.path,
        load_pairs(config.stage1_data),
        config.sft,
        Path(config.out) / "stage1",
        seed=config.seed,
        metadata={
            "base_model": config.model,
            "recipe": recipe,
            "command": " ".join(["enhancer", *sys.argv[1:]]),
            "seed": config.seed,
        },
        log=log,
        process=process,
    )
    if process.is_main:
        click.echo(str(adapter))


@train.command("dpo")
@click.option("--traces", "traces", multiple=True, required=True, help="traces.jsonl of stage-2 runs (repeatable).")
@click.option("--model", default="embedded", show_default=True, help="Base model the traces' policy was built on.")
@click.option("--adapter", help="The SFT adapter to start from (default: the embedded model's shipped one).")
@click.option("--out", default="runs/dpo", show_default=True, help="Output folder; the adapter lands in OUT/adapter.")
@config_flag(DPOSettings, "min_margin")
@config_flag(DPOSettings, "beta")
@config_flag(DPOSettings, "learning_rate")
@config_flag(DPOSettings, "max_steps")
@config_flag(DPOSettings, "epochs")
@config_flag(DPOSettings, "batch_size")
@config_flag(DPOSettings, "save_steps")
@config_flag(RunConfig, "target")
@config_flag(RunConfig, "seed")
def train_dpo_command(traces, model, adapter, out, target, seed, **flags):
    """Preference training on stage-2 traces: per prompt, its best rewrite over its worst (TRL DPOTrainer).
    A rerun into the same --out resumes from its newest complete checkpoint."""
    from enhancer.models import resolve_model
    from enhancer.train.distributed import current_process
    from enhancer.train.dpo import TracesError, train_dpo

    settings = DPOSettings(**config_overrides(flags))
    process = current_process()
    log = process.logger(lambda m: click.echo(f"enhancer: {m}", err=True))
    with process.main_first():  # the embedded model's first use builds a cache: once
        resolved = resolve_model(model, adapter, log=log)
    try:
        final = train_dpo(
            resolved.path,
            resolved.adapter,
            list(traces),
            out,
            settings,
            target=target or "generic",
            seed=seed or 0,
            metadata={"base_model": model, "command": " ".join(["enhancer", *sys.argv[1:]])},
            log=log,
            process=process,
        )
    except TracesError as error:
        raise click.UsageError(str(error)) from error
    if process.is_main:
        click.echo(str(final))
