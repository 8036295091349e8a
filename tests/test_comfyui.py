"""examples/comfyui as ComfyUI meets it: loaded from custom_nodes/ the way ComfyUI's `load_custom_node` loads a pack,
its classes described as GET /object_info describes them, the example workflow validated by the rules of ComfyUI's
`validate_prompt` (it must have an output node) and its enhancer branch run as ComfyUI's executor runs it (lists,
UI texts). ComfyUI is not on PyPI, so tests/comfy_runtime.py mirrors those functions (see its docstring); the core
nodes the workflow uses are declared in tests/comfy_core_nodes.py. Both loader sources run for real: the library
in-process on a tiny model, and a real `enhancer serve` in front of the OpenAI-protocol chat stand-in."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import shutil
import socket
import sys
import tomllib
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from enhancer.contracts import Enhancement
from enhancer.enhance import Enhancer
from enhancer.prompts import PROFILES
from enhancer.serve.api import Server

from chat_server import ChatServer
from comfy_core_nodes import WAN_FILES, core_nodes
from comfy_runtime import execute, load_custom_node, node_info, validate_prompt
from conftest import REPO
from local_http import call

PACK = REPO / "examples" / "comfyui"
WORKFLOW = json.loads((PACK / "example_workflow_api.json").read_text())


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """The pack as README.md installs it (copied to custom_nodes/enhancer) and ComfyUI imports it."""
    folder = tmp_path_factory.mktemp("ComfyUI") / "custom_nodes" / "enhancer"
    shutil.copytree(PACK, folder)
    path_before = list(sys.path)
    module = load_custom_node(folder)
    assert sys.path == path_before  # nothing beyond what ComfyUI does: no sys.path entry for the pack
    return module


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real `enhancer serve` (key "k") whose enhancer talks to the chat stand-in: fast, with real prose."""
    with ChatServer() as chat:
        enhancer = Enhancer.load(engine="openai", base_url=chat.base_url, log=lambda m: None)
        with Server(enhancer, api_key="k") as server:
            server.chat = chat  # what the model was asked
            yield server


def test_comfyui_loads_the_pack_and_describes_every_node(pack):
    classes, names = pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS
    assert set(classes) == set(names) == {"EnhancerLoader", "EnhancePrompt", "EnhancerShowText", "EnhancerUnload"}
    assert (pack.web_dir and (PACK / "web" / "enhancer.js").is_file()) and pack.web_dir.endswith("web")
    for name, cls in classes.items():
        info = node_info(name, cls, names)  # what the frontend gets, JSON-encodable
        assert info["python_module"] == "custom_nodes.enhancer" and info["category"] == "enhancer"
        assert callable(getattr(cls(), cls.FUNCTION))
        assert len(info["output"]) == len(info["output_name"]) == len(info["output_is_list"])
        assert set(info["input"]) <= {"required", "optional", "hidden"}
        for spec in [s for group in info["input"].values() for s in group.values()]:
            assert isinstance(spec, tuple) and isinstance(spec[0], (str, list)) and spec[0]
    assert classes["EnhancePrompt"].INPUT_TYPES()["required"]["target"][0] == list(PROFILES)
    outputs = {name for name, cls in classes.items() if node_info(name, cls, names)["output_node"]}
    assert outputs == {"EnhancerShowText", "EnhancerUnload"}
    assert node_info("EnhancePrompt", classes["EnhancePrompt"], names)["output_is_list"] == (False, False, True)


