"""The ``lyssna`` command: services, analyst tools and the local stack.

Imports are lazy so ``lyssna --help`` stays fast: torch and faust load only for
the commands that need them.
"""

from __future__ import annotations

import importlib
import sys

import click

SERVICES = ("ingest", "classify", "alerts")


def _settings(config: str | None):
    from lyssna.common.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as e:
        click.echo(f"lyssna: {e}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Lyssna: mention monitoring for HR teams."""


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--config", "-c", envvar="LYSSNA_CONFIG", type=click.Path(dir_okay=False),
              help="YAML settings file (default: $LYSSNA_CONFIG).")
def serve(service: str, config: str | None) -> None:
    """Run one service in the foreground (what `make up` and the images run)."""
    settings = _settings(config)
    importlib.import_module(f"lyssna.{service}.service").run(settings)


if __name__ == "__main__":
    main()
