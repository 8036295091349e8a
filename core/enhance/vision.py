"""Describe an image with a vision-language model (VLM): image-to-video prompt enhancement starts from a factual
description of the first frame, so the rewrite keeps what the picture already shows.

    from enhancer.enhance.vision import describe_image, load_image

    frame = load_image("first_frame.png")            # a path, an http(s) URL, a data: URI, bytes or a PIL image
    # CPU or GPU, any local transformers VLM folder (cached per path after the first call):
    text = describe_image(frame, vlm="/models/SmolVLM-256M-Instruct")
    # any OpenAI-compatible chat endpoint with vision (vLLM, llama.cpp's server, Ollama, OpenAI):
    text = describe_image(frame, vlm="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-VL-7B-Instruct")

A server must load client input with `load_image(source, allow_urls=False)`: fetching client-given URLs from the
server would let clients reach whatever the server can reach (SSRF). Every failure a user can fix raises
`VisionError` with what failed, where, and how to fix it. Tests: `pytest tests/test_vision.py`.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a 4K PNG is ~10-25 MB; more is a raw or a mistake, and it all sits in memory
MAX_SIDE = 1024  # VLMs resize to their own grid (336-1024 px) anyway; a smaller image keeps requests and memory small
URL_TIMEOUT_S = 30.0
CHUNK_BYTES = 64 * 1024
# application/octet-stream: what plain file servers and object stores send for an image without a known extension
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")

DEFAULT_PROMPT = (
    "Describe this image, the first frame of a video, factually: the subjects and how many there are, their "
    "colours, the setting, the light, the composition and framing, and any visible text, quoted exactly. Describe "
    "only what is visible; do not guess at what happens next or what anything means. Answer with one paragraph "
    "and no preamble."
)


class VisionError(ValueError):
    """An image could not be loaded or described, for a reason the user can fix (the message says how)."""


def _name(source: Any) -> str:
    """The source as an error message names it: never a whole data URI or a whole byte string."""
    if isinstance(source, bytes | bytearray | memoryview):
        return f"image bytes ({len(source):,} bytes)"
    text = str(source)
    if text.startswith("data:"):
        return f"data URI {text[:40]}... ({len(text):,} characters)"
    return text if len(text) <= 300 else f"{text[:300]}..."


def load_image(
    source: Any, *, max_bytes: int = MAX_IMAGE_BYTES, allow_urls: bool = True, timeout: float = URL_TIMEOUT_S
) -> Image.Image:
    """An RGB PIL image, at most `MAX_SIDE` px on its long side, from a filesystem path, an http(s) URL (refused
    when `allow_urls` is False), a `data:image/...;base64,` URI, raw bytes or a PIL image. Animated images give
    their first frame; phone photos are turned upright from their EXIF orientation; transparency goes on white."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return _normalise(source, _name(source))
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(bytes(source), _name(source), max_bytes)
    if not isinstance(source, str | os.PathLike):
        raise VisionError(
            f"cannot load an image from a {type(source).__name__}: pass a path, an http(s) URL, a data: URI, "
            "bytes or a PIL image"
        )
    text = os.fspath(source)
    if isinstance(source, str) and text.startswith("data:"):
        return _decode(_data_uri_bytes(text, max_bytes), _name(text), max_bytes)
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", text) if isinstance(source, str) else None
    if scheme and ("://" in text or scheme.group(1).lower() in ("http", "https", "file")):  # not C:\\ on Windows
        if scheme.group(1).lower() not in ("http", "https"):
            raise VisionError(
                f"image URL {_name(text)}: the {scheme.group(1)}: scheme is refused; only http(s) URLs are fetched "
                "(pass a local file as a plain path)"
            )
        if not allow_urls:
            raise VisionError(
                f"image URL {_name(text)}: URLs are not fetched here (a server does not fetch client-given URLs); "
                "send the image itself, as a data:image/...;base64, URI or as bytes"
            )
        return _decode(_fetch(text, max_bytes, timeout), _name(text), max_bytes)
    return _decode(_read_file(Path(text).expanduser(), max_bytes), text, max_bytes)