def test_the_example_workflow_queues_and_says_what_a_stock_install_lacks(pack):
    classes = {**core_nodes(), **pack.NODE_CLASS_MAPPINGS}
    for node_id, node in WORKFLOW.items():  # stricter than ComfyUI, which ignores unknown inputs: catches typos
        declared = classes[node["class_type"]].INPUT_TYPES()
        assert set(node["inputs"]) <= {*declared["required"], *declared.get("optional", {})}, node_id
    # A stock install without the Wan files: the enhancer outputs queue and run; the video output waits for files.
    valid, error, outputs, node_errors = validate_prompt(copy.deepcopy(WORKFLOW), classes)
    assert valid and error is None and sorted(outputs) == ["3", "4"]
    assert sorted(node_errors) == ["5", "6", "7"]  # UNETLoader, CLIPLoader, VAELoader: their model files
    assert {e["type"] for errors in node_errors.values() for e in errors["errors"]} == {"value_not_in_list"}
    # With the files of ComfyUI's Wan 2.1 template, everything validates, the video too.
    valid, _, outputs, node_errors = validate_prompt(copy.deepcopy(WORKFLOW), {**classes, **core_nodes(WAN_FILES)})
    assert valid and sorted(outputs) == ["14", "3", "4"] and node_errors == {}
    # The workflow as it was (no output node) is what ComfyUI refuses; a broken link is caught too.
    no_outputs = {k: v for k, v in WORKFLOW.items() if k not in ("3", "4", "14")}
    assert validate_prompt(no_outputs, classes)[1]["message"] == "Prompt has no outputs"
    broken = copy.deepcopy(WORKFLOW)
    broken["3"]["inputs"]["text"] = ["2", 5]  # no slot 5: that output fails, the others still run
    _, _, outputs, node_errors = validate_prompt(broken, classes)
    assert outputs == ["4"] and node_errors["3"]["errors"][0]["type"] == "exception_during_validation"
    broken["3"]["inputs"]["text"] = ["1", 0]  # ENHANCER into a STRING input
    assert validate_prompt(broken, classes)[3]["3"]["errors"][0]["type"] == "return_type_mismatch"
    assert validate_prompt({"1": {"class_type": "Nope", "inputs": {}}}, classes)[1]["type"] == "invalid_prompt"


def test_the_enhancer_branch_runs_as_comfyui_runs_it(pack, served):
    workflow = copy.deepcopy(WORKFLOW)  # the loader switched to server mode, as a user sets its widgets
    workflow["1"]["inputs"].update(source="server", server_url=served.url, api_key="k")
    workflow["2"]["inputs"].update(n=2, target="ltx")
    classes = {**core_nodes(), **pack.NODE_CLASS_MAPPINGS}
    _, _, outputs, _ = validate_prompt(workflow, classes)
    results, ui = execute(workflow, classes, outputs)
    prompt, negative, variants = results["2"]
    assert len(variants) == 2 and prompt == [variants[0]] and variants[0] != variants[1]
    assert ui["3"]["text"] == variants  # Show Text got the whole list in one call (INPUT_IS_LIST) and shows it
    assert results["4"] == [prompt, negative]  # Unload passes the prompts on to the text encoders
    assert ui["4"]["text"] == ["nothing to unload (not loaded, or a server's model)"]


