"""Every YAML recipe loads into the typed config, names registered plugins and points at data that exists."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from enhancer.config import RunConfig
from enhancer.registry import PluginRegistry
from enhancer.train.orchestrator import check_plugins

from conftest import BIN, REPO

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
EVAL_RECIPES = [r for r in RECIPES if r.relative_to(REPO / "recipes").parts[0] == "eval"]
ACCELERATE_CONFIGS = [r for r in RECIPES if r.relative_to(REPO / "recipes").parts[0] == "accelerate"]
RUN_RECIPES = [r for r in RECIPES if r not in EVAL_RECIPES and r not in ACCELERATE_CONFIGS]


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_is_valid(config: Path):
    values = yaml.safe_load(config.read_text())
    assert values["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP")
    assert values["mixed_precision"] == "bf16" and values["num_processes"] >= 1
    if values["distributed_type"] == "DEEPSPEED":
        assert values["deepspeed_config"]["zero_stage"] in (2, 3)
    assert f"--config_file recipes/accelerate/{config.name}" in config.read_text().splitlines()[1]


@pytest.mark.parametrize("recipe", EVAL_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_eval_recipe_is_valid(recipe: Path):
    from enhancer.eval.config import EvalConfig

    config = EvalConfig.from_yaml(str(recipe))
    registry = PluginRegistry.load(extra_modules=config.plugins)
    for name in config.scorers:
        registry.get("scorer", name)
    for path in config.prompts:
        assert (REPO / path).exists(), f"{recipe.name}: {path} does not exist"
    header = recipe.read_text().splitlines()[:8]
    assert any("enhancer eval --recipe" in line for line in header), "the header must say how to run it"


@pytest.mark.parametrize("recipe", RUN_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_is_valid(recipe: Path):
    config = RunConfig.from_yaml(str(recipe))
    registry = PluginRegistry.load(extra_modules=config.plugins)
    check_plugins(registry, config)  # names and options bind to the plugins' factories
    for path in config.stage1_data + config.stage2_data:
        assert (REPO / path).exists(), f"{recipe.name}: {path} does not exist"
    header = recipe.read_text().splitlines()[:8]
    commands = ("enhancer run --recipe", "enhancer train sft --recipe")
    assert any(c in line for c in commands for line in header), "the header must say how to run it"


def test_there_are_recipes():
    assert RUN_RECIPES and EVAL_RECIPES and len(ACCELERATE_CONFIGS) == 4
    sft = {r.name for r in RUN_RECIPES if r.parent.name == "sft"}
    assert sft == {"smollm2-135m-cpu.yaml", "qwen2.5-0.5b.yaml", "qwen2.5-7b.yaml", "qwen2.5-14b.yaml"}
    rl = {r.name: RunConfig.from_yaml(str(r)) for r in RUN_RECIPES if r.parent.name == "rl"}
    assert set(rl) == {
        "smollm2-135m-cpu.yaml",
        "smollm2-135m-instructions-cpu.yaml",
        "smollm2-135m-instructions-mix-cpu.yaml",
        "qwen2.5-14b-sora.yaml",
        "qwen2.5-14b-wan.yaml",
        "qwen2.5-14b-cluster.yaml",
    }
    # the GPU recipes' rewrites per update split evenly over the processes their launch lines start
    for name, processes in (
        ("qwen2.5-14b-sora.yaml", 8),
        ("qwen2.5-14b-wan.yaml", 8),
        ("qwen2.5-14b-cluster.yaml", 4),
    ):
        rl[name].validate_for(processes)
        assert f"--recipe recipes/rl/{name}" in (REPO / "recipes" / "rl" / name).read_text()
    pool = PluginRegistry.load().create(
        "backend", "sora", out_dir="unused", **rl["qwen2.5-14b-cluster.yaml"].backend_options
    )
    assert len(pool.base_urls) == 4 and pool.worker_concurrency == 1  # the options bind to the plugin
    assert (rl["qwen2.5-14b-sora.yaml"].backend, rl["qwen2.5-14b-sora.yaml"].trainer) == ("sora", "trl_ppo")
    assert rl["qwen2.5-14b-sora.yaml"].rewards == ["visionreward"]
    # stage 2 aimed at instruction echo trains on its own prompts, never on the held-out adversarial slice
    aimed = rl["smollm2-135m-instructions-cpu.yaml"]
    assert aimed.stage2_data == ["data/stage2/instructions.jsonl"] and {"echo", "invented"} <= set(aimed.rewards)
    # its second phase starts from the first phase's adapter and mixes in style-naming ideas
    mix = rl["smollm2-135m-instructions-mix-cpu.yaml"]
    assert mix.adapter == aimed.out + "/stage2/adapter" and "data/stage2/prompts.jsonl" in mix.stage2_data
    held_out = {json.loads(line)["simple"] for line in (REPO / "data/eval/adversarial.jsonl").open()}
    trained = {json.loads(line)["simple"] for path in mix.stage2_data for line in (REPO / path).open()}
    assert len(held_out) >= 40 and not held_out & trained


@pytest.mark.slow
def test_demo_recipe_on_the_embedded_model(tmp_path):
    """What `make demo` runs: the embedded model, SFT then GRPO against synthetic videos (about 3 minutes)."""
    result = subprocess.run(
        [
            str(BIN / "enhancer"),
            "run",
            "--recipe",
            str(REPO / "recipes/demo/smollm2-135m-cpu.yaml"),
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "demo" / "stage2" / "adapter" / "adapter_model.safetensors").exists()
    assert len((tmp_path / "demo" / "traces.jsonl").read_text().splitlines()) == 2 * 2 * 2
