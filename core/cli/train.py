"""`enhancer run` (both stages through the plugins) and `enhancer train sft|dpo` (one stage)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from enhancer.cli.app import main
from enhancer.prompts import PROFILES

# ---------------------------------------------------------------------------------------------------------- run


@main.command()
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/); flags below override it.")
@click.option("--backend", help="Video backend plugin (the `plugins list` command shows them).")
@click.option("--reward", "rewards", help="Reward scorer plugin(s), comma-separated.")
@click.option("--trainer", help="Policy trainer plugin.")
@click.option("--model", help="Base model: 'embedded', a local HF directory or a hub id.")
@click.option("--adapter", help="Start stage 2 from this adapter (skips stage 1).")
@click.option("--out", help="Output folder.")
@click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin (repeatable).")
@click.option("--target", type=click.Choice(list(PROFILES)), help="Target profile the policy writes for.")
@click.option("--seed", type=int)
@click.option("--sft-steps", type=click.IntRange(0), help="Stage 1 optimizer steps.")
@click.option("--rl-steps", type=click.IntRange(1), help="Stage 2 policy updates.")
@click.option("--max-videos", type=click.IntRange(1), help="Stop stage 2 before making more videos.")
@click.option("--max-cost-usd", type=click.FloatRange(0), help="Stop stage 2 before spending more.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out (after a crash or kill) with its saved config.yaml; flags still override.",
)
def run(
    recipe,
    backend,
    rewards,
    trainer,
    model,
    adapter,
    out,
    plugin_modules,
    target,
    seed,
    sft_steps,
    rl_steps,
    max_videos,
    max_cost_usd,
    resume,
):
    """Run the two-stage recipe: stage 1 SFT, then stage 2 RL through the chosen plugins.

    A rerun into the same --out picks up where the last one stopped: a finished stage 1 is not trained again,
    stage 2 continues from its last checkpoint, cached videos are not made again and the budget carries over.
    `--resume --out DIR` does that with the run's own config.yaml, so no flag needs repeating."""
    from enhancer.config import RunConfig
    from enhancer.distributed import current_process
    from enhancer.orchestrator import run as run_recipe

    if resume:
        if not out:
            raise click.UsageError("--resume needs --out, the folder of the run to continue")
        saved = Path(out) / "config.yaml"
        if not saved.is_file():
            raise click.UsageError(f"--resume: {saved} does not exist; is {out} the folder of an enhancer run?")
        if recipe:
            raise click.UsageError("--resume uses the run's own config.yaml; leave out --recipe")
        recipe = str(saved)
    config = RunConfig.from_yaml(
        recipe,
        backend=backend,
        rewards=rewards,
        trainer=trainer,
        model=model,
        adapter=adapter,
        out=out,
        plugins=list(plugin_modules) or None,
        target=target,
        seed=seed,
        sft={"max_steps": sft_steps} if sft_steps is not None else None,
        rl={
            k: v
            for k, v in (("max_steps", rl_steps), ("max_videos", max_videos), ("max_cost_usd", max_cost_usd))
            if v is not None
        }
        or None,
    )
    summary = run_recipe(config)
    if current_process().is_main:  # under several processes, the main one prints
        click.echo(json.dumps(summary, indent=2))


@main.group()
def train() -> None:
    """Train one stage on its own (`enhancer run` chains both)."""


@train.command("sft")
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/sft/); flags override it.")
@click.option("--model", help="Base model: 'embedded', a local HF directory or a hub id.")
@click.option("--data", "data_paths", multiple=True, help="Stage-1 pairs (JSONL files or folders).")
@click.option("--out", help="Output folder; the adapter lands in OUT/stage1/adapter.")
@click.option("--max-steps", type=click.IntRange(0), help="Optimizer steps (0: use epochs).")
@click.option("--epochs", type=click.FloatRange(0, min_open=True))
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True))
@click.option("--seed", type=int)
@click.option("--bf16", type=click.BOOL, help="bf16 autocast (true/false); default: on CUDA only.")
@click.option("--batching", type=click.Choice(["padded", "grouped", "packed"]), help="How pairs form batches.")
def train_sft_command(recipe, model, data_paths, out, max_steps, epochs, learning_rate, seed, bf16, batching):
    """Stage 1: LoRA SFT with TRL. A folder with checkpoints resumes from the last one."""
    from enhancer.config import RunConfig
    from enhancer.data import load_pairs
    from enhancer.distributed import current_process
    from enhancer.models import resolve_model
    from enhancer.sft import train_sft

    sft = {
        k: v
        for k, v in (
            ("max_steps", max_steps),
            ("epochs", epochs),
            ("learning_rate", learning_rate),
            ("bf16", bf16),
            ("batching", batching),
        )
        if v is not None
    }
    config = RunConfig.from_yaml(
        recipe, model=model, stage1_data=list(data_paths) or None, out=out, seed=seed, sft=sft or None
    )
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
@click.option("--min-margin", type=click.FloatRange(0), default=0.1, show_default=True, help="Least reward gap.")
@click.option("--beta", type=click.FloatRange(0, min_open=True), default=0.1, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), default=5e-6, show_default=True)
@click.option("--max-steps", type=click.IntRange(0), default=0, show_default=True, help="0: --epochs over the pairs.")
@click.option("--epochs", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True, help="Pairs per process.")
@click.option("--save-steps", type=click.IntRange(1), default=20, show_default=True, help="Checkpoint every N steps.")
@click.option("--target", type=click.Choice(list(PROFILES)), default="generic", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train_dpo_command(
    traces,
    model,
    adapter,
    out,
    min_margin,
    beta,
    learning_rate,
    max_steps,
    epochs,
    batch_size,
    save_steps,
    target,
    seed,
):
    """Preference training on stage-2 traces: per prompt, its best rewrite over its worst (TRL DPOTrainer).
    A rerun into the same --out resumes from its newest complete checkpoint."""
    from enhancer.distributed import current_process
    from enhancer.dpo import DPOSettings, TracesError, train_dpo
    from enhancer.models import resolve_model

    process = current_process()
    log = process.logger(lambda m: click.echo(f"enhancer: {m}", err=True))
    with process.main_first():  # the embedded model's first use builds a cache: once
        resolved = resolve_model(model, adapter, log=log)
    settings = DPOSettings(
        beta=beta,
        learning_rate=learning_rate,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        min_margin=min_margin,
        save_steps=save_steps,
    )
    try:
        final = train_dpo(
            resolved.path,
            resolved.adapter,
            list(traces),
            out,
            settings,
            target=target,
            seed=seed,
            metadata={"base_model": model, "command": " ".join(["enhancer", *sys.argv[1:]])},
            log=log,
            process=process,
        )
    except TracesError as error:
        raise click.UsageError(str(error)) from error
    if process.is_main:
        click.echo(str(final))
