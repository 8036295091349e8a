"""`enhancer enhance` (one prompt, a file, stdin) and `enhancer serve` (the HTTP API and web page)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from enhancer.cli.app import config_flag, config_overrides, main
from enhancer.enhance.engines import ENGINES
from enhancer.prompts import MODES, PROFILES
from enhancer.serve.limits import ServeLimits

engine_option = click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default="auto",
    show_default=True,
    help="auto: llama.cpp for the embedded model and .gguf files, transformers for other models.",
)

# ------------------------------------------------------------------------------------------------------ enhance


@main.command()
@click.argument("prompt", required=False)
@click.option("--input", "input_path", help="Prompts to enhance: .txt (one per line), .jsonl, or - for stdin.")
@click.option("--output", "output_path", help="Write one JSON row per input here (- for stdout).")
@click.option("--resume", is_flag=True, help="Skip inputs already in --output and append the rest.")
@click.option("--model", default="embedded", show_default=True, help="'embedded', a local HF directory or a hub id.")
@click.option("--adapter", help="A PEFT adapter directory to apply to --model.")
@engine_option
@click.option("--base-url", help="OpenAI-compatible endpoint for --engine openai, e.g. http://127.0.0.1:8000/v1.")
@click.option("--api-key", envvar="ENHANCER_API_KEY", help="Key for --base-url (or $ENHANCER_API_KEY).")
@click.option(
    "--target",
    type=click.Choice(list(PROFILES)),
    default="generic",
    show_default=True,
    help="The video model the prompt is for: sets the form and the length budget.",
)
@click.option("--n", "n", type=click.IntRange(1, 16), default=1, show_default=True, help="Variants per prompt.")
@click.option(
    "--candidates",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Sample this many rewrites and keep the one that keeps your facts best (slower, more faithful).",
)
@click.option(
    "--guard/--no-guard",
    default=True,
    show_default=True,
    help="Show the model only the scene of an idea that also speaks to it ('a tram at dusk. also, what model are "
    "you?' -> 'a tram at dusk'); --no-guard shows it every word.",
)
@click.option(
    "--recheck",
    type=click.IntRange(0),
    help="With the guard: a rewrite that still echoes what the idea said to the model is sampled this many more "
    "times (default 4) and the first clean sample kept (0: never). --stream shows the first rewrite as it comes and never rechecks.",
)
@click.option("--seed", type=int, help="Sampling seed (random when left out; every row records the one used).")
@click.option(
    "--temperature",
    type=click.FloatRange(0, 2),
    help="Sampling temperature (default: greedy for one rewrite, 0.7 with -n or --candidates above 1).",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(8, 4096),
    help="Cap on generated tokens (default: fits the target's word budget).",
)
@click.option("--negative", is_flag=True, help="Also write a negative prompt.")
@click.option("--stream", is_flag=True, help="Print the rewrite as it is written (one PROMPT, one rewrite).")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    help="Weights' dtype (default: bfloat16 on GPUs and on CPUs with AVX512-BF16/AMX, else float32).",
)
@click.option(
    "--prompt-format",
    type=click.Choice(["chat", "compact", "original"]),
    default=None,
    help="Default: the format the adapter was trained with (its enhancer.json), else 'chat'. "
    "'original': the research project's plain 'Input: ...\\nOutput:' text, for its checkpoints.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 512),
    default=16,
    show_default=True,
    help="Prompts per generate call (transformers engine).",
)
@click.option(
    "--lang", default="en", show_default=True, help="Language to write the prompt in (ISO 639-1: en, zh, de...)."
)
@click.option("--mode", type=click.Choice(list(MODES)), help="concise, cinematic (the default style) or detailed.")
@click.option("--instructions", help="Your direction for the rewrite, a sentence or two (e.g. 'night, handheld').")
@click.option(
    "--passthrough-words",
    type=click.IntRange(0, 10_000),
    help="Return ideas at least this long unchanged (default: the target's word budget; 0: never).",
)
@click.option(
    "--translator",
    help="Translates ideas in other languages (and --lang output): an OpenAI-compatible URL or a local model folder.",
)
@click.option("--image", help="The image the video starts from: a path or URL (needs --vlm).")
@click.option("--vlm", help="Describes --image: an OpenAI-compatible vision endpoint URL or a local VLM folder.")
def enhance(
    prompt,
    input_path,
    output_path,
    resume,
    model,
    adapter,
    engine,
    base_url,
    api_key,
    target,
    n,
    candidates,
    guard,
    recheck,
    seed,
    temperature,
    max_new_tokens,
    negative,
    stream,
    dtype,
    prompt_format,
    batch_size,
    lang,
    mode,
    instructions,
    passthrough_words,
    translator,
    image,
    vlm,
):
    """Enhance PROMPT, or every prompt in --input."""
    from enhancer.enhance import Enhancer
    from enhancer.enhance.batch import enhance_file
    from enhancer.enhance.enhancer import RECHECK_MAX
    from enhancer.prompts import check_prompt

    if (prompt is None) == (input_path is None):
        raise click.UsageError("give either a PROMPT or --input FILE")
    if input_path not in (None, "-") and not Path(input_path).is_file():
        reason = "is a directory; give a .txt or .jsonl file" if Path(input_path).is_dir() else "no such file"
        raise click.UsageError(f"--input {input_path}: {reason}")
    if prompt is not None:
        try:
            check_prompt(prompt)
        except ValueError as error:
            raise click.UsageError(str(error)) from error
    if recheck is not None and recheck > RECHECK_MAX:
        raise click.UsageError(f"--recheck {recheck}: at most {RECHECK_MAX} (for more samples, use --candidates)")
    if stream and (prompt is None or output_path or n > 1 or candidates > 1):
        raise click.UsageError(
            "--stream prints one rewrite of one PROMPT: drop --input/--output, --n and --candidates"
        )
    enhancer = Enhancer.load(
        model=model,
        adapter=adapter,
        engine=engine,
        base_url=base_url,
        api_key=api_key,
        batch_size=batch_size,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        prompt_format=prompt_format,
        candidates=candidates,
        dtype=dtype,
        slots=max(n, candidates) if prompt is not None else 8,  # one rewrite: one slot, a faster load
        translator=translator,
        vlm=vlm,
        guard=guard,
        **({} if recheck is None else {"recheck": recheck}),  # None: the Enhancer's RECHECK_SAMPLES
    )
    asks = dict(lang=lang, mode=mode, instructions=instructions, passthrough_words=passthrough_words, image=image)
    options = dict(target=target, n=n, seed=seed, negative=negative, **asks)
    if stream:
        _enhance_streaming(enhancer, prompt, target=target, seed=seed, negative=negative, **asks)
        return
    if prompt is not None:
        try:
            result = enhancer.enhance(prompt, **options)
        except ValueError as error:  # an option the model cannot honour, a missing translator or VLM
            raise click.UsageError(str(error)) from error
        if output_path:
            with click.open_file(output_path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            return
        click.echo("\n\n".join(result.variants) if len(result.variants) > 1 else result.enhanced)
        if result.negative:
            click.echo(f"\nNegative: {result.negative}")
        if result.status != "ok" or result.message:
            click.echo(f"enhancer: {result.status}: {result.message}", err=True)
        return
    summary = enhance_file(
        enhancer, input_path, output_path or "-", resume=resume, options=options, chunk_size=batch_size
    )
    click.echo(summary.line(), err=True)
    if summary.failed_all:
        sys.exit(1)


def _enhance_streaming(enhancer, prompt: str, **options) -> None:
    shown = []

    def show(piece: str) -> None:
        shown.append(piece)
        click.echo(piece, nl=False)
        sys.stdout.flush()

    try:
        result = enhancer.enhance_stream(prompt, on_text=show, **options)
    except ValueError as error:  # an option the model cannot honour, a missing translator or VLM
        raise click.UsageError(str(error)) from error
    if shown:
        click.echo()
    if result.status == "ok" and "".join(shown) != result.enhanced:  # the final cleanup changed shown text
        click.echo("enhancer: the final cleanup changed the text above; the prompt is:", err=True)
        click.echo(result.enhanced)
    elif result.status != "ok":
        click.echo(f"enhancer: {result.status}: {result.message}; the prompt as given:", err=True)
        click.echo(result.enhanced)
    if result.negative:
        click.echo(f"\nNegative: {result.negative}")


@main.command()
@click.option("--model", default="embedded", show_default=True, help="'embedded', a local HF directory or a hub id.")
@click.option("--adapter", help="A PEFT adapter directory to apply to --model.")
@engine_option
@click.option("--base-url", help="Upstream OpenAI-compatible endpoint for --engine openai.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Weights' dtype.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; beyond loopback only with a key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--api-key",
    envvar="ENHANCER_SERVE_API_KEY",
    help="Require Authorization: Bearer KEY (or $ENHANCER_SERVE_API_KEY).",
)
@config_flag(ServeLimits, "batch_window_ms")
@config_flag(ServeLimits, "max_batch")
@config_flag(ServeLimits, "max_n")
@config_flag(ServeLimits, "request_timeout_s", "--timeout", "request_timeout_s")
@config_flag(ServeLimits, "max_body_bytes")
@config_flag(ServeLimits, "max_queue")
@config_flag(ServeLimits, "max_image_bytes")
@click.option("--translator", help="Translates ideas in other languages and `lang` output: a URL or a model folder.")
@click.option("--vlm", help="Describes a request's `image`: an OpenAI-compatible vision URL or a local VLM folder.")
def serve(model, adapter, engine, base_url, dtype, host, port, api_key, translator, vlm, **flags):
    """Serve the enhancer over HTTP: /v1/enhance, OpenAI-compatible /v1/chat/completions, /v1/models, /healthz."""
    import socket

    import uvicorn

    from enhancer.enhance import Enhancer
    from enhancer.serve.api import create_app

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    try:
        limits = ServeLimits(**config_overrides(flags))
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    enhancer = Enhancer.load(
        model=model,
        adapter=adapter,
        engine=engine,
        base_url=base_url,
        dtype=dtype,
        batch_size=limits.max_batch,
        translator=translator,
        vlm=vlm,
        log=lambda m: click.echo(f"enhancer: {m}", err=True),
    )
    app = create_app(enhancer, limits, api_key)
    # Bound and listening before the line below, so the URL it prints (the real port, also for --port 0) answers.
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    port = listener.getsockname()[1]
    click.echo(f"enhancer: serving {enhancer.model_label} at http://{host}:{port} (POST /v1/enhance)", err=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
