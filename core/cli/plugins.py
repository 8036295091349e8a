"""The `plugins list` command: every registered backend, scorer and trainer."""

from __future__ import annotations

import json

import click

from enhancer.cli.app import main

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
