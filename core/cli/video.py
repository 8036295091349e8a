"""`enhancer video generate|estimate|serve` and `enhancer reward score|serve`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from enhancer.cli.app import config_flag, config_overrides, main, parse_options
from enhancer.serve.videos import VideoServeLimits  # standard library only; its fields are the serve flags

# -------------------------------------------------------------------------------------------------------- video


def _video_service(backend, options, cache, concurrency, max_cost_usd, plugin_modules):
    from enhancer.registry import PluginRegistry
    from enhancer.video.service import VideoService

    registry = PluginRegistry.load(extra_modules=list(plugin_modules))
    try:
        instance = registry.create("backend", backend, **{"out_dir": str(Path(cache) / "backend"), **options})
    except (TypeError, ValueError) as error:
        raise click.UsageError(f"--backend {backend}: {error}") from error
    return VideoService(
        instance,
        cache,
        concurrency=concurrency,
        max_cost_usd=max_cost_usd,
        log=lambda m: click.echo(m, err=True),
    )


def _video_options(function):
    for decorator in reversed(
        (
            click.option("--backend", default="synthetic", show_default=True, help="Video backend plugin."),
            click.option("--option", "options", multiple=True, help="KEY=VALUE for the backend (repeatable)."),
            click.option("--seconds", type=click.FloatRange(0, min_open=True), default=4.0, show_default=True),
            click.option("--size", default="320x192", show_default=True, help="WIDTHxHEIGHT."),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option(
                "--cache",
                default="runs/video-cache",
                show_default=True,
                help="The content-addressed cache and budget ledger.",
            ),
            click.option("--max-cost-usd", type=click.FloatRange(0), help="Hard cap on spend, kept in the cache."),
            click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin."),
        )
    ):
        function = decorator(function)
    return function


@main.group()
def video() -> None:
    """Make videos through a backend plugin, estimate their cost, or serve a backend over HTTP."""


@video.command("generate")
@click.argument("prompt")
@_video_options
@click.option("--negative", help="Negative prompt, for backends that take one.")
@click.option("--out", type=click.Path(dir_okay=False), help="Copy the mp4 here.")
def video_generate(prompt, backend, options, seconds, size, seed, cache, max_cost_usd, plugin_modules, negative, out):
    """Generate one video (from the cache when it was made before) and print its record."""
    import shutil

    from enhancer.video import parse_size
    from enhancer.video.service import VideoRequest

    try:
        parse_size(size)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    service = _video_service(backend, parse_options(options, "--option"), cache, 1, max_cost_usd, plugin_modules)
    [result] = service.generate([VideoRequest(prompt, seed, seconds, size, negative)])
    if result.status != "ok":
        raise click.ClickException(f"no video ({result.status}): {result.error}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.video.path, out)
    click.echo(json.dumps({**result.video.to_dict(), "key": result.key, "out": out}, indent=2))


@video.command("estimate")
@_video_options
@click.option(
    "--prompts",
    "prompts_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="One prompt per line (.txt) or JSONL rows with a 'prompt' or 'simple' field.",
)
def video_estimate(backend, options, seconds, size, seed, cache, max_cost_usd, plugin_modules, prompts_path):
    """Dry run: how many of these prompts the cache already has, and what the rest would cost."""
    from enhancer.video.service import VideoRequest

    prompts = _read_prompt_lines(prompts_path)
    service = _video_service(backend, parse_options(options, "--option"), cache, 1, max_cost_usd, plugin_modules)
    click.echo(json.dumps(service.estimate([VideoRequest(p, seed, seconds, size) for p in prompts]), indent=2))


def _read_prompt_lines(path: str) -> list[str]:
    prompts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.endswith(".jsonl"):
            try:
                row = json.loads(line)
                prompts.append(str(row.get("prompt") or row["simple"]))
            except (json.JSONDecodeError, KeyError, AttributeError) as error:
                raise click.UsageError(f"{path}:{number}: expected a JSON object with 'prompt' ({error})") from error
        else:
            prompts.append(line.strip())
    if not prompts:
        raise click.UsageError(f"{path}: no prompts in it")
    return prompts


@video.command("serve")
@click.option("--backend", required=True, help="Video backend plugin to serve.")
@click.option("--option", "options", multiple=True, help="KEY=VALUE for the backend (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; 0.0.0.0 only with --api-key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8100, show_default=True)
@click.option(
    "--api-key", envvar="ENHANCER_VIDEO_API_KEY", help="Require this bearer key (env ENHANCER_VIDEO_API_KEY)."
)
@click.option("--concurrency", type=click.IntRange(1), default=1, show_default=True, help="Jobs run at once.")
@click.option("--out", default="runs/video-serve", show_default=True, help="Where the backend writes videos.")
@click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin.")
@config_flag(VideoServeLimits, "max_seconds")
@config_flag(VideoServeLimits, "max_side")
@config_flag(VideoServeLimits, "max_prompt_chars")
@config_flag(VideoServeLimits, "max_pending")
@config_flag(VideoServeLimits, "keep_jobs")
@config_flag(VideoServeLimits, "max_connections")
@config_flag(VideoServeLimits, "max_body_bytes")
def video_serve(backend, options, host, port, api_key, concurrency, out, plugin_modules, **flags):
    """Serve a backend over the OpenAI videos protocol, for the sora plugin on other machines."""
    from enhancer.registry import PluginRegistry
    from enhancer.serve.videos import VideoProtocolServer

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    registry = PluginRegistry.load(extra_modules=list(plugin_modules))
    instance = registry.create("backend", backend, **{"out_dir": out, **parse_options(options, "--option")})
    try:
        limits = VideoServeLimits(**config_overrides(flags))
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    server = VideoProtocolServer(
        instance,
        host=host,
        port=port,
        api_key=api_key,
        concurrency=concurrency,
        limits=limits,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(f"enhancer: serving {backend} at {server.base_url} (OpenAI videos protocol)", err=True)
    server.serve_forever()


@main.group()
def reward() -> None:
    """Score videos and prompts with reward scorer plugins."""


@reward.command("score")
@click.option("--prompt", required=True, help="The user's simple prompt (the idea).")
@click.option("--enhanced", help="The enhanced prompt the video was made from (default: the simple one).")
@click.option("--video", "video_path", type=click.Path(dir_okay=False, exists=True), help="The mp4 to judge.")
@click.option("--reward", "rewards", default="video_metrics", show_default=True, help="Scorer(s), comma-separated.")
@click.option("--option", "options", multiple=True, help="NAME.KEY=VALUE for a scorer (repeatable).")
@click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin.")
def reward_score(prompt, enhanced, video_path, rewards, options, plugin_modules):
    """Score one (prompt, enhanced prompt, video) with each scorer; prints JSON (null: could not score)."""
    from enhancer.contracts import Sample
    from enhancer.registry import PluginRegistry

    registry = PluginRegistry.load(extra_modules=list(plugin_modules))
    per_scorer: dict[str, dict] = {}
    for key, value in parse_options(options, "--option").items():
        name, dot, option = key.partition(".")
        if not dot:
            raise click.UsageError(f"--option {key}=...: name the scorer, e.g. --option clip_fallback.device=cpu")
        per_scorer.setdefault(name, {})[option] = value
    sample = Sample(prompt, enhanced or prompt, video_path)
    scores = {}
    for name in [n.strip() for n in rewards.split(",") if n.strip()]:
        scorer = registry.create("scorer", name, **per_scorer.get(name, {}))
        [scores[name]] = scorer.score([sample])
    click.echo(json.dumps(scores, indent=2))


@reward.command("serve")
@click.argument("name")
@click.option("--option", "options", multiple=True, help="KEY=VALUE for the scorer (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; 0.0.0.0 only with --api-key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8200, show_default=True)
@click.option("--api-key", envvar="ENHANCER_REWARD_API_KEY", help="Require this bearer key.")
@click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin.")
@click.option(
    "--max-video-bytes",
    type=click.IntRange(1),
    default=512 << 20,
    show_default=True,
    help="Largest upload; larger ones get 413 before any of it is read.",
)
def reward_serve(name, options, host, port, api_key, plugin_modules, max_video_bytes):
    """Serve scorer NAME over HTTP (POST /v1/score), e.g. VisionReward from its own environment."""
    from enhancer.registry import PluginRegistry
    from enhancer.serve.rewards import RewardServer

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    registry = PluginRegistry.load(extra_modules=list(plugin_modules))
    try:
        scorer = registry.create("scorer", name, **parse_options(options, "--option"))
    except ValueError as error:
        raise click.UsageError(f"{name}: {error}") from error
    server = RewardServer(
        scorer,
        host=host,
        port=port,
        api_key=api_key,
        max_video_bytes=max_video_bytes,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(f"enhancer: serving scorer {name} at {server.url}/v1/score", err=True)
    server.serve_forever()
