"""enhancer.enhance.vision: loading images from every kind of source (a local http.server for URLs) and describing
them through a real local OpenAI-compatible server and a tiny random LLaVA loaded from a folder. All offline."""

from __future__ import annotations

import base64
import io
import socket
import threading

import pytest
from PIL import Image

from enhancer.enhance.vision import (
    DEFAULT_PROMPT,
    MAX_SIDE,
    VisionError,
    clean_description,
    describe_image,
    load_image,
    load_local_vlm,
)

from vision_models import tiny_llava
from vision_server import FileServer, VisionChatServer


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pattern(width: int = 40, height: int = 30) -> Image.Image:
    """An image whose every pixel differs, so a comparison catches a swapped, flipped or resized image."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 6 % 256, y * 8 % 256, (x + y) * 3 % 256) for y in range(height) for x in range(width)])
    return image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    return tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


# --- load_image ----------------------------------------------------------------------------------------------------


def test_load_image_from_path_bytes_data_uri_and_pil_gives_the_same_rgb_pixels(tmp_path):
    original = pattern()
    data = png_bytes(original)
    path = tmp_path / "frame.png"
    path.write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    for source in (str(path), path, data, bytearray(data), uri, original, original.convert("P")):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (40, 30)
        if not isinstance(source, Image.Image) or source.mode == "RGB":  # a palette loses colours, as it should
            assert image.tobytes() == original.tobytes(), type(source)


def test_load_image_downscales_the_long_side_and_puts_transparency_on_white():
    wide = Image.new("RGBA", (2000, 500), (255, 0, 0, 255))
    wide.putpixel((0, 0), (0, 0, 0, 0))  # transparent black: white once loaded, not black
    wide.paste((0, 0, 0, 0), (0, 0, 100, 100))
    image = load_image(png_bytes(wide))
    assert image.mode == "RGB" and image.size == (MAX_SIDE, 256)
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((MAX_SIDE - 5, 128)) == (255, 0, 0)
    assert wide.size == (2000, 500) and load_image(wide).size == (MAX_SIDE, 256)  # the caller's image is unchanged


def test_load_image_fetches_http_urls_from_a_local_server():
    original = pattern()
    data = png_bytes(original)
    routes = {
        "/frame.png": ("image/png", data),
        "/blob": ("application/octet-stream", data),
        "/untyped": (None, data),
        "/streamed.png": ("image/png", data, {"Content-Length": None}),  # no length: read until the server closes
    }
    with FileServer(routes) as files:
        for path in routes:
            image = load_image(files.url(path))
            assert image.tobytes() == original.tobytes(), path


def test_load_image_refuses_other_schemes_and_urls_when_told(tmp_path):
    image_file = tmp_path / "frame.png"
    image_file.write_bytes(png_bytes(pattern()))
    for url in (image_file.as_uri(), "ftp://127.0.0.1/frame.png", "gopher://127.0.0.1/frame.png"):
        with pytest.raises(VisionError, match="only http") as refused:
            load_image(url)
        assert url in str(refused.value)
    with FileServer({"/frame.png": ("image/png", png_bytes(pattern()))}) as files:
        url = files.url("/frame.png")
        with pytest.raises(VisionError, match="URLs are not fetched here") as refused:
            load_image(url, allow_urls=False)
        assert url in str(refused.value) and "base64" in str(refused.value)
    # what a client sends instead is still accepted without URLs
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(pattern())).decode()
    assert load_image(uri, allow_urls=False).size == (40, 30)


def test_load_image_url_failures_name_the_url():
    data = png_bytes(pattern())
    routes = {
        "/page": ("text/html; charset=utf-8", b"<html>a gallery</html>"),
        "/to-ftp": ("text/plain", b"", {"Status": "302", "Location": "ftp://127.0.0.1/frame.png"}),
        "/to-file": ("text/plain", b"", {"Status": "302", "Location": "file:///etc/passwd"}),  # urllib refuses it
        "/big.png": ("image/png", data),
        "/big-streamed.png": ("image/png", data, {"Content-Length": None}),
        "/text.png": ("image/png", b"not a png at all"),
    }
    with FileServer(routes) as files:
        cases = [
            ("/page", {}, "answered text/html, not an image"),
            ("/to-ftp", {}, "redirects to ftp://127.0.0.1/frame.png: only http"),
            ("/to-file", {}, "HTTP 302"),
            ("/missing.png", {}, "HTTP 404"),
            ("/big.png", {"max_bytes": 100}, "over the 100-byte limit"),  # refused from Content-Length
            ("/big-streamed.png", {"max_bytes": 100}, "sent over 100 bytes"),  # refused while reading
            ("/text.png", {}, "not an image PIL can read"),
        ]
        for path, options, expected in cases:
            with pytest.raises(VisionError, match=expected) as failed:
                load_image(files.url(path), **options)
            assert files.url(path) in str(failed.value), path
    unreachable = f"http://127.0.0.1:{free_port()}/frame.png"
    with pytest.raises(VisionError, match="unreachable") as failed:
        load_image(unreachable, timeout=10)
    assert unreachable in str(failed.value)


def test_load_image_too_big_not_an_image_and_missing_file_name_the_source(tmp_path):
    data = png_bytes(pattern())
    big_file = tmp_path / "big.png"
    big_file.write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    for source, name in ((big_file, str(big_file)), (data, "image bytes"), (uri, "data URI data:image/png;base64,")):
        with pytest.raises(VisionError, match="smaller image") as too_big:
            load_image(source, max_bytes=100)
        assert name in str(too_big.value)

    text_file = tmp_path / "notes.png"
    text_file.write_text("a fox in the snow\n")
    with pytest.raises(VisionError, match="not an image PIL can read") as not_image:
        load_image(text_file)
    assert str(text_file) in str(not_image.value)
    with pytest.raises(VisionError, match="not an image PIL can read") as not_image:
        load_image(b"\x00\x01 plainly not an image")
    assert "image bytes (23 bytes)" in str(not_image.value)

    missing = tmp_path / "nowhere" / "frame.png"
    with pytest.raises(VisionError, match="image file not found") as not_found:
        load_image(str(missing))
    assert str(missing) in str(not_found.value)
    with pytest.raises(VisionError, match="is not a file"):
        load_image(tmp_path)
    with pytest.raises(VisionError, match="expected data:image/<type>;base64"):
        load_image("data:text/plain;base64,aGVsbG8=")
    with pytest.raises(VisionError, match="does not decode"):
        load_image("data:image/png;base64,!!!not-base64!!!")
    with pytest.raises(VisionError, match="cannot load an image from a int"):
        load_image(42)


# --- answers cleaned -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "truncated", "expected"),
    [
        (
            "<think>Red? Yes.</think>\nSure, here is a description of the first frame:\n\nA red fox sits.\n\nSnow.",
            False,
            "A red fox sits. Snow.",
        ),
        ("Sure! Here's a description of the first frame: A red fox.", False, "A red fox."),
        ("Certainly. The image shows a fox.", False, "The image shows a fox."),
        ("Here is the description. A fox in snow.", False, "A fox in snow."),
        ("**Description:** A fox.\n\nLet me know if you need more!", False, "A fox."),
        ("reasoning left open by the template</think>A fox.", False, "A fox."),
        ("<think>still thinking when the tokens ran out", True, ""),
        ("A fox sits. Two trees stand. The light is", True, "A fox sits. Two trees stand."),
        ('"A fox in snow."', False, "A fox in snow."),
        # descriptions that merely look like chatter stay whole
        ("Here is a red fox in snow.", False, "Here is a red fox in snow."),
        ("Sure-footed goats climb a cliff.", False, "Sure-footed goats climb a cliff."),
        ('A sign reads "OPEN"', False, 'A sign reads "OPEN"'),
    ],
)
def test_clean_description(answer, truncated, expected):
    assert clean_description(answer, truncated=truncated) == expected


# --- describe_image through an OpenAI-compatible endpoint ----------------------------------------------------------


def test_describe_image_sends_the_png_to_an_openai_compatible_server_and_cleans_the_answer():
    original = pattern()
    received = []

    def responder(body):
        content = body["messages"][-1]["content"]
        text = next(part["text"] for part in content if part["type"] == "text")
        url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        prefix = "data:image/png;base64,"
        assert url.startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
        received.append((text, image.format, image.size, image.convert("RGB").tobytes()))
        return (
            "<think>The user wants the first frame. I see a gradient.</think>\n"
            "Sure, here is a description of the first frame:\n\n"
            "A square of shifting red, green and blue gradients fills the frame."
        )

    with VisionChatServer(responder) as server:
        description = describe_image(original, vlm=server.base_url, max_new_tokens=64)
        [request] = server.requests
    assert description == "A square of shifting red, green and blue gradients fills the frame."
    text, image_format, size, pixels = received[0]
    assert text == DEFAULT_PROMPT and image_format == "PNG" and size == (40, 30)
    assert pixels == original.tobytes()
    assert request["model"] == "vision-test-model"  # the first model /v1/models lists
    assert request["max_tokens"] == 64 and request["temperature"] == 0.0


def test_describe_image_uses_the_given_model_prompt_and_a_bare_host_url(tmp_path):
    path = tmp_path / "frame.png"
    path.write_bytes(png_bytes(pattern()))
    with VisionChatServer(lambda body: "A gradient.") as server:
        bare = server.base_url.removesuffix("/v1")  # http://127.0.0.1:PORT: /v1 is added
        assert describe_image(path, vlm=bare, model="my-vlm", prompt="Colours only.") == "A gradient."
        [request] = server.requests
    assert request["model"] == "my-vlm"
    assert request["messages"][-1]["content"][0] == {"type": "text", "text": "Colours only."}


def test_describe_image_endpoint_failures_are_vision_errors_naming_the_endpoint():
    with VisionChatServer(lambda body: "<think>only thinking</think>\n") as server:
        with pytest.raises(VisionError, match="answered no description") as empty:
            describe_image(pattern(), vlm=server.base_url)
        assert server.base_url in str(empty.value)
    with VisionChatServer(lambda body: "unused", status=400) as server:
        with pytest.raises(VisionError, match="HTTP 400") as rejected:
            describe_image(pattern(), vlm=server.base_url)
        assert server.base_url in str(rejected.value)
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(VisionError, match="unreachable") as down:
        describe_image(pattern(), vlm=unreachable, timeout=10)
    assert unreachable in str(down.value)
    with pytest.raises(VisionError, match="neither an http"):
        describe_image(pattern(), vlm="no-such-folder-or-url")


# --- describe_image with a local transformers VLM ------------------------------------------------------------------


def test_describe_image_with_a_tiny_local_llava_feeds_it_the_pixels(tiny_vlm_dir):
    vlm = load_local_vlm(tiny_vlm_dir)
    assert load_local_vlm(str(tiny_vlm_dir)) is vlm  # loaded once per path
    tower = next(module for name, module in vlm.model.named_modules() if name.endswith("vision_tower"))
    seen = []

    def record(module, args, kwargs, output):
        seen.append((args[0] if args else kwargs["pixel_values"]).detach().float().clone())

    red, blue = Image.new("RGB", (64, 48), "red"), pattern()
    handle = tower.register_forward_hook(record, with_kwargs=True)
    try:
        red_text = describe_image(red, vlm=str(tiny_vlm_dir), max_new_tokens=12)
        blue_text = describe_image(blue, vlm=str(tiny_vlm_dir), max_new_tokens=12)
    finally:
        handle.remove()
    assert red_text.strip() and blue_text.strip()
    assert red_text != blue_text  # greedy decoding: only the pixels differ between the two calls
    assert len(seen) == 2  # the tower runs once per call (on the prompt), not per generated token
    for pixels, image in zip(seen, (red, blue), strict=True):
        expected = vlm.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        assert pixels.shape == (1, 3, 32, 32)
        assert (pixels - expected.to(vlm.model.dtype).float()).abs().max() == 0
    assert describe_image(red, vlm=str(tiny_vlm_dir), max_new_tokens=12) == red_text  # greedy: the same again


def test_describe_image_from_several_threads_matches_one_at_a_time(tiny_vlm_dir):
    images = [Image.new("RGB", (64, 48), "red"), pattern(), Image.new("RGB", (20, 60), "green"), pattern(60, 20)]
    one_at_a_time = [describe_image(image, vlm=str(tiny_vlm_dir), max_new_tokens=10) for image in images]
    results: list = [None] * len(images)
    start = threading.Barrier(len(images))

    def work(index):
        start.wait()
        try:
            results[index] = describe_image(images[index], vlm=str(tiny_vlm_dir), max_new_tokens=10)
        except Exception as error:  # surfaced by the assert below
            results[index] = error

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == one_at_a_time


def test_describe_image_refuses_a_text_only_model_folder(tiny_model_dir):
    with pytest.raises(VisionError, match="no image processor") as refused:
        describe_image(pattern(), vlm=str(tiny_model_dir))
    assert str(tiny_model_dir) in str(refused.value)