def _read_file(path: Path, max_bytes: int) -> bytes:
    if not path.exists():
        raise VisionError(f"image file not found: {path} (relative paths start from {Path.cwd()}); check the path")
    if not path.is_file():
        raise VisionError(f"image path {path} is not a file: pass the image file itself")
    size = path.stat().st_size
    if size > max_bytes:
        raise VisionError(f"image file {path} is {size:,} bytes, over the {max_bytes:,}-byte limit: {_smaller()}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise VisionError(f"cannot read image file {path}: {error}") from error


def _data_uri_bytes(uri: str, max_bytes: int) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise VisionError(
            f"{_name(uri)}: expected data:image/<type>;base64,<data> (e.g. data:image/png;base64,iVBORw0...)"
        )
    if len(payload) * 3 // 4 > max_bytes + 3:  # checked before decoding, so a huge URI is never decoded
        raise VisionError(
            f"{_name(uri)} holds about {len(payload) * 3 // 4:,} bytes, over {max_bytes:,}: {_smaller()}"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise VisionError(f"{_name(uri)}: the base64 data does not decode ({error})") from error


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects to ftp: too; a fetched image may only move to another http(s) address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith(("http://", "https://")):
            raise VisionError(f"image URL {_name(req.full_url)} redirects to {_name(newurl)}: only http(s) is fetched")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, max_bytes: int, timeout: float) -> bytes:
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": "enhancer", "Accept": "image/*"})
    fix = "check the address, or download the image and pass the file"
    try:
        with opener.open(request, timeout=timeout) as response:
            kind = response.headers.get_content_type() if response.headers.get("Content-Type") else ""
            if kind and not kind.startswith(IMAGE_CONTENT_TYPES):
                raise VisionError(
                    f"image URL {_name(url)} answered {kind}, not an image: use the image's own address "
                    "(right click > copy image address), not the page that shows it"
                )
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise VisionError(
                    f"image URL {_name(url)} is {int(length):,} bytes, over the {max_bytes:,}-byte limit: {_smaller()}"
                )
            chunks, size = [], 0
            while chunk := response.read(CHUNK_BYTES):  # read in chunks: a lying or absent length stops at the cap
                size += len(chunk)
                if size > max_bytes:
                    raise VisionError(f"image URL {_name(url)} sent over {max_bytes:,} bytes: {_smaller()}")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        raise VisionError(f"image URL {_name(url)} answered HTTP {error.code} {error.reason}: {fix}") from error
    except urllib.error.URLError as error:
        raise VisionError(f"image URL {_name(url)} is unreachable ({error.reason}): {fix}") from error
    except TimeoutError as error:
        raise VisionError(f"image URL {_name(url)} did not answer within {timeout:g} s: {fix}") from error
    except (OSError, ValueError) as error:
        if isinstance(error, VisionError):
            raise
        raise VisionError(f"image URL {_name(url)} could not be fetched ({error}): {fix}") from error


def _smaller() -> str:
    return f"send a smaller image (a PNG or JPEG under {MAX_SIDE} px on its long side is all a VLM uses)"


def _decode(data: bytes, name: str, max_bytes: int) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if len(data) > max_bytes:
        raise VisionError(f"{name} is {len(data):,} bytes, over the {max_bytes:,}-byte limit: {_smaller()}")
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at 1/2, 1/4 or 1/8 scale when that is enough
        image.load()
    except UnidentifiedImageError as error:
        raise VisionError(
            f"{name} is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP, TIFF...): check the file"
        ) from error
    except Image.DecompressionBombError as error:
        raise VisionError(f"{name} has too many pixels to decode safely ({error}): {_smaller()}") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise VisionError(f"{name} is a damaged image ({error}): check the file") from error
    return _normalise(image, name)


def _normalise(image: Image.Image, name: str) -> Image.Image:
    from PIL import Image, ImageOps

    try:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))  # converting alone would turn transparent parts black
        else:
            image = image.convert("RGB")  # also copies: the caller's image is never changed
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    except (OSError, ValueError) as error:
        raise VisionError(f"{name} could not be converted to RGB ({error})") from error
    return image


def png_data_uri(image: Image.Image) -> str:
    """The image as a `data:image/png;base64,` URI, the form OpenAI-compatible servers take in an image_url part."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_CHATTER = re.compile(
    r"^(?:(?:sure|certainly|of course|absolutely)[,.!]+"  # "Sure, " "Certainly! "
    r"|here(?:'s| is| are)\b[^\n:.]*?(?::|\n|\bdescription\b[^\n:.]*\.\s)"  # "Here is a description of the image:"
    r"|\**(?:image description|description|answer)\**:\**)\s*",  # a label
    re.I,
)
_SIGN_OFF = re.compile(r"\s*(?:let me know|i hope this|feel free to)\b[^\n]*$", re.I)


def clean_description(text: str, *, truncated: bool = False) -> str:
    """The description alone: no `<think>` block, no "Sure, here is..." opening, no sign-off, one paragraph; a
    text cut off by the token limit ends at its last full sentence."""
    from enhancer.enhance.engines import strip_thinking

    text = strip_thinking(text)[0].strip()  # an unclosed block: the answer was cut off while thinking
    while (match := _CHATTER.match(text)) and match.end() < len(text):
        text = text[match.end() :].lstrip()
    text = _SIGN_OFF.sub("", text)
    text = " ".join(text.split())  # one paragraph: it goes into a prompt
    if truncated and not text.endswith((".", "!", "?", '"')):
        ends = [match.end() for match in re.finditer(r"[.!?](?=\s)", text)]
        if ends:
            text = text[: ends[-1]]
    if len(text) > 1 and text[0] == text[-1] == '"' and text.count('"') == 2:  # the whole answer quoted
        text = text[1:-1].strip()
    return text


class LocalVLM:
    """A transformers VLM folder loaded once: AutoProcessor + AutoModelForImageTextToText, greedy decoding. One
    `describe` runs at a time per model (a model's forward is not written for concurrent calls, and the CPU or GPU
    is busy with one anyway); other threads wait."""

    def __init__(self, path: str, *, device: str | None = None, dtype: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as transformers_logging

        from enhancer.enhance.engines import default_dtype

        transformers_logging.disable_progress_bar()
        self.path = path
        try:
            self.processor = AutoProcessor.from_pretrained(path)
        except Exception as error:  # a folder without processor files raises OSError, a broken one anything
            raise VisionError(f"VLM folder {path} has no processor that loads ({error}): {_not_a_vlm()}") from error
        if getattr(self.processor, "image_processor", None) is None:
            raise VisionError(
                f"VLM folder {path} has no image processor (processor_config.json or preprocessor_config.json): "
                f"{_not_a_vlm()}"
            )
        if not getattr(self.processor, "chat_template", None):
            raise VisionError(
                f"VLM folder {path} has no chat template for its processor (chat_template.jinja): copy it from the "
                "model's original repository"
            )
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                path, dtype=getattr(torch, dtype or default_dtype(self.device))
            )
        except Exception as error:  # an unsupported architecture raises ValueError, a broken file anything
            raise VisionError(f"VLM folder {path}: the model does not load ({error}): {_not_a_vlm()}") from error
        self.model = model.to(self.device).eval()
        self.lock = threading.Lock()

    def describe(self, image: Image.Image, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
        """(text, truncated) for one image and instruction."""
        with self.lock:  # the whole call: a fast tokenizer used from two threads at once can fail ("Already borrowed")
            return self._describe(image, prompt, max_new_tokens)

    def _describe(self, image: Image.Image, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
        import torch

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(images=[image], text=[text], return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # dtype: floating tensors (pixels) only
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        truncated = not any(int(token) in eos for token in new_tokens)
        return tokenizer.decode(new_tokens, skip_special_tokens=True), truncated


def _not_a_vlm() -> str:
    return "pass the folder of an image-text-to-text model (e.g. SmolVLM, Qwen2.5-VL, LLaVA) or an http(s) endpoint"


_local_vlms: dict[str, LocalVLM] = {}
_local_vlms_lock = threading.Lock()  # held while loading, so two threads asking for one folder load it once


def load_local_vlm(path: str | os.PathLike) -> LocalVLM:
    """The VLM in folder `path`, loaded on first use and kept for later calls (per resolved path)."""
    key = os.path.realpath(os.fspath(path))
    with _local_vlms_lock:
        if key not in _local_vlms:
            _local_vlms[key] = LocalVLM(key)
        return _local_vlms[key]


def _describe_remote(image, base_url, api_key, model, prompt, max_new_tokens, timeout) -> tuple[str, bool]:
    import openai

    if not re.match(r"^https?://[^/]+/.", base_url):  # a bare host: OpenAI-compatible servers serve under /v1
        base_url = base_url.rstrip("/") + "/v1"
    api_key = api_key or os.environ.get("ENHANCER_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=2)
    where = f"VLM endpoint {base_url}"
    try:
        if not model:  # a local server usually serves exactly one model
            served = [entry.id for entry in client.models.list()]
            if not served:
                raise VisionError(f"{where} lists no models: pass model= with the served model's name")
            model = served[0]
        response = client.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": prompt},
                        {"type": "image_url", "image_url": {"url": png_data_uri(image)}},
                    ],
                }
            ],
            temperature=0.0,
            max_tokens=max_new_tokens,
        )
    except openai.APIConnectionError as error:  # timeouts included
        raise VisionError(f"{where} is unreachable ({error}): check that the server runs and the URL") from error
    except openai.APIStatusError as error:
        raise VisionError(
            f"{where} answered HTTP {error.status_code} ({error.message}): check model= ({model}), api_key= and "
            "that the model takes images"
        ) from error
    if not response.choices:
        raise VisionError(f"{where} returned no choices for model {model}")
    choice = response.choices[0]
    return choice.message.content or "", choice.finish_reason == "length"


def describe_image(
    image: Any,
    *,
    vlm: str,
    api_key: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    max_new_tokens: int = 160,
    timeout: float = 120.0,
) -> str:
    """A one-paragraph factual description of `image` (a PIL image, or any source `load_image` takes) by `vlm`:
    an http(s) base URL of an OpenAI-compatible chat endpoint with vision (`model` defaults to the first model it
    lists; `api_key` to $ENHANCER_API_KEY or $OPENAI_API_KEY; `timeout` per request), or a local transformers VLM
    folder (loaded once per path; `model`, `api_key` and `timeout` are not used). Greedy decoding. Safe to call
    from several threads. Raises VisionError when the VLM is unreachable, does not load or answers nothing."""
    if max_new_tokens < 8:
        raise VisionError(f"max_new_tokens must be at least 8, got {max_new_tokens}")
    image = load_image(image)
    prompt = prompt or DEFAULT_PROMPT
    vlm = os.fspath(vlm)
    if vlm.lower().startswith(("http://", "https://")):
        text, truncated = _describe_remote(image, vlm, api_key, model, prompt, max_new_tokens, timeout)
        where = f"VLM endpoint {vlm}"
    elif os.path.isdir(vlm):
        text, truncated = load_local_vlm(vlm).describe(image, prompt, max_new_tokens)
        where = f"VLM folder {vlm}"
    else:
        raise VisionError(
            f"vlm={vlm!r} is neither an http(s) URL nor a local folder: pass an OpenAI-compatible endpoint "
            "(http://HOST:PORT/v1) or a downloaded model folder (`hf download ORG/NAME --local-dir DIR`)"
        )
    description = clean_description(text, truncated=truncated)
    if not description:
        raise VisionError(
            f"{where} answered no description (raw answer: {text[:200]!r}): check that the model takes images, "
            "or raise max_new_tokens if it spent them thinking"
        )
    return description
