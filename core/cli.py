"""The `enhancer` command: one click group. Commands parse, call the library and print.

enhancer enhance "a fox trotting across a snowy field at dawn"
enhancer enhance --input prompts.txt --output out.jsonl --resume
enhancer run --backend synthetic --reward keep,coverage,clean --trainer trl_grpo --out runs/demo
enhancer plugins list
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from enhancer.enhance.engines import ENGINES
from enhancer.prompts import PROFILES


class _Group(click.Group):
    """Turn library errors (bad plugin name, missing model, bad recipe) into one clean line and exit 2."""

    def invoke(self, ctx):
        from enhancer.models import ModelNotFoundError
        from enhancer.registry import PluginError

        try:
            return super().invoke(ctx)
        except (PluginError, ModelNotFoundError, ValueError, FileNotFoundError, FileExistsError) as error:
            click.echo(f"enhancer: error: {error}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="enhancer")
def main() -> None:
    """enhancer: better text-to-video prompts, and the toolkit that trains the model that writes them."""
    from enhancer import logs

    logs.to_stderr()  # the library's messages, as `enhancer: ...` lines on stderr


# ------------------------------------------------------------------------------------------------------ enhance


@main.command()
@click.argument("prompt", required=False)
@click.option("--input", "input_path", help="Prompts to enhance: .txt (one per line), .jsonl, or - for stdin.")
@click.option("--output", "output_path", help="Write one JSON row per input here (- for stdout).")
@click.option("--resume", is_flag=True, help="Skip inputs already in --output and append the rest.")
@click.option("--model", default="embedded", show_default=True, help="'embedded', a local HF directory or a hub id.")
@click.option("--adapter", help="A PEFT adapter directory to apply to --model.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default="transformers", show_default=True)
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
    seed,
    temperature,
    max_new_tokens,
    negative,
    dtype,
    prompt_format,
    batch_size,
):
    """Enhance PROMPT, or every prompt in --input."""
    from enhancer.enhance import Enhancer
    from enhancer.enhance.batch import enhance_file
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
    )
    options = dict(target=target, n=n, seed=seed, negative=negative)
    if prompt is not None:
        result = enhancer.enhance(prompt, **options)
        if output_path:
            with click.open_file(output_path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            return
        click.echo("\n\n".join(result.variants) if len(result.variants) > 1 else result.enhanced)
        if result.negative:
            click.echo(f"\nNegative: {result.negative}")
        if result.status != "ok":
            click.echo(f"enhancer: {result.status}: {result.message}", err=True)
        return
    summary = enhance_file(
        enhancer, input_path, output_path or "-", resume=resume, options=options, chunk_size=batch_size
    )
    click.echo(summary.line(), err=True)
    if summary.failed_all:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------------------- run


@main.command()
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/); flags below override it.")
@click.option("--backend", help="Video backend plugin (see `enhancer plugins list`).")
@click.option("--reward", "rewards", help="Reward scorer plugin(s), comma-separated.")
@click.option("--trainer", help="Policy trainer plugin.")
@click.option("--model", help="Base model: 'embedded', a local HF directory or a hub id.")
@click.option("--adapter", help="Start stage 2 from this adapter (skips stage 1).")
@click.option("--out", help="Output folder.")
@click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin (repeatable).")
@click.option("--target", type=click.Choice(list(PROFILES)), help="Target profile the policy writes for.")
@click.option("--seed", type=int)
@click.option("--sft-steps", type=click.IntRange(0), help="Stage 1 optimizer steps.")
@click.option("--rl-steps", type=click.IntRange(1), help="Stage 2 policy updates.")
@click.option("--max-videos", type=click.IntRange(1), help="Stop stage 2 before making more videos.")
@click.option("--max-cost-usd", type=click.FloatRange(0), help="Stop stage 2 before spending more.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out (after a crash or kill) with its saved config.yaml; flags still override.",
)
def run(
    recipe,
    backend,
    rewards,
    trainer,
    model,
    adapter,
    out,
    plugin_modules,
    target,
    seed,
    sft_steps,
    rl_steps,
    max_videos,
    max_cost_usd,
    resume,
):
    """Run the two-stage recipe: stage 1 SFT, then stage 2 RL through the chosen plugins.

    A rerun into the same --out picks up where the last one stopped: a finished stage 1 is not trained again,
    stage 2 continues from its last checkpoint, cached videos are not made again and the budget carries over.
    `--resume --out DIR` does that with the run's own config.yaml, so no flag needs repeating."""
    from enhancer.config import RunConfig
    from enhancer.distributed import current_process
    from enhancer.orchestrator import run as run_recipe

    if resume:
        if not out:
            raise click.UsageError("--resume needs --out, the folder of the run to continue")
        saved = Path(out) / "config.yaml"
        if not saved.is_file():
            raise click.UsageError(f"--resume: {saved} does not exist; is {out} the folder of an enhancer run?")
        if recipe:
            raise click.UsageError("--resume uses the run's own config.yaml; leave out --recipe")
        recipe = str(saved)
    config = RunConfig.from_yaml(
        recipe,
        backend=backend,
        rewards=rewards,
        trainer=trainer,
        model=model,
        adapter=adapter,
        out=out,
        plugins=list(plugin_modules) or None,
        target=target,
        seed=seed,
        sft={"max_steps": sft_steps} if sft_steps is not None else None,
        rl={
            k: v
            for k, v in (("max_steps", rl_steps), ("max_videos", max_videos), ("max_cost_usd", max_cost_usd))
            if v is not None
        }
        or None,
    )
    summary = run_recipe(config)
    if current_process().is_main:  # under several processes, the main one prints
        click.echo(json.dumps(summary, indent=2))


