"""ComfyUI nodes for enhancer: a loader (the library in ComfyUI's own Python, or an `enhancer serve` URL), an Enhance
node (STRING in, STRINGs out, an optional IMAGE the video starts from), a Show Text output node and an Unload node
that frees the model before the video model loads. ComfyUI reads NODE_CLASS_MAPPINGS from this package's
__init__.py; tests/test_comfyui.py loads the folder the way ComfyUI's `load_custom_node` does and runs the nodes.
"""

from __future__ import annotations

import base64
import gc
import inspect
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

TARGETS = ["generic", "sora", "veo", "wan", "ltx", "cogvideox", "hunyuan"]  # enhancer.prompts.PROFILES
TOKENS_PER_WORD = 1.4  # as enhancer.enhance.enhancer: English prose in Llama/Qwen-style tokenizers
log = logging.getLogger("enhancer.comfyui")

# Loaded models, by (model, adapter, vlm). ComfyUI keeps node outputs in its own cache, so the loader hands out a small
# handle and the model itself lives here, where the Unload node (or keep_loaded=False) can drop it.
_MODELS: dict[tuple[str, str, str], object] = {}


def free_memory() -> None:
    """Return what a dropped model held: Python's garbage, and the CUDA cache where torch has one."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def takes_keyword(function, name: str) -> bool:
    """Whether `function` accepts the keyword `name`: how the nodes tell an enhancer that reads images."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("enhancer")
    except PackageNotFoundError:
        return "not installed as a package"


def image_to_png(image) -> bytes:
    """ComfyUI's IMAGE (a float tensor [B, H, W, C], values 0..1) as PNG bytes: the first image of a batch, the
    frame an image-to-video model starts from. C may be 1 (grey), 3 (RGB) or 4 (RGBA)."""
    import numpy as np
    from PIL import Image

    if hasattr(image, "detach"):  # a torch tensor, possibly on the GPU or in half precision
        image = image.detach().cpu().float().numpy()
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 4:
        array = array[0]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise ValueError(
            f"image of shape {tuple(np.shape(image))}: expected ComfyUI's IMAGE, a [batch, height, width, channels] "
            "tensor with 1, 3 or 4 channels; connect a Load Image node (or any node with an IMAGE output)"
        )
    pixels = (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255).round().astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class LocalEnhancer:
    """enhancer inside ComfyUI's Python (needs `pip install enhancer` there). The model loads on first use and stays
    in `_MODELS` until an Unload node runs, or, with keep_loaded=False, is dropped after every use. `vlm` (an
    OpenAI-compatible vision endpoint or a local VLM folder) describes a connected IMAGE."""

    def __init__(self, model: str = "embedded", adapter: str = "", keep_loaded: bool = True, vlm: str = ""):
        self.key = (model or "embedded", adapter or "", vlm.strip())
        self.keep_loaded = keep_loaded

    def model(self):
        if self.key not in _MODELS:
            from enhancer.enhance import Enhancer

            model, adapter, vlm = self.key
            options = {"vlm": vlm} if vlm else {}
            if vlm and not takes_keyword(Enhancer.load, "vlm"):
                raise RuntimeError(
                    f"EnhancerLoader: vlm={vlm!r}, but the enhancer installed in ComfyUI's Python "
                    f"({_installed_version()}) takes no vision model; upgrade it (`python -m pip install -U enhancer`"
                    " with ComfyUI's Python) or clear vlm"
                )
            _MODELS[self.key] = Enhancer.load(model=model, adapter=adapter or None, **options)
        return _MODELS[self.key]

    def unload(self) -> bool:
        """Drops this loader's model; True when one was loaded."""
        dropped = _MODELS.pop(self.key, None) is not None
        if dropped:
            free_memory()
        return dropped

    def enhance(self, prompt, *, target, n, seed, max_new_tokens=None, image=None, **asks) -> dict:
        enhancer = self.model()
        try:
            options = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
            options.update(asks)  # mode, lang, instructions
            if image is not None:
                options["image"] = image
                if not takes_keyword(enhancer.enhance, "image"):
                    raise RuntimeError(
                        f"EnhancePrompt: an IMAGE is connected, but the enhancer installed in ComfyUI's Python "
                        f"({_installed_version()}) reads no images (its Enhancer.enhance takes no `image`). Upgrade "
                        "it (`python -m pip install -U enhancer` with ComfyUI's Python) or disconnect the image input."
                    )
                if getattr(enhancer, "vlm", None) is None:
                    raise RuntimeError(
                        "EnhancePrompt: an IMAGE is connected, but the loader has no vision model to describe it: set "
                        "the loader's vlm to an OpenAI-compatible vision endpoint (http://HOST:PORT/v1) or a local "
                        "VLM folder, or disconnect the image input."
                    )
            return enhancer.enhance(prompt, target=target, n=n, seed=seed, negative=True, **options).to_dict()
        finally:
            if not self.keep_loaded:
                self.unload()


