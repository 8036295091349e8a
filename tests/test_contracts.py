"""Every built-in plugin keeps the contract its hook spec (core/hookspecs.py) writes down: backends, scorers and
trainers as the core calls them, found through the same registry a third-party plugin goes through."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from enhancer.contracts import Sample, Video
from enhancer.registry import PluginRegistry
from enhancer.video.service import submits_jobs

REGISTRY = PluginRegistry.load()
BUILT_IN = {
    kind: sorted(name for name, entry in REGISTRY.entries[kind].items() if entry.source.startswith("enhancer "))
    for kind in ("backend", "scorer", "trainer")
}
# what a backend needs to be built here, without a GPU or a model download (options a recipe would give)
BACKEND_OPTIONS = {"sora": {"base_url": "http://127.0.0.1:9/v1"}, "diffusers": None, "synthetic": {}}
# scorers that load a model or need a server at construction are checked as classes only
SCORER_OPTIONS = {"visionreward": {"url": "http://127.0.0.1:9"}, "videoalign": {"url": "http://127.0.0.1:9"}}
NEEDS_A_MODEL = {"clip_fallback"}


def test_the_built_ins_are_all_here():
    assert BUILT_IN["backend"] == ["diffusers", "sora", "synthetic"]
    assert BUILT_IN["trainer"] == ["trl_grpo", "trl_ppo"]
    assert {"keep", "quote", "style", "coverage", "budget", "clean", "text", "faithfulness"} <= set(BUILT_IN["scorer"])


@pytest.mark.parametrize("name", BUILT_IN["backend"])
def test_backend_contract(name, tmp_path):
    factory = REGISTRY.get("backend", name).factory
    assert "out_dir" in inspect.signature(factory).parameters  # the core decides where videos go
    assert inspect.iscoroutinefunction(factory.generate)
    parameters = inspect.signature(factory.generate).parameters
    assert {"prompt", "seed", "seconds", "size", "negative_prompt"} <= set(parameters)
    if getattr(factory, "submits_jobs", False):
        assert inspect.iscoroutinefunction(factory.submit) and inspect.iscoroutinefunction(factory.fetch)
    options = BACKEND_OPTIONS[name]
    if options is None:
        return  # needs a model folder to build (tests/test_diffusers_backend.py builds a tiny one)
    backend = REGISTRY.create("backend", name, out_dir=str(tmp_path), **options)
    assert backend.name == name and submits_jobs(backend) == (name == "sora")
    cost = backend.estimate_cost(seconds=2.0, size="64x48")
    assert isinstance(cost, float) and cost >= 0
    if name == "synthetic":
        video = asyncio.run(backend.generate("a fox", seed=0, seconds=0.5, size="32x32", negative_prompt=None))
        assert isinstance(video, Video) and video.backend == name and video.seconds_of_video == 0.5


@pytest.mark.parametrize("name", BUILT_IN["scorer"])
def test_scorer_contract(name):
    factory = REGISTRY.get("scorer", name).factory
    assert list(inspect.signature(factory.score).parameters) == ["self", "samples"]
    if name in NEEDS_A_MODEL:
        return  # tests/test_video_scorers.py builds it on a tiny model
    scorer = REGISTRY.create("scorer", name, **SCORER_OPTIONS.get(name, {}))
    samples = [Sample("a red kite", "A red kite over a beach at dawn, wide shot."), Sample("a boat", "")]
    scores = scorer.score(samples)
    assert len(scores) == len(samples)  # one entry per sample
    assert all(s is None or (isinstance(s, float) and 0.0 <= s <= 1.0) for s in scores), scores
    if name in ("video_metrics", "visionreward", "videoalign"):
        assert scores == [None, None]  # no video to judge: "could not score", never a fake 0


@pytest.mark.parametrize("name", BUILT_IN["trainer"])
def test_trainer_contract(name):
    trainer = REGISTRY.create("trainer", name)
    assert list(inspect.signature(trainer.train).parameters) == ["policy", "dataset", "rollout", "context"]
    # the duties hookspecs.py lists are tested by running them: resuming after a kill (test_trl_ppo.py,
    # test_multiprocess.py), several processes (test_multiprocess.py), the budget (test_loop.py)