@main.command()
@click.option("--model", default="embedded", show_default=True, help="'embedded', a local HF directory or a hub id.")
@click.option("--adapter", help="A PEFT adapter directory to apply to --model.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default="transformers", show_default=True)
@click.option("--base-url", help="Upstream OpenAI-compatible endpoint for --engine openai.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Weights' dtype.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; beyond loopback only with a key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--api-key",
    envvar="ENHANCER_SERVE_API_KEY",
    help="Require Authorization: Bearer KEY (or $ENHANCER_SERVE_API_KEY).",
)
@click.option("--batch-window-ms", type=click.FloatRange(0), default=20.0, show_default=True)
@click.option("--max-batch", type=click.IntRange(1), default=32, show_default=True, help="Prompts per generate call.")
@click.option("--max-n", type=click.IntRange(1), default=8, show_default=True, help="Most variants one request asks.")
@click.option("--timeout", type=click.FloatRange(1), default=300.0, show_default=True, help="Seconds per request.")
def serve(model, adapter, engine, base_url, dtype, host, port, api_key, batch_window_ms, max_batch, max_n, timeout):
    """Serve the enhancer over HTTP: /v1/enhance, OpenAI-compatible /v1/chat/completions, /v1/models, /healthz."""
    import uvicorn

    from enhancer.enhance import Enhancer
    from enhancer.serve.api import ServeLimits, create_app

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    enhancer = Enhancer.load(
        model=model,
        adapter=adapter,
        engine=engine,
        base_url=base_url,
        dtype=dtype,
        batch_size=max_batch,
        log=lambda m: click.echo(f"enhancer: {m}", err=True),
    )
    limits = ServeLimits(max_n=max_n, request_timeout_s=timeout, batch_window_ms=batch_window_ms, max_batch=max_batch)
    app = create_app(enhancer, limits, api_key)
    click.echo(f"enhancer: serving {enhancer.model_label} at http://{host}:{port} (POST /v1/enhance)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@main.group()
def rate() -> None:
    """Human ratings: blind A/B judgements of two variants' outputs (from an `enhancer eval` folder)."""


def _rating_inputs(results, variants, db):
    from enhancer.rate import RatingStore, load_pairs

    try:
        pairs = load_pairs(results, [v.strip() for v in variants.split(",")] if variants else None)
    except (FileNotFoundError, ValueError) as error:
        raise click.UsageError(str(error)) from error
    return pairs, RatingStore(db or Path(results) / "ratings.sqlite")


@rate.command("serve")
@click.option("--results", required=True, type=click.Path(file_okay=False), help="An `enhancer eval` --out folder.")
@click.option("--variants", help="Only these variants, comma-separated (default: every pair of them).")
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: RESULTS/ratings.sqlite).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; beyond loopback only with a key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8300, show_default=True)
@click.option("--api-key", envvar="ENHANCER_RATE_API_KEY", help="Require Authorization: Bearer KEY.")
def rate_serve(results, variants, db, host, port, api_key):
    """Serve the rating page: raters pick the better of two outputs; every rating is saved at once."""
    import uvicorn

    from enhancer.serve.rate import create_rating_app

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    pairs, store = _rating_inputs(results, variants, db)
    click.echo(f"enhancer: {len(pairs)} pairs to rate at http://{host}:{port}/ (ratings in {store.path})", err=True)
    uvicorn.run(create_rating_app(pairs, store, api_key), host=host, port=port, log_level="warning")


