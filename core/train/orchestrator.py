"""The two-stage recipe, driven by whichever plugins are registered.

    enhancer run --backend synthetic --reward keep,coverage,clean --trainer trl_grpo --out runs/demo     # CPU
    enhancer run --recipe recipes/demo/smollm2-135m-cpu.yaml                                    # same, from YAML

Stage 1 trains a LoRA adapter with SFT (skipped when `adapter` is given or the adapter exists); stage 2 hands
the policy, the RL prompts and the core's `Rollout` (videos through the backend, rewards through the
scorers) to the trainer plugin. Everything lands under `out`: config.yaml, stage1/adapter, stage2/,
traces.jsonl, summary.json. Plugin names are checked before any model loads.

On several processes (README, "Scaling out"):

    torchrun --nproc_per_node 2 -m enhancer.cli run --recipe R                                      # CPU, gloo
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m enhancer.cli run --recipe R      # GPUs

every process runs both stages (TRL and transformers split the batches), the main process alone writes the
run's files, and the others wait for them where they need them (the stage-1 adapter before stage 2).
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from enhancer import logs
from enhancer.config import RunConfig
from enhancer.contracts import TrainContext
from enhancer.data import load_pairs, load_prompts
from enhancer.models import ModelNotFoundError, embedded_adapter_dir, read_metadata, resolve_model, weights_sha256
from enhancer.registry import PluginError, PluginRegistry
from enhancer.train.distributed import current_process
from enhancer.train.rollout import Budget, Rollout, merge_summaries, rewards_by_step


@dataclass
class Policy:
    """What stage 2 trains: a base model and the stage-1 adapter on top of it."""

    model_path: str
    adapter: str | None
    target: str = "generic"
    prompt_format: str = "chat"  # the format the stage-1 adapter was trained with (its enhancer.json)


# What makes a run folder's state one run's: rerunning into it with any of these changed would mix two runs'
# traces, checkpoints and budget (step counts and caps may change: that extends or shortens the same run).
SAME_RUN_KEYS = ("model", "adapter", "backend", "rewards", "reward_weights", "trainer", "target")


def check_same_run(out: Path, config: RunConfig) -> None:
    """Refuse to continue a run in `out` with settings that make it a different run."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return
    saved = RunConfig.from_yaml(str(saved_path)).to_dict()
    current = config.to_dict()
    stage2_started = (out / "traces.jsonl").is_file() or any((out / "stage2").glob("*"))
    stage1_done = (out / "stage1" / "adapter" / "adapter_config.json").is_file()
    keys = SAME_RUN_KEYS if stage2_started else ("model",) if stage1_done else ()
    changed = [k for k in keys if saved[k] != current[k]]
    if changed:
        what = "; ".join(f"{k}: {saved[k]!r} there, {current[k]!r} now" for k in changed)
        advice = "pass a new --out"
        if stage2_started and "model" not in changed:
            advice += f", or delete {out / 'stage2'} and {out / 'traces.jsonl'} to start stage 2 again on its adapter"
        raise ValueError(
            f"{out} holds another run ({what}); continuing it would mix two runs' checkpoints, traces and budget: "
            f"{advice}"
        )


def check_plugins(registry: PluginRegistry, config: RunConfig) -> None:
    """Fail on a wrong plugin name or option now, with the registered names or the allowed options, not after an
    hour of stage 1. Nothing is built and no model loads."""
    registry.check_options("backend", config.backend, config.backend_options, given_by_core=("out_dir",))
    for name in config.rewards:
        registry.check_options("scorer", name, config.reward_options.get(name, {}))
    unused = sorted(set(config.reward_options) - set(config.rewards))
    if unused:
        raise PluginError(
            f"reward_options for scorers the run does not use: {', '.join(unused)} (rewards: "
            f"{', '.join(config.rewards)})"
        )
    registry.check_options("trainer", config.trainer, config.trainer_options)


