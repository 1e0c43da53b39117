"""Which metrics the dashboards and recording rules need, and which a scrape offers.

The Grafana dashboards and deploy/prometheus/rules.yml name metrics in PromQL;
a typo there is a panel that silently says "No data". These helpers read every
query with a real PromQL parser, resolve recording-rule names to the metrics
they are computed from, and compare with the names a running service exposes:

    from helpers.metric_names import metric_names_used, exposition_sample_names
    missing = metric_names_used() - exposition_sample_names(scrape_text)

``render_expr`` turns a dashboard query into plain PromQL (Grafana's ``$org``,
``$__range`` ... substituted) so a test can also run it against Prometheus.
Names are *sample* names as they appear in the text format
(``lyssna_ingest_posts_total``, ``..._bucket``), not family names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules.yml"

# Series Prometheus makes up for every target; no service exports them.
PROMETHEUS_SYNTHETIC = frozenset({
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
})

# Grafana's built-in variables, with values that make the query valid PromQL.
GRAFANA_DEFAULTS = {
    "__rate_interval": "1m", "__interval": "15s", "__range": "1h",
    "__range_s": "3600", "__range_ms": "3600000", "__interval_ms": "15000",
}
_VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$")


@dataclass(frozen=True)
class Query:
    dashboard: str      # file name
    panel: str          # panel title, or "variable <name>"
    ref: str            # refId
    expr: str           # as written in the dashboard


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def _all_panels(panels: list[dict]) -> Iterable[dict]:
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels", []))  # panels inside collapsed rows


def dashboard_queries(dashboards: Mapping[str, dict] | None = None) -> list[Query]:
    """Every PromQL query in the dashboards: panel targets and query variables."""
    dashboards = load_dashboards() if dashboards is None else dashboards
    out = []
    for name, dash in dashboards.items():
        for panel in _all_panels(dash.get("panels", [])):
            for t in panel.get("targets", []):
                out.append(Query(name, panel.get("title", ""), t.get("refId", ""), t.get("expr", "")))
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var.get("query")
                q = q.get("query", "") if isinstance(q, dict) else (q or "")
                m = _LABEL_VALUES.match(q)
                # label_values(metric, label) is Grafana's, not PromQL; its first argument is a selector.
                out.append(Query(name, f"variable {var.get('name')}", "", m.group(1) if m else q))
    return out


def render_expr(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Substitute Grafana variables; user variables default to ``.*`` (they sit in ``=~`` matchers)."""
    values = {**GRAFANA_DEFAULTS, **(variables or {})}

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, ".*")

    return _VAR.sub(sub, expr)


def selector_names(expr: str) -> set[str]:
    """Metric names selected anywhere in one PromQL expression (raises ValueError if it does not parse)."""
    names: set[str] = set()

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                names.update(m.value for m in node.matchers.matchers
                             if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def recording_rules(path: Path = RULES_FILE) -> dict[str, str]:
    """``record`` name -> expression, for every recording rule in the file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {r["record"]: r["expr"] for g in doc.get("groups", []) for r in g.get("rules", []) if "record" in r}


def resolve(names: Iterable[str], rules: Mapping[str, str]) -> set[str]:
    """Replace recording-rule names by the metrics they are computed from, transitively."""
    out: set[str] = set()
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in rules:
            todo.extend(selector_names(rules[name]))
        else:
            out.add(name)
    return out


def dashboard_metric_names(dashboards: Mapping[str, dict] | None = None,
                           rules_file: Path = RULES_FILE) -> set[str]:
    """Exported sample names the dashboards need, recording rules resolved, Prometheus' own series left out."""
    rules = recording_rules(rules_file)
    used = set().union(*(selector_names(render_expr(q.expr)) for q in dashboard_queries(dashboards)))
    return resolve(used, rules) - PROMETHEUS_SYNTHETIC


def rule_metric_names(rules_file: Path = RULES_FILE) -> set[str]:
    """Exported sample names the recording rules read."""
    rules = recording_rules(rules_file)
    return resolve(rules, rules) - PROMETHEUS_SYNTHETIC


def metric_names_used(dashboards: Mapping[str, dict] | None = None, rules_file: Path = RULES_FILE) -> set[str]:
    """Everything the dashboards and recording rules expect the services to export."""
    return dashboard_metric_names(dashboards, rules_file) | rule_metric_names(rules_file)


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exposition_sample_names(text: str) -> set[str]:
    """Sample names a /metrics page (Prometheus text format) declares or shows.

    A labelled metric that has not been used yet shows only its # TYPE line, no
    samples; the names its samples will have are derived from the type so such
    a metric still counts as exported.
    """
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names