@rate.command("scores")
@click.option("--results", required=True, type=click.Path(file_okay=False))
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: RESULTS/ratings.sqlite).")
def rate_scores(results, db):
    """Bradley-Terry strength per variant with 95% bootstrap intervals, win rates and counts (JSON)."""
    from enhancer.rate import RatingStore, scores

    store = RatingStore(db or Path(results) / "ratings.sqlite")
    click.echo(json.dumps(scores(store.rows()), indent=2))


@rate.command("export")
@click.option("--results", required=True, type=click.Path(file_okay=False))
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file (default: RESULTS/ratings.sqlite).")
@click.option("--out", default="ratings.csv", show_default=True, help="CSV file to write.")
def rate_export(results, db, out):
    """Every rating as a CSV row (rater, pair, variants, winner, and the two texts)."""
    from enhancer.rate import export_csv

    pairs, store = _rating_inputs(results, None, db)
    click.echo(str(export_csv(store, pairs, out)))


# --------------------------------------------------------------------------------------------------------- data


@main.group()
def data() -> None:
    """Check, describe and grow enhancer's data (data/stage1, data/stage2, data/eval)."""


@data.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--near-duplicate",
    type=click.FloatRange(0, 1),
    default=0.92,
    show_default=True,
    help="MiniLM cosine above which two simple prompts count as near-duplicates.",
)
def data_validate(paths, near_duplicate):
    """Print every problem in PATHS (files or folders) as file:line: problem; exit 1 when there is any."""
    from enhancer.data.validate import validate

    report = validate(list(paths), near_duplicate=near_duplicate)
    for problem in report.problems:
        click.echo(problem)
    click.echo(report.summary(), err=True)
    if report.problems:
        sys.exit(1)


@data.command("stats")
@click.argument("paths", nargs=-1)
@click.option("--out", default="data/CARD.md", show_default=True, help="Where to write the data card.")
def data_stats(paths, out):
    """Write the data card: counts per style, target and split, lengths, diversity, how the data was made."""
    from enhancer.data.stats import write_card

    path = write_card(list(paths) or ["data"], out)
    click.echo(f"wrote {path}", err=True)


