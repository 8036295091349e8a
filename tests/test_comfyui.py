"""examples/comfyui: the node pack ComfyUI would load (its mappings, input and return declarations, the example
workflow's wiring), and both loader sources run: the library in-process and an `enhancer serve` URL."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from enhancer.prompts import PROFILES
from enhancer.serve.api import Server

from conftest import REPO

PACK = REPO / "examples" / "comfyui"


@pytest.fixture(scope="module")
def nodes():
    spec = importlib.util.spec_from_file_location("enhancer_comfyui", PACK / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["enhancer_comfyui"] = module
    spec.loader.exec_module(module)  # as ComfyUI imports a custom_nodes folder: a package, relative imports
    return module


def test_the_pack_declares_what_comfyui_reads(nodes):
    assert (
        set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS) == {"EnhancerLoader", "EnhancePrompt"}
    )
    for node in nodes.NODE_CLASS_MAPPINGS.values():
        inputs = node.INPUT_TYPES()["required"]
        assert callable(getattr(node, node.FUNCTION)) and len(node.RETURN_TYPES) == len(node.RETURN_NAMES)
        assert all(isinstance(spec, tuple) and spec for spec in inputs.values())
    enhance = nodes.NODE_CLASS_MAPPINGS["EnhancePrompt"].INPUT_TYPES()["required"]
    assert enhance["target"][0] == list(PROFILES)  # the node offers exactly enhancer's targets
    workflow = json.loads((PACK / "example_workflow_api.json").read_text())
    ours = {k: v for k, v in workflow.items() if v["class_type"] in nodes.NODE_CLASS_MAPPINGS}
    for node in ours.values():  # every required input is given, links point at existing nodes and outputs
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        assert set(cls.INPUT_TYPES()["required"]) == set(node["inputs"])
    for node in workflow.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                source = workflow[value[0]]
                if source["class_type"] in nodes.NODE_CLASS_MAPPINGS:
                    assert value[1] < len(nodes.NODE_CLASS_MAPPINGS[source["class_type"]].RETURN_TYPES)


def test_local_and_server_sources_enhance(nodes, tiny_model_dir):
    from enhancer.enhance import Enhancer

    loader, enhance = nodes.NODE_CLASS_MAPPINGS["EnhancerLoader"](), nodes.NODE_CLASS_MAPPINGS["EnhancePrompt"]()
    (local,) = loader.load("local", str(tiny_model_dir), "", "", "")
    prompt, negative, variants = enhance.enhance(local, "a fox in the snow", "wan", 2, 5, 0)
    assert isinstance(prompt, str) and prompt and isinstance(negative, str)
    assert len(variants.split("\n")) >= 1 and variants.startswith(prompt)
    prompt, _, _ = enhance.enhance(local, "a fox in the snow", "generic", 1, 5, 3)
    assert len(prompt.split()) <= 3  # max_words holds

    served = Enhancer.load(model=str(tiny_model_dir), max_new_tokens=12, log=lambda m: None)
    with Server(served, api_key="k") as server:
        (remote,) = loader.load("server", "", "", server.url, "k")
        prompt, _, _ = enhance.enhance(remote, "a heron in the reeds", "ltx", 1, 1, 0)
        assert isinstance(prompt, str) and prompt
        (wrong,) = loader.load("server", "", "", server.url, "nope")
        with pytest.raises(RuntimeError, match="answered 401"):
            enhance.enhance(wrong, "a heron", "ltx", 1, 1, 0)
