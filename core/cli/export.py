"""`enhancer export`: merged model folders, GGUF, Ollama, and shipping the embedded adapter."""

from __future__ import annotations

import click

from enhancer.cli.app import main
from enhancer.export.gguf import QUANTS
from enhancer.prompts import PROFILES


@main.command()
@click.option("--adapter", help="The PEFT adapter directory to fold in ('none': the base model alone).")
@click.option("--merge", "out", help="Where to write the merged model (a new folder).")
@click.option("--gguf", "gguf_out", help="Write one GGUF file here (llama.cpp, Ollama, LM Studio).")
@click.option(
    "--quant",
    type=click.Choice(QUANTS),
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
        from enhancer.export.gguf import ExportError, export_gguf, export_ollama

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
        from enhancer.export.modelcard import ship_embedded as ship

        ship(adapter, eval_dir, note=note, log=lambda m: click.echo(m, err=True))
        return
    from enhancer.export.merge import merge_adapter

    merge_adapter(adapter, out, model=model, dtype=dtype, log=lambda m: click.echo(m, err=True))