class RemoteEnhancer:
    """The same calls over HTTP to `enhancer serve` (POST /v1/enhance); the model lives with the server."""

    def __init__(self, url: str, api_key: str = "", timeout: float = 300.0):
        parts = urllib.parse.urlparse(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"EnhancerLoader: server_url {url!r} is not an http(s) URL; give the address `enhancer serve` "
                "prints, e.g. http://127.0.0.1:8000"
            )
        self.url = url.strip().rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def body(self, prompt, *, target, n, seed, max_new_tokens=None, image=None, **asks) -> dict:
        body = {"prompt": prompt, "target": target, "n": n, "seed": seed, "negative": True, **asks}
        if max_new_tokens:  # the same keyword as Enhancer.enhance
            body["max_new_tokens"] = max_new_tokens
        if image is not None:  # the PNG itself: the server fetches no URLs (it needs `enhancer serve --vlm`)
            body["image"] = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
        return body

    def enhance(self, prompt, *, target, n, seed, max_new_tokens=None, image=None, **asks) -> dict:
        body = self.body(prompt, target=target, n=n, seed=seed, max_new_tokens=max_new_tokens, image=image, **asks)
        request = urllib.request.Request(
            f"{self.url}/v1/enhance", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # say what the server said, not just the code
            raise RuntimeError(f"enhancer serve answered {error.code}: {error.read().decode()[:500]}") from error
        except urllib.error.URLError as error:
            raise RuntimeError(
                f"cannot reach enhancer serve at {self.url} ({error.reason}): start it with `enhancer serve --port "
                "8000` on that machine, or correct the loader's server_url"
            ) from error

    def unload(self) -> bool:
        return False  # the model lives in the server's process; stopping the server frees it


class EnhancerLoader:
    """Where enhancer runs: `local` inside ComfyUI (needs `pip install enhancer` there), `server` at an
    `enhancer serve` URL."""

    CATEGORY = "enhancer"
    RETURN_TYPES = ("ENHANCER",)
    RETURN_NAMES = ("enhancer",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 (ComfyUI's name)
        return {
            "required": {
                "source": (["local", "server"], {"default": "local"}),
                "model": ("STRING", {"default": "embedded"}),
                "adapter": ("STRING", {"default": ""}),
                "server_url": ("STRING", {"default": "http://127.0.0.1:8000"}),
                "api_key": ("STRING", {"default": ""}),
            },
            "optional": {
                "keep_loaded": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "local: keep the model in memory between runs (off: load per run)"},
                ),
                "vlm": (
                    "STRING",
                    {"default": "", "tooltip": "local: a vision endpoint URL or VLM folder, to read an IMAGE input"},
                ),
            },
        }

    def load(self, source, model, adapter, server_url, api_key, keep_loaded=True, vlm=""):
        if source == "server":
            return (RemoteEnhancer(server_url, api_key),)
        return (LocalEnhancer(model, adapter, keep_loaded, vlm),)


class EnhancePrompt:
    """A short idea in; the detailed prompt, its negative prompt and all `n` variants (a list: nodes downstream run
    once per variant) out."""

    CATEGORY = "enhancer"
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("prompt", "negative", "variants")
    OUTPUT_IS_LIST = (False, False, True)
    FUNCTION = "enhance"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {
                "enhancer": ("ENHANCER",),
                "prompt": ("STRING", {"multiline": True, "default": "a fox trotting across a snowy field at dawn"}),
                "target": (TARGETS, {"default": "generic"}),
                "n": ("INT", {"default": 1, "min": 1, "max": 8}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
                "max_words": (
                    "INT",
                    {"default": 0, "min": 0, "max": 400, "tooltip": "0: the target's own budget; else a token cap"},
                ),
            },
            "optional": {
                "image": (
                    "IMAGE",
                    {"tooltip": "the frame the video starts from (needs the loader's vlm, or enhancer serve --vlm)"},
                ),
                "mode": (["cinematic", "concise", "detailed"], {"default": "cinematic"}),
                "lang": (
                    "STRING",
                    {"default": "en", "tooltip": "the language to write in (ISO 639-1: en, zh, de...)"},
                ),
                "instructions": ("STRING", {"default": "", "tooltip": "your direction, e.g. night, handheld camera"}),
            },
        }

    def enhance(self, enhancer, prompt, target, n, seed, max_words, image=None, mode="cinematic", lang="en",
                instructions=""):  # fmt: skip
        max_new_tokens = int(max_words * TOKENS_PER_WORD) + 8 if max_words else None
        png = image_to_png(image) if image is not None else None
        asks = {"mode": mode} if mode and mode != "cinematic" else {}
        if lang and lang.strip().lower() != "en":
            asks["lang"] = lang.strip().lower()
        if instructions and instructions.strip():
            asks["instructions"] = instructions.strip()
        row = enhancer.enhance(prompt, target=target, n=n, seed=seed, max_new_tokens=max_new_tokens, image=png, **asks)
        variants = row.get("variants") or [row["enhanced"]]
        if row.get("status", "ok") != "ok":
            log.warning("enhancer: %s for %r: %s", row.get("status"), prompt, row.get("message"))
        longest = max(len(text.split()) for text in variants)
        if max_words and longest > max_words:  # the text is never cut here: a cut mid-sentence reads worse
            log.warning(
                "enhancer: a variant has %d words, over max_words=%d. %s",
                longest,
                max_words,
                "The text is as the server wrote it (an enhancer serve whose /v1/enhance takes no max_new_tokens "
                "writes the target's own length)."
                if isinstance(enhancer, RemoteEnhancer)
                else "max_words caps tokens (1.4 a word) and the text ends at a full sentence; lower it for less.",
            )
        return (variants[0], row.get("negative") or "", variants)


class EnhancerShowText:
    """Shows texts in the node (and passes them on): an output node, so a workflow that only enhances queues."""

    CATEGORY = "enhancer"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    INPUT_IS_LIST = True  # every variant at once, not one call each
    OUTPUT_IS_LIST = (True,)
    OUTPUT_NODE = True
    FUNCTION = "show"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    def show(self, text):
        texts = [str(item) for item in text]
        return {"ui": {"text": texts}, "result": (texts,)}


class EnhancerUnload:
    """Frees the enhancer's model (a local source's; a server keeps its own) and passes the prompts on, so wiring
    it between EnhancePrompt and the text encoders frees the memory before the video model loads. ComfyUI reruns it
    whenever what feeds it reran (the Enhance node, which loads the model); no IS_CHANGED, so an unchanged workflow
    stays cached downstream (the video is not rendered again)."""

    CATEGORY = "enhancer"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("prompt", "negative")
    OUTPUT_NODE = True  # also runs on its own, wired to the loader only
    FUNCTION = "unload"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {"enhancer": ("ENHANCER",)},
            "optional": {"prompt": ("STRING", {"forceInput": True}), "negative": ("STRING", {"forceInput": True})},
        }

    def unload(self, enhancer, prompt="", negative=""):
        dropped = enhancer.unload()
        note = "model unloaded" if dropped else "nothing to unload (not loaded, or a server's model)"
        return {"ui": {"text": [note]}, "result": (prompt, negative)}


NODE_CLASS_MAPPINGS = {
    "EnhancerLoader": EnhancerLoader,
    "EnhancePrompt": EnhancePrompt,
    "EnhancerShowText": EnhancerShowText,
    "EnhancerUnload": EnhancerUnload,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EnhancerLoader": "enhancer: load",
    "EnhancePrompt": "enhancer: enhance prompt",
    "EnhancerShowText": "enhancer: show text",
    "EnhancerUnload": "enhancer: unload",
}