@data.command("synth")
@click.option("--base-url", required=True, help="OpenAI-compatible endpoint of the teacher model.")
@click.option("--model", required=True, help="The teacher model's name on that endpoint.")
@click.option("--n", "n", type=click.IntRange(1), required=True, help="Rows the output file should hold.")
@click.option("--out", default="data/stage1/synth.jsonl", show_default=True)
@click.option(
    "--pool", multiple=True, default=["data/stage1"], show_default=True, help="Pairs to show the teacher as examples."
)
@click.option(
    "--against", multiple=True, default=["data"], show_default=True, help="Data the new prompts must not duplicate."
)
@click.option("--style", "styles", multiple=True, help="Only these styles (repeatable).")
@click.option("--api-key", envvar="ENHANCER_API_KEY")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(base_url, model, n, out, pool, against, styles, api_key, seed):
    """Append validated, deduplicated pairs written by a teacher LLM to --out (resumable)."""
    from enhancer.data.schema import STYLES
    from enhancer.data.synth import synth

    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise click.UsageError(f"unknown style(s) {', '.join(unknown)}; valid: {', '.join(STYLES)}")
    summary = synth(
        base_url,
        model,
        n,
        out,
        pool=list(pool),
        against=list(against),
        api_key=api_key,
        styles=list(styles) or None,
        seed=seed,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(summary.line(), err=True)
    if summary.already + summary.written < n:
        sys.exit(1)


# --------------------------------------------------------------------------------------------------------- eval


@main.command("eval")
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/eval/); flags override it.")
@click.option("--prompts", "prompts", multiple=True, help="Annotated eval prompts (default data/eval).")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="NAME=SPEC: raw, embedded, embedded-base, baseline-system-prompt, or model=..,adapter=..,"
    "engine=..,base_url=..,prompt=.. (repeatable).",
)
@click.option("--scorers", help="Comma-separated scorer names (default: every text scorer).")
@click.option("--weight", "weights", multiple=True, help="NAME=W: a scorer's weight in the composite.")
@click.option("--target", type=click.Choice(list(PROFILES)))
@click.option("--limit", type=click.IntRange(1), help="Only the first N prompts.")
@click.option("--seed", type=int)
@click.option("--batch-size", type=click.IntRange(1, 512))
@click.option("--max-new-tokens", type=click.IntRange(8, 4096))
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    help="Model weights' dtype (bfloat16: ~1.5x faster on AVX512-BF16 CPUs).",
)
@click.option("--plugin", "plugin_modules", multiple=True, help="Load this module as a plugin (repeatable).")
@click.option("--out", help="Output folder (default runs/eval); a folder with rows resumes.")
@click.option(
    "--rescore",
    is_flag=True,
    help="Score the outputs already in --out again with the current scorers (after a scorer changed).",
)
def eval_command(
    recipe,
    prompts,
    variants,
    scorers,
    weights,
    target,
    limit,
    seed,
    batch_size,
    max_new_tokens,
    dtype,
    plugin_modules,
    out,
    rescore,
):
    """Run variants over the eval prompts and score every output; write results.jsonl and summary.{json,md}."""
    from enhancer.eval import evaluate, parse_variant
    from enhancer.eval.config import EvalConfig

    parsed_weights = {}
    for item in weights:
        name, _, value = item.partition("=")
        try:
            parsed_weights[name] = float(value)
        except ValueError as error:
            raise click.UsageError(f"--weight {item!r}: expected NAME=NUMBER") from error
    config = EvalConfig.from_yaml(
        recipe,
        prompts=list(prompts),
        variants=list(variants),
        scorers=scorers,
        weights=parsed_weights or None,
        target=target,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        dtype=dtype,
        plugins=list(plugin_modules),
        out=out,
    )
    summary = evaluate(
        config.prompts,
        [parse_variant(v) for v in config.variants],
        config.out,
        scorers=config.scorers,
        weights=config.weights,
        target=config.target,
        limit=config.limit,
        seed=config.seed,
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        dtype=config.dtype,
        plugins=config.plugins,
        command=" ".join(["enhancer", *sys.argv[1:]]),
        rescore=rescore,
    )
    from enhancer.eval.runner import summary_markdown

    click.echo(summary_markdown(summary))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--traces",
    type=click.Path(dir_okay=False, exists=True),
    help="An RL trace file (traces.jsonl, or the original project's stage2_traces.jsonl).",
)
def report(directory, traces):
    """Write DIRECTORY/report.html with PNG plots, from `enhancer eval` results and/or RL traces."""
    from enhancer.eval.report import render

    click.echo(str(render(directory, traces)))


