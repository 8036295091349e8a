"""Video backend "diffusers": local text-to-video pipelines from the diffusers library (Wan 2.1/2.2, LTX-Video,
CogVideoX, HunyuanVideo), by hub id or local folder. One pipeline is loaded per process and reused by every
backend instance that asks for the same model, device and dtype; calls run one at a time (one GPU).

    enhancer video generate "a fox in the snow" --backend diffusers \\
        --option model=Wan-AI/Wan2.1-T2V-1.3B-Diffusers --option steps=30 --size 832x480 --seconds 5
    enhancer video serve --backend diffusers --option model=/models/ltx-video --port 8100   # for the sora plugin

Options: model (required), pipeline (wan, ltx, cogvideox, hunyuan; default: read from the folder's
model_index.json), device (default cuda when available), dtype (default bfloat16 on CUDA, float32 on CPU), steps,
guidance, fps (frames per second of the output; the frame count is seconds x fps rounded to what the model
accepts), shift (flow-matching shift, where the scheduler has one), cpu_offload (model CPU offload for small
GPUs), negative_prompt (default for requests without one), cost_per_second (what a second of video costs you
in GPU time, for the budget; default 0), max_sequence_length (the text encoder tokens the pipeline reads; see below).

diffusers truncates a prompt at the pipeline's `max_sequence_length`, and for LTX-Video its default (128 T5 tokens)
is shorter than enhancer's ltx prompts (up to 150 words, about 200 T5 tokens): the backend passes the ltx target's
budget instead, rounded up to 64 (256, the length LTX-Video's own pipeline reads). The others keep diffusers'
defaults, which hold their targets' prompts: Wan 512 UMT5 tokens (wan: 120 words), CogVideoX 226 T5 tokens (fixed
by its transformer; the cogvideox target is cut to fit), HunyuanVideo 256 Llama tokens (hunyuan: 110 words).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

from enhancer import Video, hookimpl
from enhancer.prompts import PROFILES
from enhancer.video import parse_size, stable_seed, write_mp4

# pipeline -> (diffusers class, frames must be k * step + 1, width and height multiple of, default fps)
PIPELINES = {
    "wan": ("WanPipeline", 4, 16, 16),
    "ltx": ("LTXPipeline", 8, 32, 24),
    "cogvideox": ("CogVideoXPipeline", 8, 16, 8),
    "hunyuan": ("HunyuanVideoPipeline", 4, 16, 24),
}
CLASS_TO_PIPELINE = {spec[0]: name for name, spec in PIPELINES.items()}
T5_TOKENS_PER_WORD = 1.35  # English prose in T5's tokenizer, as the cogvideox profile (enhancer.prompts) measures it
COGVIDEOX_TEXT_TOKENS = 226  # CogVideoXTransformer3DModel's max_text_seq_length: its positions fit no other length


def target_sequence_length(target: str) -> int:
    """T5 tokens for the longest prompt of `target` (its word budget, plus the end token), rounded up to 64."""
    tokens = math.ceil(PROFILES[target].budget_words() * T5_TOKENS_PER_WORD) + 1
    return -(-tokens // 64) * 64


# max_sequence_length passed where diffusers' default is too short for enhancer's prompts (None: diffusers' own)
DEFAULT_SEQUENCE_LENGTH = {"ltx": target_sequence_length("ltx"), "wan": None, "cogvideox": None, "hunyuan": None}

_LOADED: dict[tuple, object] = {}  # one pipeline per (model, class, device, dtype) per process
_LOAD_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()  # one generation at a time: a pipeline holds one device


def detect_pipeline(model: str) -> str:
    index = Path(model) / "model_index.json"
    if index.is_file():
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        if class_name in CLASS_TO_PIPELINE:
            return CLASS_TO_PIPELINE[class_name]
        raise ValueError(
            f"{index}: pipeline class {class_name!r} is not one of {', '.join(CLASS_TO_PIPELINE)}; "
            "set --option pipeline=NAME to force one"
        )
    lowered = model.lower()
    for name, hints in (("wan", ("wan",)), ("ltx", ("ltx",)), ("cogvideox", ("cogvideo",)), ("hunyuan", ("hunyuan",))):
        if any(hint in lowered for hint in hints):
            return name
    raise ValueError(f"cannot tell which pipeline {model!r} is: set --option pipeline={'|'.join(PIPELINES)}")


def frame_count(seconds: float, fps: int, step: int) -> int:
    """seconds x fps rounded to the nearest count the model accepts (k * step + 1), at least step + 1."""
    k = max(1, round((seconds * fps - 1) / step))
    return k * step + 1


class DiffusersBackend:
    """A diffusers text-to-video pipeline on this machine."""

    name = "diffusers"

    def __init__(
        self,
        out_dir: str,
        model: str | None = None,
        pipeline: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        steps: int = 30,
        guidance: float = 5.0,
        fps: int | None = None,
        shift: float | None = None,
        cpu_offload: bool = False,
        negative_prompt: str | None = None,
        cost_per_second: float = 0.0,
        max_sequence_length: int | None = None,
    ):
        import torch

        if not model:
            raise ValueError("the diffusers backend needs a model: --option model=HUB_ID_OR_FOLDER")
        self.out_dir = Path(out_dir)
        self.model = str(model)
        self.pipeline_name = pipeline or detect_pipeline(self.model)
        if self.pipeline_name not in PIPELINES:
            raise ValueError(f"pipeline {self.pipeline_name!r}: choose one of {', '.join(PIPELINES)}")
        self.class_name, self.frame_step, self.multiple, default_fps = PIPELINES[self.pipeline_name]
        # under torchrun/accelerate each process renders on its own GPU (LOCAL_RANK); a lone worker on GPU 0
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        if not isinstance(getattr(torch, self.dtype, None), torch.dtype):
            raise ValueError(f"dtype {self.dtype!r}: use float32, bfloat16 or float16")
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.fps = int(fps or default_fps)
        self.shift = shift
        self.cpu_offload = bool(cpu_offload)
        self.negative_prompt = negative_prompt
        self.cost_per_second = float(cost_per_second)
        if self.steps < 1 or self.fps < 1:
            raise ValueError("steps and fps must be at least 1")
        self.max_sequence_length = (
            int(max_sequence_length) if max_sequence_length else DEFAULT_SEQUENCE_LENGTH[self.pipeline_name]
        )
        if self.max_sequence_length is not None and self.max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be at least 1, got {max_sequence_length}")
        if self.pipeline_name == "cogvideox" and self.max_sequence_length not in (None, COGVIDEOX_TEXT_TOKENS):
            raise ValueError(
                f"max_sequence_length={self.max_sequence_length}: CogVideoX reads exactly {COGVIDEOX_TEXT_TOKENS} T5 "
                "tokens (its transformer's max_text_seq_length); drop the option"
            )

    def cache_identity(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model,
            "pipeline": self.pipeline_name,
            "steps": self.steps,
            "guidance": self.guidance,
            "fps": self.fps,
            "shift": self.shift,
            "dtype": self.dtype,
            "negative_prompt": self.negative_prompt,
            # a longer one reads more of the prompt: another video (absent where diffusers' default applies, so
            # the caches of those pipelines stay valid)
            **({"max_sequence_length": self.max_sequence_length} if self.max_sequence_length else {}),
        }

    def estimate_cost(self, *, seconds: float, size: str) -> float:
        return round(self.cost_per_second * float(seconds), 6)

    def pipeline(self):
        """The loaded pipeline, shared in this process."""
        import diffusers
        import torch

        key = (self.model, self.class_name, self.device, self.dtype, self.cpu_offload)
        with _LOAD_LOCK:
            if key not in _LOADED:
                pipe = getattr(diffusers, self.class_name).from_pretrained(
                    self.model, dtype=getattr(torch, self.dtype)
                )
                if self.shift is not None and "shift" in pipe.scheduler.config:
                    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=self.shift)
                if self.cpu_offload:
                    pipe.enable_model_cpu_offload()
                else:
                    pipe.to(self.device)
                pipe.set_progress_bar_config(disable=True)
                _LOADED[key] = pipe
            return _LOADED[key]

    def check_size(self, size: str) -> tuple[int, int]:
        width, height = parse_size(size)
        if width % self.multiple or height % self.multiple:
            raise ValueError(
                f"size {size}: {self.pipeline_name} needs width and height divisible by {self.multiple}, e.g. "
                f"{width // self.multiple * self.multiple or self.multiple}x"
                f"{height // self.multiple * self.multiple or self.multiple}"
            )
        return width, height

    def render(self, prompt: str, *, seed: int, seconds: float, size: str, negative_prompt: str | None) -> np.ndarray:
        """Frames (T, H, W, 3) uint8."""
        import torch

        width, height = self.check_size(size)
        pipe = self.pipeline()
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        options = dict(
            prompt=prompt,
            width=width,
            height=height,
            num_frames=frame_count(seconds, self.fps, self.frame_step),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=generator,
            output_type="np",
        )
        negative = negative_prompt or self.negative_prompt
        if negative:
            options["negative_prompt"] = negative
        if self.max_sequence_length is not None:
            options["max_sequence_length"] = self.max_sequence_length
        with _RUN_LOCK, torch.inference_mode():
            frames = pipe(**options).frames[0]
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
        return frames

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None) -> Video:
        started = time.perf_counter()
        frames = await asyncio.to_thread(
            self.render, prompt, seed=seed, seconds=seconds, size=size, negative_prompt=negative_prompt
        )
        parts = (self.model, self.steps, self.guidance, prompt, seed, seconds, size, negative_prompt)
        digest = stable_seed(*parts, *([self.max_sequence_length] if self.max_sequence_length else []))
        path = self.out_dir / f"diffusers-{self.pipeline_name}-{digest:08x}.mp4"
        await asyncio.to_thread(write_mp4, frames, path, self.fps)
        return Video(
            str(path),
            self.name,
            self.model,
            len(frames) / self.fps,
            time.perf_counter() - started,
            self.estimate_cost(seconds=seconds, size=size),
            seed,
        )


@hookimpl
def enhancer_video_backends():
    return {"diffusers": DiffusersBackend}