def test_server_mode_sends_the_target_and_a_length_and_never_cuts_words(pack, served, caplog):
    loader, enhance = pack.NODE_CLASS_MAPPINGS["EnhancerLoader"](), pack.NODE_CLASS_MAPPINGS["EnhancePrompt"]()
    (remote,) = loader.load("server", "", "", served.url, "k")
    assert remote.body("a heron", target="ltx", n=2, seed=1, max_new_tokens=22) == {
        "prompt": "a heron",
        "target": "ltx",
        "n": 2,
        "seed": 1,
        "negative": True,
        "max_new_tokens": 22,
    }
    assert "max_new_tokens" not in remote.body("a heron", target="ltx", n=1, seed=1)
    with caplog.at_level(logging.WARNING, logger="enhancer.comfyui"):
        prompt, negative, variants = enhance.enhance(remote, "a heron in the reeds", "ltx", 2, 3, 10)
    status, direct = call(
        f"{served.url}/v1/enhance", remote.body("a heron in the reeds", target="ltx", n=2, seed=3), "k"
    )
    assert status == 200 and variants == direct["variants"] and prompt == direct["enhanced"]  # whole, uncut texts
    assert negative == direct["negative"] and all(text.endswith(".") for text in variants)
    assert "over max_words=10" in caplog.text and "as the server wrote it" in caplog.text
    (wrong,) = loader.load("server", "", "", served.url, "nope")
    with pytest.raises(RuntimeError, match="answered 401"):
        enhance.enhance(wrong, "a heron", "ltx", 1, 1, 0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    (gone,) = loader.load("server", "", "", f"http://127.0.0.1:{closed}", "")
    with pytest.raises(RuntimeError, match="cannot reach enhancer serve .* start it with `enhancer serve"):
        enhance.enhance(gone, "a heron", "ltx", 1, 1, 0)
    with pytest.raises(ValueError, match="not an http\\(s\\) URL"):
        loader.load("server", "", "", "127.0.0.1:8000", "")
    # an IMAGE goes to the server as the PNG itself; this server has no --vlm, so it says so (422)
    body = remote.body("a heron", target="ltx", n=1, seed=1, image=b"\x89PNG", mode="concise", lang="de")
    assert body["image"] == "data:image/png;base64,iVBORw==" and body["mode"] == "concise" and body["lang"] == "de"
    with pytest.raises(RuntimeError, match="answered 422.*vision model"):
        enhance.enhance(remote, "a heron", "ltx", 1, 1, 0, image=torch.zeros(1, 4, 4, 3))
    # mode, language and instructions reach the model through the server (a multilingual one: it is told the
    # language to write; the chat stand-in records what it was asked)
    enhance.enhance(remote, "a heron", "ltx", 1, 1, 0, mode="concise", lang="de", instructions="slow pan")
    asked = next(r for r in reversed(served.chat.requests) if "Idea: a heron" in r["messages"][-1]["content"])
    turn = asked["messages"][-1]["content"]
    assert "Also: slow pan" in turn and "Write the prompt in German." in turn and "Keep it short" in turn
    status, _ = call(f"{served.url}/v1/enhance", {"prompt": "a heron", "mode": "epic"}, "k")
    assert status == 422


def test_local_source_keeps_the_model_until_unloaded_then_reloads(pack, tiny_model_dir):
    classes, models = pack.NODE_CLASS_MAPPINGS, pack.nodes._MODELS
    loader, enhance, unload = classes["EnhancerLoader"](), classes["EnhancePrompt"](), classes["EnhancerUnload"]()
    (local,) = loader.load("local", str(tiny_model_dir), "", "", "")  # keep_loaded defaults to True
    key = (str(tiny_model_dir), "", "")
    assert key not in models  # the loader hands out a handle; the model loads on first use
    prompt, negative, variants = enhance.enhance(local, "a fox in the snow", "wan", 2, 5, 4)
    assert isinstance(prompt, str) and prompt == variants[0] and isinstance(variants, list) and len(variants) >= 1
    first = weakref.ref(models[key])
    enhance.enhance(local, "a fox in the snow", "wan", 1, 6, 4)
    assert models[key] is first()  # kept between runs
    out = unload.unload(local, prompt, negative)
    assert out["result"] == (prompt, negative) and out["ui"]["text"] == ["model unloaded"]
    assert key not in models and first() is None  # dropped and collected: nothing else held it
    enhance.enhance(local, "a fox in the snow", "wan", 1, 5, 4)
    assert key in models  # the next use reloads it
    assert unload.unload(local)["ui"]["text"] == ["model unloaded"] and key not in models
    (once,) = loader.load("local", str(tiny_model_dir), "", "", "", keep_loaded=False)
    enhance.enhance(once, "a fox in the snow", "generic", 1, 5, 4)
    assert key not in models  # keep_loaded=False: loaded for the run, dropped after it


class ReadsImages:
    """A stand-in enhancer whose `enhance` takes `image`, as newer enhancer versions' does (with a vision model)."""

    vlm = "stand-in"

    def __init__(self):
        self.images = []

    def enhance(
        self, prompt, target="generic", n=1, seed=None, negative=False, max_new_tokens=None, image=None, **asks
    ):
        self.images.append(image)
        self.asks = asks
        return Enhancement(prompt=prompt, enhanced=f"{prompt}, as the picture shows.", target=target, seed=seed)


class TextOnly:
    """A stand-in for an enhancer version whose `enhance` reads no images."""

    def enhance(self, prompt, target="generic", n=1, seed=None, negative=False, max_new_tokens=None):
        return Enhancement(prompt=prompt, enhanced=prompt, target=target, seed=seed)


def test_image_to_png_turns_a_comfyui_image_into_png_bytes(pack):
    image_to_png = pack.nodes.image_to_png
    batch = torch.rand(2, 4, 6, 3)
    batch[0, 0, 0] = torch.tensor([-0.5, 1.5, 0.5])  # out of range: clipped
    png = image_to_png(batch)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = Image.open(io.BytesIO(png))
    assert decoded.size == (6, 4) and decoded.mode == "RGB"  # (width, height) of the first image
    expected = (batch[0].clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(torch.from_numpy(np.array(decoded)), expected)
    assert Image.open(io.BytesIO(image_to_png(torch.rand(1, 3, 5, 4).half()))).mode == "RGBA"
    assert Image.open(io.BytesIO(image_to_png(torch.rand(1, 3, 5, 1)))).mode == "L"
    with pytest.raises(ValueError, match="expected ComfyUI's IMAGE"):
        image_to_png(torch.rand(4, 6))


def test_an_image_goes_to_an_enhancer_that_reads_images_and_is_refused_clearly_otherwise(pack):
    models, enhance = pack.nodes._MODELS, pack.NODE_CLASS_MAPPINGS["EnhancePrompt"]()
    loader = pack.NODE_CLASS_MAPPINGS["EnhancerLoader"]()
    image = torch.rand(1, 8, 8, 3)
    models[("vision-stand-in", "", "")] = reader = ReadsImages()
    (local,) = loader.load("local", "vision-stand-in", "", "", "")
    prompt, _, _ = enhance.enhance(local, "a kite", "wan", 1, 2, 0, image=image)
    assert prompt == "a kite, as the picture shows." and reader.images == [pack.nodes.image_to_png(image)]
    enhance.enhance(local, "a kite", "wan", 1, 2, 0)
    assert reader.images[-1] is None and reader.asks == {}  # nothing connected or set: nothing passed
    enhance.enhance(local, "a kite", "wan", 1, 2, 0, mode="detailed", lang=" ZH ", instructions=" at dusk ")
    assert reader.asks == {"mode": "detailed", "lang": "zh", "instructions": "at dusk"}
    models[("text-stand-in", "", "")] = TextOnly()
    (text_only,) = loader.load("local", "text-stand-in", "", "", "")
    with pytest.raises(RuntimeError, match="reads no images .* Upgrade it .* or disconnect the image input"):
        enhance.enhance(text_only, "a kite", "wan", 1, 2, 0, image=image)
    assert enhance.enhance(text_only, "a kite", "wan", 1, 2, 0)[0] == "a kite"
    models.clear()


def test_an_image_is_described_by_the_loaders_vision_model_before_the_rewrite(pack, tiny_model_dir):
    """The real path: the tiny model, the IMAGE as PNG, enhancer's vision code, a vision endpoint on 127.0.0.1."""
    from vision_server import VisionChatServer

    loader, enhance = pack.NODE_CLASS_MAPPINGS["EnhancerLoader"](), pack.NODE_CLASS_MAPPINGS["EnhancePrompt"]()
    image = torch.zeros(1, 16, 24, 3)
    image[..., 0] = 1.0  # a red frame
    (no_vlm,) = loader.load("local", str(tiny_model_dir), "", "", "")
    with pytest.raises(RuntimeError, match="no vision model to describe it: set the loader's vlm"):
        enhance.enhance(no_vlm, "a kite", "wan", 1, 2, 4, image=image)
    with VisionChatServer(responder=lambda body: "A plain red frame.") as vision:
        (local,) = loader.load("local", str(tiny_model_dir), "", "", "", vlm=vision.base_url)
        prompt, _, _ = enhance.enhance(local, "a kite", "wan", 1, 2, 4, image=image)
        assert local.unload()
    assert isinstance(prompt, str) and prompt and len(vision.requests) == 1
    parts = vision.requests[0]["messages"][-1]["content"]
    sent = next(part["image_url"]["url"] for part in parts if part["type"] == "image_url")
    assert sent.startswith("data:image/png;base64,")
    seen = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1]))).convert("RGB")
    assert seen.size == (24, 16) and seen.getpixel((5, 5)) == (255, 0, 0)  # the frame the node was given


def test_the_pack_metadata_names_what_comfyuis_registry_reads():
    project = tomllib.loads((PACK / "pyproject.toml").read_text())["project"]
    # enhancer has no public address yet; when [project.urls] is added, it must name real addresses
    urls = project.get("urls", {})
    assert set(urls) <= {"Repository", "Documentation", "Bug Tracker", "Homepage"}
    for url in urls.values():
        assert url.startswith("https://") and "<" not in url and "your" not in url.lower(), url
    assert project["name"] == "comfyui-enhancer" and project["version"] and project["description"]
    assert project["license"] and project["requires-python"]
    comfy = tomllib.loads((PACK / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