@main.command()
@click.option("--adapter", help="The PEFT adapter directory to fold in ('none': the base model alone).")
@click.option("--merge", "out", help="Where to write the merged model (a new folder).")
@click.option("--gguf", "gguf_out", help="Write one GGUF file here (llama.cpp, Ollama, LM Studio).")
@click.option(
    "--quant",
    type=click.Choice(["f16", "q8_0", "f32"]),
    default="q8_0",
    show_default=True,
    help="GGUF type: q8_0 decodes 1.6x faster than f16 here, within noise of its quality (docs/evaluation.md).",
)
@click.option("--gguf-pre", help="GGUF: llama.cpp's pre-tokenizer name, when it cannot be told from the model.")
@click.option("--ollama", "ollama_dir", help="Write model.gguf and an Ollama Modelfile into this new folder.")
@click.option("--target", type=click.Choice(list(PROFILES)), default="generic", show_default=True, help="--ollama.")
@click.option("--model", help="Base model (default: the adapter's base_model_name_or_path; for --gguf: embedded).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option(
    "--ship-embedded",
    is_flag=True,
    help="Maintainers: copy the adapter into enhancer/assets/embedded/ as the embedded default, with a model card.",
)
@click.option("--eval", "eval_dir", type=click.Path(file_okay=False), help="With --ship-embedded: the eval folder.")
@click.option("--note", help="With --ship-embedded: a line for the model card (e.g. what else the machine ran).")
def export(adapter, out, gguf_out, quant, gguf_pre, ollama_dir, target, model, dtype, ship_embedded, eval_dir, note):
    """Merge an adapter into its base model: a plain model directory (--merge) or one GGUF file (--gguf)."""
    if sum(bool(x) for x in (out, gguf_out, ollama_dir, ship_embedded)) != 1:
        raise click.UsageError("give one of --merge OUT, --gguf OUT.gguf, --ollama DIR or --ship-embedded")
    if ollama_dir or gguf_out:
        from enhancer.gguf_export import ExportError, export_gguf, export_ollama

        common = dict(model=model or "embedded", adapter=adapter, quant=quant, pre=gguf_pre)
        try:
            if ollama_dir:
                export_ollama(ollama_dir, target=target, log=lambda m: click.echo(m, err=True), **common)
            else:
                export_gguf(gguf_out, log=lambda m: click.echo(m, err=True), **common)
        except (ExportError, FileExistsError) as error:
            raise click.UsageError(str(error)) from error
        return
    if not adapter:
        raise click.UsageError("--merge and --ship-embedded need --adapter DIR")
    if ship_embedded:
        from enhancer.modelcard import ship_embedded as ship

        ship(adapter, eval_dir, note=note, log=lambda m: click.echo(m, err=True))
        return
    from enhancer.export import merge_adapter

    merge_adapter(adapter, out, model=model, dtype=dtype, log=lambda m: click.echo(m, err=True))


@main.group()
def train() -> None:
    """Train one stage on its own (`enhancer run` chains both)."""


