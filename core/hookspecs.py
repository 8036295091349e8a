"""The three hook specs every enhancer plugin implements some of (pluggy project name "enhancer").

A plugin is a module (or object) with functions marked `@enhancer.hookimpl`. Each hook returns a dict from a
*name* (what users type after `--backend`, `--reward`, `--trainer` or in a recipe) to a *factory*: a callable
that takes the options from the recipe as keyword arguments and returns the object. Factories are called
only when the name is chosen, so listing plugins never loads a model.

Register a plugin package through the entry-point group "enhancer" in its pyproject.toml:

    [project.entry-points.enhancer]
    my_plugin = "my_package.plugin_module"

or load a module for one run with `enhancer run --plugin my_package.plugin_module`.
See examples/third_party_plugin/ for a complete package.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from enhancer.contracts import PolicyTrainer, RewardScorer, VideoBackend

hookspec = pluggy.HookspecMarker("enhancer")
hookimpl = pluggy.HookimplMarker("enhancer")


@hookspec
def enhancer_video_backends() -> dict[str, Callable[..., VideoBackend]]:
    """Video backends: name -> factory(out_dir=..., **options) returning an object with
    `async generate(prompt, *, seed, seconds, size, negative_prompt=None) -> Video` and
    `estimate_cost(*, seconds, size) -> float` (US dollars; 0 for local backends).
    The core passes `out_dir`, the folder where the backend writes its mp4 files."""


@hookspec
def enhancer_reward_scorers() -> dict[str, Callable[..., RewardScorer]]:
    """Reward scorers: name -> factory(**options) returning an object with
    `score(samples: list[Sample]) -> list[float | None]`, one entry per sample, higher is better;
    `None` when a sample could not be scored (the core leaves it out of the mean, it is never a fake 0)."""


@hookspec
def enhancer_policy_trainers() -> dict[str, Callable[..., PolicyTrainer]]:
    """Policy trainers: name -> factory(**options) returning an object with
    `train(policy, dataset, rollout, context) -> str` (the checkpoint directory). `policy` is a `Policy`
    (model path, optional adapter, target, the prompt format the adapter learned), `dataset` a list of simple
    prompts, `rollout` the core's `Rollout` (enhanced prompts -> rewards through the registered backend and
    scorers) and `context` a `TrainContext`: the stage's folder, the stage-2 settings (`context.rl`), the seed,
    the process and a logger.

    Duties (the built-in trainers are run against each: tests/test_multiprocess.py, tests/test_trl_ppo.py):
    - call `rollout.rewind(step)` before the first rollout with the update a checkpoint resumes at (a trainer that
      does not starts at step 0, and the traces of an earlier attempt are set aside);
    - stop cleanly on `BudgetExceeded` (raised by the rollout on every process at the same update) and save;
    - under several processes (`context.process.world_size > 1`) call the rollout on every process once per
      update with that process's share of the update's rewrites, and write files from the main process only;
    - write checkpoints and the final adapter under `context.out_dir`.
    A trainer written for the older `train(policy, dataset, rollout, config)` still runs (it gets the RunConfig)."""
