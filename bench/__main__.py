"""`make bench`: run every benchmark on this machine and rewrite BENCHMARKS.md.

Starts the local Kafka and Redis through scripts/infra.sh when needed. The
figures are medians of several runs measured in one go; the machine they ran
on is recorded with them, because on a shared machine only ratios measured
together are comparable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ("ingest", "classify", "adversarial", "e2e", "firehose", "mentions", "scaleout")


# The CPU features that decide which kernels the classifier can use (bf16, int8).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine() -> dict:
    cpu = platform.processor()
    flags: list[str] = []
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("Flags:"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in RELEVANT_FLAGS if f in have]
    except OSError:
        pass
    mem = ""
    if Path("/proc/meminfo").exists():
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "memory": mem, "python": platform.python_version(),
            "kernel": platform.release(), "commit": commit,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _machine_line(m: dict) -> str:
    flags = ", ".join(m.get("flags") or []) or "none of " + "/".join(RELEVANT_FLAGS)
    return (f"_Ran on {m['cpu']} (CPU flags: {flags}), {m['cores']} cores, {m['memory']}, Python {m['python']}, "
            f"Linux {m['kernel']}, no GPU; commit {m['commit']}, {m['date']}._")


def _goal(ratio: float | None) -> str:
    if ratio is None:
        return "no goal is set for this kind of CPU (≥ 5 without native bf16, ≥ 10 with AMX)"
    return f"goal on this kind of CPU ≥ {ratio:g}"


def render(results: dict) -> str:
    out = ["# Benchmarks", "",
           "Written by `make bench` (bench/__main__.py; `python -m bench classify` reruns one). "
           "Medians of several runs in one go. The machine is shared and noisy: compare ratios "
           "measured in the same run, not single times.", ""]
    if "ingest" in results:
        r = results["ingest"]
        out += ["## Ingest: posts/s through `POST /v1/posts`", "",
                f"NDJSON batches of {r['batch_size']}, {r['concurrency']} requests in flight, "
                f"{r['batches_per_run']} batches per run, into the real broker with `acks=all`, "
                "dedup in Redis; every post answered `accepted`.", "",
                "| run | posts/s | service CPU (s) |", "| --- | --- | --- |"]
        out += [f"| {i + 1} | {x['posts_per_s']:.0f} | {x['service_cpu_s']} |" for i, x in enumerate(r["runs"])]
        out += ["", f"**Median: {r['median_posts_per_s']:.0f} posts/s** (goal ≥ {r['goal_posts_per_s']})", "",
                _machine_line(r["machine"]), ""]
    if "classify" in results:
        r = results["classify"]
        out += ["## Classifier: Lyssna's path against a plain transformers baseline", "",
                f"{r['posts']} posts of 20–60 tokens, {r['threads']} threads, {r['repeats']} repeats. Each repeat "
                "times the baseline on a quarter of the posts, half just before and half just after Lyssna's "
                "pass, so both see the same machine load; posts/s are medians over repeats, the ratio is the "
                "median of the per-repeat ratios.", "",
                "| path | posts/s | topic macro-F1 | sentiment macro-F1 |", "| --- | --- | --- | --- |",
                f"| (a) transformers, fp32, batch size 1 | {r['baseline_posts_per_s']} | "
                f"{r['baseline_topic_macro_f1']:.3f} | {r['baseline_sentiment_macro_f1']:.3f} |",
                f"| (b) Lyssna ({r['lyssna_precision']}, batches sorted by token count, fused GELU, "
                f"language id + mentions + heads included) | {r['lyssna_posts_per_s']} | {r['lyssna_topic_macro_f1']:.3f} | "
                f"{r['lyssna_sentiment_macro_f1']:.3f} |",
                *([f"| (c) Lyssna, int8 ONNX Runtime graph (the path of CPUs without native bf16), same repeats "
                   f"| {r['int8']['posts_per_s']} | {r['int8']['topic_macro_f1']:.3f} | "
                   f"{r['int8']['sentiment_macro_f1']:.3f} |"] if r.get("int8") else []), "",
                f"**(b)/(a) = {r['ratio']}** (per repeat: {r['ratios_per_repeat']}; {_goal(r.get('goal_ratio'))}, "
                "with macro-F1 no more than 0.01 below fp32). The service chose "
                f"{r['lyssna_precision']} ({r.get('lyssna_runtime', 'torch')}) on this CPU"
                + (f"; (c)/(a) = {r['int8']['ratio']}." if r.get("int8") else "."), "",
                _machine_line(r["machine"]), ""]
    if "adversarial" in results:
        from bench.bench_adversarial import section

        out += section(results["adversarial"]) + [_machine_line(results["adversarial"]["machine"]), ""]
    if "e2e" in results:
        r = results["e2e"]
        out += ["## End-to-end latency", "", "```", json.dumps({k: v for k, v in r.items() if k != "machine"},
                                                             indent=2), "```", "", _machine_line(r["machine"]), ""]
    if "firehose" in results:
        from bench.bench_firehose import section as firehose_section

        out += firehose_section(results["firehose"]) + [_machine_line(results["firehose"]["machine"]), ""]
    if "mentions" in results:
        from bench.bench_mentions import section as mentions_section

        out += mentions_section(results["mentions"]) + [_machine_line(results["mentions"]["machine"]), ""]
    if "scaleout" in results:
        from bench.bench_scaleout import section as scaleout_section

        out += scaleout_section(results["scaleout"]) + [_machine_line(results["scaleout"]["machine"]), ""]
    for name, err in results.get("errors", {}).items():
        out += [f"## {name}: did not run", "", f"`{err}`", ""]
    return "\n".join(out)


def merge_sections(previous: str, fresh: str) -> str:
    """``fresh`` (this run's render) with every ``## `` section of ``previous`` that it
    lacks kept in its place: ``latest.json`` stays on the machine that ran a benchmark,
    so a ``python -m bench classify`` on a new checkout must not drop the figures of the
    benchmarks it did not rerun."""
    def sections(text: str) -> tuple[str, list[tuple[str, str]]]:
        head, *parts = text.split("\n## ")
        return head, [(part.split("\n", 1)[0], "## " + part.rstrip("\n") + "\n") for part in parts]

    _, old = sections(previous)
    head, new = sections(fresh)
    new_by_title = dict(new)
    merged = [new_by_title.pop(title, body) for title, body in old]
    merged += new_by_title.values()  # sections the previous file did not have
    return head.rstrip("\n") + "\n\n" + "\n".join(merged)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("only", nargs="*", metavar="BENCH", help=f"run only these of {', '.join(BENCHES)} (default: all)")
    args = p.parse_args()
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHES)}")
    subprocess.run([str(ROOT / "scripts" / "infra.sh"), "up", "kafka", "redis"], check=True)
    latest = ROOT / ".local" / "bench" / "latest.json"
    # Figures of benchmarks not rerun this time are kept, each with its own machine line.
    results: dict = json.loads(latest.read_text()) if latest.exists() else {}
    results["errors"] = {}
    m = machine()
    for name in args.only or BENCHES:
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError:
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = {**module.run(None), "machine": m}
        except Exception as e:  # a failed bench is reported, the others still run
            results["errors"][name] = f"{type(e).__name__}: {e}"
        print(json.dumps(results.get(name) or results["errors"].get(name), indent=2), file=sys.stderr)
    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps(results, indent=2))
    report = ROOT / "BENCHMARKS.md"
    previous = report.read_text(encoding="utf-8") if report.exists() else ""
    report.write_text(merge_sections(previous, render(results)), encoding="utf-8")
    print(f"[bench] wrote BENCHMARKS.md and {latest}", file=sys.stderr)
    sys.exit(1 if results["errors"] else 0)


if __name__ == "__main__":
    main()