@train.command("sft")
@click.option("--recipe", type=click.Path(dir_okay=False), help="YAML recipe (recipes/sft/); flags override it.")
@click.option("--model", help="Base model: 'embedded', a local HF directory or a hub id.")
@click.option("--data", "data_paths", multiple=True, help="Stage-1 pairs (JSONL files or folders).")
@click.option("--out", help="Output folder; the adapter lands in OUT/stage1/adapter.")
@click.option("--max-steps", type=click.IntRange(0), help="Optimizer steps (0: use epochs).")
@click.option("--epochs", type=click.FloatRange(0, min_open=True))
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True))
@click.option("--seed", type=int)
@click.option("--bf16", type=click.BOOL, help="bf16 autocast (true/false); default: on CUDA only.")
@click.option("--batching", type=click.Choice(["padded", "grouped", "packed"]), help="How pairs form batches.")
def train_sft_command(recipe, model, data_paths, out, max_steps, epochs, learning_rate, seed, bf16, batching):
    """Stage 1: LoRA SFT with TRL. A folder with checkpoints resumes from the last one."""
    from enhancer.config import RunConfig
    from enhancer.data import load_pairs
    from enhancer.distributed import current_process
    from enhancer.models import resolve_model
    from enhancer.sft import train_sft

    sft = {
        k: v
        for k, v in (
            ("max_steps", max_steps),
            ("epochs", epochs),
            ("learning_rate", learning_rate),
            ("bf16", bf16),
            ("batching", batching),
        )
        if v is not None
    }
    config = RunConfig.from_yaml(
        recipe, model=model, stage1_data=list(data_paths) or None, out=out, seed=seed, sft=sft or None
    )
    process = current_process()
    log = process.logger(lambda m: click.echo(f"enhancer: {m}", err=True))
    if process.is_main:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        config.to_yaml(Path(config.out) / "config.yaml")
    with process.main_first():  # the embedded model's first use builds a cache: once
        resolved = resolve_model(config.model, "none" if config.model == "embedded" else None, log=log)
    adapter = train_sft(
        resolved.path,
        load_pairs(config.stage1_data),
        config.sft,
        Path(config.out) / "stage1",
        seed=config.seed,
        metadata={
            "base_model": config.model,
            "recipe": recipe,
            "command": " ".join(["enhancer", *sys.argv[1:]]),
            "seed": config.seed,
        },
        log=log,
        process=process,
    )
    if process.is_main:
        click.echo(str(adapter))