def run(
    config: RunConfig | str | None = None, registry: PluginRegistry | None = None, log=logs.info, **overrides
) -> dict:
    """Run stage 1 then stage 2; returns the summary (also written to `out/summary.json`)."""
    if config is None or isinstance(config, str):
        config = RunConfig.from_yaml(config, **overrides)
    elif overrides:
        config = RunConfig.from_dict({**config.to_dict(), **overrides})
    started = time.perf_counter()
    if registry is None:
        registry = PluginRegistry.load(extra_modules=config.plugins)
    else:
        for module in config.plugins:
            if not registry.manager.has_plugin(module):
                registry.register(importlib.import_module(module), module, "--plugin")
    failed = [b for b in registry.broken if b.plugin in config.plugins]
    if failed:  # the user asked for these modules by name: running without them would surprise
        raise PluginError("; ".join(f"--plugin {b.plugin}: {b.error}" for b in failed))
    check_plugins(registry, config)

    process = current_process()
    log = process.logger(log)
    config.validate_for(process.world_size)
    out = Path(config.out)
    check_same_run(out, config)
    process.barrier()  # every process has read the old config.yaml before the main one replaces it
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.to_yaml(out / "config.yaml")
    log(
        f"run: {config.model} | backend {config.backend} | rewards {','.join(config.rewards)} | "
        f"trainer {config.trainer} -> {out}" + (f" | {process.world_size} processes" if process.distributed else "")
    )

    start_adapter = config.adapter
    if start_adapter == "embedded":  # the SFT adapter shipped with the embedded model
        shipped = embedded_adapter_dir()
        if config.model != "embedded" or shipped is None:
            raise ModelNotFoundError(
                "adapter: embedded means the adapter shipped with model: embedded, and none ships with this install"
            )
        start_adapter = str(shipped)
    with process.main_first():  # the embedded model's first use converts it into a cache: once, by the main process
        resolved = resolve_model(config.model, start_adapter, log=log)
    stage1_started = time.perf_counter()
    if start_adapter:
        adapter = start_adapter
        log(f"stage 1: skipped, starting from adapter {adapter}")
    else:
        from enhancer.train.sft import train_sft

        pairs = load_pairs(config.stage1_data)
        adapter = str(
            train_sft(
                resolved.path,
                pairs,
                config.sft,
                out / "stage1",
                seed=config.seed,
                metadata={"base_model": config.model, "seed": config.seed},
                log=log,
                process=process,
            )
        )
    stage1_seconds = time.perf_counter() - stage1_started

    # Every backend factory takes `out_dir`: the core decides where videos go (see hookspecs.py).
    backend = registry.create("backend", config.backend, **{"out_dir": str(out / "videos"), **config.backend_options})
    scorers = [registry.create("scorer", name, **config.reward_options.get(name, {})) for name in config.rewards]
    trainer = registry.create("trainer", config.trainer, **config.trainer_options)
    rollout = Rollout(
        backend,
        scorers,
        out_dir=out,
        weights=config.reward_weights,
        seconds=config.rl.video_seconds,
        size=config.rl.video_size,
        concurrency=config.rl.concurrency,
        budget=Budget(max_videos=config.rl.max_videos, max_cost_usd=config.rl.max_cost_usd),
        video_seed=config.seed,
        process=process,
    )
    prompts = load_prompts(config.stage2_data)
    trained_format = read_metadata(adapter).get("prompt_format") if adapter else None
    policy = Policy(resolved.path, adapter, config.target, trained_format or "chat")
    stage2_started = time.perf_counter()
    log(f"stage 2: {config.trainer} on {len(prompts)} prompts, {config.rl.max_steps} steps")
    if "context" in inspect.signature(trainer.train).parameters:
        context = TrainContext(out_dir=out / "stage2", rl=config.rl, seed=config.seed, process=process, log=log)
        checkpoint = trainer.train(policy, prompts, rollout, context=context)
    else:  # a trainer written for the older contract, train(policy, dataset, rollout, config) (see hookspecs.py)
        if process.distributed:
            log(f"trainer {config.trainer} takes no context: it must handle several processes by itself")
        checkpoint = trainer.train(policy, prompts, rollout, config)
    stage2_seconds = time.perf_counter() - stage2_started
    if process.is_main:
        _record_stage2(Path(checkpoint), adapter, config, trained_format)

    videos = merge_summaries(process.gather(rollout.summary()))
    process.barrier()  # the trainer's final files are written before anyone reads the summary
    summary = {
        "config": str(out / "config.yaml"),
        "stage1_adapter": adapter,
        "checkpoint": str(checkpoint),
        "backend": config.backend,
        "rewards": config.rewards,
        "trainer": config.trainer,
        "processes": process.world_size,
        "steps": _reward_by_step(rollout.traces_path),
        **videos,
        "stage1_seconds": round(stage1_seconds, 1),
        "stage2_seconds": round(stage2_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if process.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log(f"run: done in {summary['seconds']} s; checkpoint {checkpoint}; summary {out / 'summary.json'}")
    return summary


STAGE2_KEYS = (
    "stage",
    "stage1_adapter",
    "rl",
    "rewards",
    "reward_weights",
    "trainer",
    "stage2_data",
    "earlier_stage2",
    "started_from",
    "started_from_sha256",
    "stage1_adapter_sha256",
    "dpo",
)


def _record_stage2(checkpoint: Path, adapter: str | None, config: RunConfig, trained_format: str | None) -> None:
    """Give a stage-2 adapter folder the enhancer.json inference reads: the prompt format the policy was trained
    with (the stage-1 adapter's, which the trainer kept; without it inference would fall back to "chat"), the
    stage-1 record it continues (and its train_metrics.json), and what stage 2 did, so that `enhancer export
    --ship-embedded` can ship it. A trainer that wrote its own is left alone."""
    from enhancer.models import METADATA_FILE

    if not checkpoint.is_dir() or (checkpoint / METADATA_FILE).exists():
        return
    started = read_metadata(adapter) if adapter else {}
    # a run may start from an earlier stage-2 adapter (a second phase with other prompts or weights): the record
    # keeps that phase, so a model card can tell every step between the SFT adapter and this one
    staged = "rl" in started or "dpo" in started  # `enhancer run` or `enhancer train dpo` made it
    earlier = {key: started[key] for key in STAGE2_KEYS if key in started} if staged else None
    info = {
        **{key: value for key, value in started.items() if key not in STAGE2_KEYS},
        "prompt_format": trained_format or "chat",
        "base_model": config.model,
        "stage": f"stage 2, {config.trainer} from the {'stage-2' if earlier else 'stage-1'} adapter "
        f"({config.rl.max_steps} updates of {config.rl.prompts_per_step} prompts x {config.rl.samples_per_prompt} "
        f"rewrites; rewards {', '.join(config.rewards)})",
        "stage1_adapter": (earlier.get("stage1_adapter") or earlier.get("dpo", {}).get("stage1_adapter"))
        if earlier
        else adapter,
        # the weights, not only the path: `adapter: embedded` resolves to core/assets/embedded, which a later ship
        # overwrites
        "stage1_adapter_sha256": (
            earlier.get("stage1_adapter_sha256") or earlier.get("dpo", {}).get("stage1_adapter_sha256")
        )
        if earlier
        else weights_sha256(adapter),
        **({"started_from": adapter, "earlier_stage2": earlier} if earlier else {}),
        "started_from_sha256": weights_sha256(adapter),
        "rl": asdict(config.rl),
        "rewards": config.rewards,
        "reward_weights": config.reward_weights,
        "trainer": config.trainer,
        "stage2_data": config.stage2_data,
    }
    (checkpoint / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    metrics = Path(adapter or "", "train_metrics.json")
    if adapter and metrics.is_file() and not (checkpoint / metrics.name).exists():
        shutil.copy2(metrics, checkpoint / metrics.name)  # stage 1's losses: what a model card of it reports


def _reward_by_step(traces: Path) -> list[dict]:
    return [
        {"step": s, "mean_reward": round(sum(r) / len(r), 4), "samples": len(r)}
        for s, r in rewards_by_step(traces).items()
    ]
