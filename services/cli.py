"""The ``lyssna`` command: services, analyst tools and the local stack."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Lyssna: mention monitoring for HR teams."""


if __name__ == "__main__":
    main()