@train.command("dpo")
@click.option("--traces", "traces", multiple=True, required=True, help="traces.jsonl of stage-2 runs (repeatable).")
@click.option("--model", default="embedded", show_default=True, help="Base model the traces' policy was built on.")
@click.option("--adapter", help="The SFT adapter to start from (default: the embedded model's shipped one).")
@click.option("--out", default="runs/dpo", show_default=True, help="Output folder; the adapter lands in OUT/adapter.")
@click.option("--min-margin", type=click.FloatRange(0), default=0.1, show_default=True, help="Least reward gap.")
@click.option("--beta", type=click.FloatRange(0, min_open=True), default=0.1, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), default=5e-6, show_default=True)
@click.option("--max-steps", type=click.IntRange(0), default=0, show_default=True, help="0: --epochs over the pairs.")
@click.option("--epochs", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True, help="Pairs per process.")
@click.option("--save-steps", type=click.IntRange(1), default=20, show_default=True, help="Checkpoint every N steps.")
@click.option("--target", type=click.Choice(list(PROFILES)), default="generic", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train_dpo_command(
    traces,
    model,
    adapter,
    out,
    min_margin,
    beta,
    learning_rate,
    max_steps,
    epochs,
    batch_size,
    save_steps,
    target,
    seed,
):
    """Preference training on stage-2 traces: per prompt, its best rewrite over its worst (TRL DPOTrainer).
    A rerun into the same --out resumes from its newest complete checkpoint."""
    from enhancer.distributed import current_process
    from enhancer.dpo import DPOSettings, TracesError, train_dpo
    from enhancer.models import resolve_model

    process = current_process()
    log = process.logger(lambda m: click.echo(f"enhancer: {m}", err=True))
    with process.main_first():  # the embedded model's first use builds a cache: once
        resolved = resolve_model(model, adapter, log=log)
    settings = DPOSettings(
        beta=beta,
        learning_rate=learning_rate,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        min_margin=min_margin,
        save_steps=save_steps,
    )
    try:
        final = train_dpo(
            resolved.path,
            resolved.adapter,
            list(traces),
            out,
            settings,
            target=target,
            seed=seed,
            metadata={"base_model": model, "command": " ".join(["enhancer", *sys.argv[1:]])},
            log=log,
            process=process,
        )
    except TracesError as error:
        raise click.UsageError(str(error)) from error
    if process.is_main:
        click.echo(str(final))


# -------------------------------------------------------------------------------------------------------- video


def _parse_options(pairs: tuple[str, ...], flag: str) -> dict:
    """KEY=VALUE options for a plugin; values are read as YAML scalars (numbers, true/false), else text."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} model=wan2.2")
        try:
            options[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def _video_service(backend, options, cache, concurrency, max_cost_usd, plugin_modules):
    from enhancer.registry import PluginRegistry
    from enhancer.video_service import VideoService

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
    from enhancer.video_service import VideoRequest

    try:
        parse_size(size)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    service = _video_service(backend, _parse_options(options, "--option"), cache, 1, max_cost_usd, plugin_modules)
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
    from enhancer.video_service import VideoRequest

    prompts = _read_prompt_lines(prompts_path)
    service = _video_service(backend, _parse_options(options, "--option"), cache, 1, max_cost_usd, plugin_modules)
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
def video_serve(backend, options, host, port, api_key, concurrency, out, plugin_modules):
    """Serve a backend over the OpenAI videos protocol, for the sora plugin on other machines."""
    from enhancer.registry import PluginRegistry
    from enhancer.serve.videos import VideoProtocolServer

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    registry = PluginRegistry.load(extra_modules=list(plugin_modules))
    instance = registry.create("backend", backend, **{"out_dir": out, **_parse_options(options, "--option")})
    server = VideoProtocolServer(
        instance, host=host, port=port, api_key=api_key, concurrency=concurrency, log=lambda m: click.echo(m, err=True)
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
    for key, value in _parse_options(options, "--option").items():
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
def reward_serve(name, options, host, port, api_key, plugin_modules):
    """Serve scorer NAME over HTTP (POST /v1/score), e.g. VisionReward from its own environment."""
    from enhancer.registry import PluginRegistry
    from enhancer.serve.rewards import RewardServer

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise click.UsageError(f"--host {host} exposes the server beyond this machine: set --api-key too")
    registry = PluginRegistry.load(extra_modules=list(plugin_modules))
    try:
        scorer = registry.create("scorer", name, **_parse_options(options, "--option"))
    except ValueError as error:
        raise click.UsageError(f"{name}: {error}") from error
    server = RewardServer(scorer, host=host, port=port, api_key=api_key, log=lambda m: click.echo(m, err=True))
    click.echo(f"enhancer: serving scorer {name} at {server.url}/v1/score", err=True)
    server.serve_forever()


# ------------------------------------------------------------------------------------------------------ plugins


@main.group()
def plugins() -> None:
    """Inspect the registered plugins."""


@plugins.command("list")
@click.option("--plugin", "plugin_modules", multiple=True, help="Also load this module as a plugin.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of a table.")
def plugins_list(plugin_modules, as_json):
    """Every video backend, reward scorer and policy trainer, with the package it came from."""
    from enhancer.registry import PluginRegistry

    registry = PluginRegistry.load(extra_modules=plugin_modules)
    rows = registry.rows()
    if as_json:
        click.echo(json.dumps({"plugins": rows, "broken": [b.__dict__ for b in registry.broken]}, indent=2))
        return
    widths = {key: max([len(key)] + [len(r[key]) for r in rows]) for key in ("kind", "name", "package")}
    click.echo("  ".join(key.upper().ljust(widths[key]) for key in widths) + "  SUMMARY")
    for row in rows:
        click.echo("  ".join(row[key].ljust(widths[key]) for key in widths) + "  " + row["summary"])
    for broken in registry.broken:
        click.echo(f"broken: {broken.plugin} ({broken.source}): {broken.error}", err=True)


if __name__ == "__main__":
    main()
