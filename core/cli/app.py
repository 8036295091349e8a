"""The `enhancer` command's group: one click group, with a clean one-line error for library errors. Each command
group lives in its own module here (enhance, train, evaluate, data, export, video, plugins); commands parse,
call the library and print.

    enhancer enhance "a fox trotting across a snowy field at dawn"
    enhancer run --backend synthetic --reward keep,coverage,clean --trainer trl_grpo --out runs/demo
    enhancer --help
"""

from __future__ import annotations

import click


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


def parse_options(pairs: tuple[str, ...], flag: str) -> dict:
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
