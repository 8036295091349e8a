"""ComfyUI nodes for enhancer: a loader (the library in ComfyUI's own Python, or an `enhancer serve` URL) and
an Enhance node (STRING in, STRING out). ComfyUI reads NODE_CLASS_MAPPINGS from this package's __init__.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

TARGETS = ["generic", "sora", "veo", "wan", "ltx", "cogvideox", "hunyuan"]  # enhancer.prompts.PROFILES
TOKENS_PER_WORD = 1.4


class RemoteEnhancer:
    """The part of `Enhancer` the Enhance node uses, over HTTP to `enhancer serve`."""

    def __init__(self, url: str, api_key: str = "", timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def enhance(self, prompt, target="generic", n=1, seed=None, negative=False, max_new_tokens=None):
        body = {"prompt": prompt, "target": target, "n": n, "seed": seed, "negative": negative}
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


class EnhancerLoader:
    """Load enhancer once: `local` runs the model inside ComfyUI (needs `pip install enhancer` there), `server`
    calls an `enhancer serve` URL."""

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
            }
        }

    def load(self, source, model, adapter, server_url, api_key):
        if source == "server":
            return (RemoteEnhancer(server_url, api_key),)
        from enhancer.enhance import Enhancer

        return (Enhancer.load(model=model or "embedded", adapter=adapter or None),)


class EnhancePrompt:
    """A short idea in, a detailed video prompt out (plus the negative prompt and every variant, one per line)."""

    CATEGORY = "enhancer"
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("prompt", "negative", "variants")
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
                "max_words": ("INT", {"default": 0, "min": 0, "max": 400, "tooltip": "0: the target's own budget"}),
            }
        }

    def enhance(self, enhancer, prompt, target, n, seed, max_words):
        options = {"max_new_tokens": int(max_words * TOKENS_PER_WORD) + 8} if max_words else {}
        if isinstance(enhancer, RemoteEnhancer):
            row = enhancer.enhance(prompt, target=target, n=n, seed=seed, negative=True, **options)
        else:
            row = enhancer.enhance(prompt, target=target, n=n, seed=seed, negative=True, **options).to_dict()
        variants = row.get("variants") or [row["enhanced"]]
        if max_words:  # the token cap is approximate; never hand the video model more words than asked
            variants = [" ".join(v.split()[:max_words]) for v in variants]
        return (variants[0], row.get("negative") or "", "\n".join(variants))


NODE_CLASS_MAPPINGS = {"EnhancerLoader": EnhancerLoader, "EnhancePrompt": EnhancePrompt}
NODE_DISPLAY_NAME_MAPPINGS = {"EnhancerLoader": "enhancer: load", "EnhancePrompt": "enhancer: enhance prompt"}
