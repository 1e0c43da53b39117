#!/usr/bin/env python3
"""Write the two provisioned Grafana dashboards as JSON.

    python3 deploy/grafana/generate_dashboards.py          # rewrite dashboards/*.json
    python3 deploy/grafana/generate_dashboards.py --check  # exit 1 if they are stale

The JSON files are committed (Grafana reads them from disk); this script is
their source so that layout, datasource and conventions stay uniform. Edit the
panels here, rerun, commit both. tests/unit/test_deploy_config.py fails when the
committed files differ from what this script writes.

Every query uses only metrics the services export or the recording rules in
deploy/prometheus/rules.yml. ``or on() vector(0)`` appears only where a series
legitimately does not exist until something happens (a dead letter, a failed
delivery, an alert): there the panel should say 0, not "No data".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "lyssna-prometheus"}  # provisioning/datasources/prometheus.yml
SCHEMA_VERSION = 39
QUANTILES = (0.5, 0.95, 0.99)
LYSSNA_JOBS = 'job=~"lyssna-(ingest|classify|alerts)"'
SENTIMENT_COLORS = {"negative": "red", "neutral": "text", "positive": "green"}


def target(expr: str, legend: str = "__auto", *, instant: bool = False, fmt: str | None = None) -> dict:
    t = {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend,
         "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    return t


def quantile_targets(bucket_rule: str, by: str = "le") -> list[dict]:
    return [target(f"histogram_quantile({q}, sum by ({by}) ({bucket_rule}))", f"p{round(q * 100)}")
            for q in QUANTILES]


class Dashboard:
    """Lays panels out left to right in Grafana's 24-column grid, wrapping rows."""

    def __init__(self, uid: str, title: str, description: str, *, time_from: str = "now-6h"):
        self.uid, self.title, self.description, self.time_from = uid, title, description, time_from
        self.panels: list[dict] = []
        self.variables: list[dict] = []
        self._x = self._y = self._row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self._add({"type": "row", "title": title, "collapsed": False, "panels": []}, w=24, h=1)

    def panel(self, kind: str, title: str, description: str, targets: list[dict], *, w: int = 12, h: int = 8,
              unit: str = "short", decimals: int | None = None, options: dict | None = None,
              defaults: dict | None = None, overrides: list | None = None) -> None:
        if self._x + w > 24:
            self._newline()
        field_defaults = {"unit": unit, **(defaults or {})}
        if decimals is not None:
            field_defaults["decimals"] = decimals
        if kind == "timeseries":
            field_defaults.setdefault("custom", {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                 "showPoints": "never", "spanNulls": False})
        panel = {
            "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
            "options": options or _default_options(kind),
            "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        }
        self._add(panel, w=w, h=h)

    def variable(self, name: str, label: str, query: str, *, multi: bool = True) -> None:
        self.variables.append({
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "definition": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": True,
            "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0,
        })

    def _newline(self) -> None:
        self._y += self._row_h
        self._x = self._row_h = 0

    def _add(self, panel: dict, *, w: int, h: int) -> None:
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)

    def to_json(self) -> dict:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["lyssna"], "timezone": "browser", "editable": True, "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "30s",
            "time": {"from": self.time_from, "to": "now"}, "timepicker": {},
            "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}]},
            "links": [{"title": "Lyssna", "type": "dashboards", "tags": ["lyssna"], "asDropdown": False,
                       "includeVars": False, "keepTime": True, "targetBlank": False, "icon": "external link",
                       "tooltip": "", "url": ""}],
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def _default_options(kind: str) -> dict:
    if kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
                "textMode": "auto"}
    if kind == "bargauge":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "orientation": "horizontal", "displayMode": "basic", "showUnfilled": True}
    if kind == "piechart":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "pieType": "donut", "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                               "values": ["value", "percent"]},
                "tooltip": {"mode": "single", "sort": "none"}}
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    return {}


def _thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}}


def _sentiment_overrides() -> list[dict]:
    return [{"matcher": {"id": "byName", "options": name},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}
            for name, color in SENTIMENT_COLORS.items()]


# ------------------------------------------------------------------ pipeline health

def pipeline_health() -> Dashboard:
    d = Dashboard("lyssna-pipeline-health", "Lyssna / Pipeline health",
                  "Is every post getting from the sources to HR? Ingest, classification, alert delivery, lag "
                  "and dead letters. Rates are 5-minute averages from deploy/prometheus/rules.yml.")

    d.row("Overview")
    d.panel("stat", "Services up", "1 = Prometheus can scrape the service's /metrics.",
            [target(f"up{{{LYSSNA_JOBS}}}", "{{job}}")], w=8, h=4,
            defaults={"mappings": [], **_thresholds((None, "red"), (1, "green"))})
    d.panel("stat", "Posts accepted / s", "Posts written to Kafka by ingest, all sources.",
            [target('sum(source_outcome:lyssna_ingest_posts:rate5m{outcome="accepted"})', "accepted")],
            w=4, h=4, unit="ops")
    d.panel("stat", "Posts classified / s", "Posts the classifier finished, all partitions.",
            [target('sum(outcome:lyssna_classify_posts:rate5m{outcome="classified"})', "classified")],
            w=4, h=4, unit="ops")
    d.panel("stat", "Consumer lag", "Messages waiting in Kafka, summed over the consuming services.",
            [target("sum(lyssna_consumer_lag_messages)", "lag")], w=4, h=4,
            defaults=_thresholds((None, "green"), (1000, "orange"), (10000, "red")))
    d.panel("stat", "Dead letters (1h)", "Records that could not be processed in the last hour. "
            "Look at the lyssna.deadletter topic for the reasons.",
            [target("sum(service:lyssna_deadletter_records:increase1h) or vector(0)", "dead letters")],
            w=4, h=4, decimals=0, defaults=_thresholds((None, "green"), (1, "red")))

    d.row("Ingest")
    d.panel("timeseries", "Ingest rate by source and outcome",
            "Posts per second answered by ingest: accepted (sent to Kafka), duplicate (seen before), "
            "rejected (invalid, with a per-item reason).",
            [target("sum by (source, outcome) (source_outcome:lyssna_ingest_posts:rate5m)", "{{source}} {{outcome}}")],
            unit="ops")
    d.panel("timeseries", "Posts received by source", "Everything that arrived, before dedup and validation.",
            [target("sum by (source) (source:lyssna_ingest_posts_received:rate5m)", "{{source}}")], unit="ops")
    d.panel("timeseries", "Kafka produce latency", "One produce of a batch until Kafka acknowledged it (acks=all).",
            quantile_targets("le:lyssna_ingest_produce_latency_seconds_bucket:rate5m"), w=8, unit="s")
    d.panel("timeseries", "Connector errors (1h)", "Failed fetches per pull connector in the last hour.",
            [target("sum by (connector) (connector:lyssna_ingest_connector_errors:increase1h) or on() vector(0)",
                    "{{connector}}")], w=8, decimals=0)
    d.panel("table", "Time since connector's last success",
            "How long ago each pull connector last fetched successfully. Compare with its interval.",
            [target("time() - max by (connector) (lyssna_ingest_connector_last_success_timestamp_seconds)",
                    "{{connector}}", instant=True, fmt="table")],
            w=8, unit="s", overrides=[{"matcher": {"id": "byName", "options": "Time"},
                                       "properties": [{"id": "custom.hidden", "value": True}]}])

    d.row("Classify")
    d.panel("timeseries", "Classify throughput", "Posts per second: classified, or sent to the dead letter.",
            [target("sum by (outcome) (outcome:lyssna_classify_posts:rate5m)", "{{outcome}}")], w=8, unit="ops")
    d.panel("timeseries", "Inference latency per batch", "One model call over a micro-batch.",
            quantile_targets("le:lyssna_classify_inference_latency_seconds_bucket:rate5m"), w=8, unit="s")
    d.panel("timeseries", "Batch size", "Posts per model call: quantiles and mean.",
            [*quantile_targets("le:lyssna_classify_batch_posts_bucket:rate5m")[:2],
             target("sum(job:lyssna_classify_batch_posts:mean5m)", "mean")], w=8)
    d.panel("timeseries", "Consumer lag by service and topic",
            "Messages behind the end of each topic, per consuming service.",
            [target("max by (service, topic) (lyssna_consumer_lag_messages)", "{{service}} {{topic}}")])
    d.panel("timeseries", "Dead-letter rate", "Records per second sent to the dead-letter topic, by service.",
            [target("sum by (service) (service:lyssna_deadletter_records:rate5m) or on() vector(0)", "{{service}}")],
            unit="ops")

    d.row("Alerts and webhook delivery")
    d.panel("timeseries", "Webhook deliveries by outcome",
            "Delivery attempts per second: delivered, retry (will try again), failed (gave up), "
            "disabled (endpoint answered 410), silenced.",
            [target("sum by (webhook, outcome) (webhook_outcome:lyssna_alerts_deliveries:rate5m) or on() vector(0)",
                    "{{webhook}} {{outcome}}")], unit="ops")
    d.panel("timeseries", "Delivery latency", "From the alert event to the receiver's 2xx, all webhooks.",
            quantile_targets("webhook_le:lyssna_alerts_delivery_latency_seconds_bucket:rate5m"), unit="s")
    d.panel("timeseries", "Retry queue depth", "Deliveries waiting for their next attempt.",
            [target("max(lyssna_alerts_retry_queue_depth)", "waiting")], decimals=0)
    d.panel("timeseries", "Alert state changes (1h)", "Alerts that fired or resolved in the last hour, by rule.",
            [target("sum by (rule, state) (rule_state:lyssna_alerts_events:increase1h) or on() vector(0)",
                    "{{rule}} {{state}}")], decimals=0)
    return d


# ------------------------------------------------------------------ HR insights

MENTIONS = 'lyssna_classify_mentions_total{org=~"$org"}'
MENTIONS_NEG = 'lyssna_classify_mentions_total{org=~"$org", sentiment="negative"}'
RATE = 'org_topic_sentiment_lang:lyssna_classify_mentions:rate5m{org=~"$org"}'
HOUR = 'org_topic_sentiment_lang:lyssna_classify_mentions:increase1h{org=~"$org"}'
HOUR_NEG = 'org_topic_sentiment_lang:lyssna_classify_mentions:increase1h{org=~"$org", sentiment="negative"}'


def _negative_share(by: str, negative: str, total: str) -> str:
    # A topic without negative mentions shows 0 instead of disappearing.
    return f"(sum by ({by}) ({negative}) or sum by ({by}) ({total}) * 0) / sum by ({by}) ({total})"


def hr_insights() -> Dashboard:
    d = Dashboard("lyssna-hr-insights", "Lyssna / HR insights",
                  "What is said about the watched organizations: volume, HR topics, sentiment, languages, "
                  "and the alerts sent. Choose organizations at the top.", time_from="now-7d")
    d.variable("org", "Organization", "label_values(lyssna_classify_mentions_total, org)")

    d.row("Summary for the selected time range")
    d.panel("stat", "Mentions", "Posts that mention the selected organizations.",
            [target(f"sum(increase({MENTIONS}[$__range]))", "mentions", instant=True)], w=6, h=4, decimals=0)
    d.panel("stat", "Negative share", "Share of those mentions with negative sentiment.",
            [target(f"(sum(increase({MENTIONS_NEG}[$__range])) or vector(0)) / sum(increase({MENTIONS}[$__range]))",
                    "negative", instant=True)], w=6, h=4, unit="percentunit", decimals=1,
            defaults=_thresholds((None, "green"), (0.3, "orange"), (0.5, "red")))
    d.panel("stat", "Alerts fired", "Alerts sent to HR (all organizations; rules may cover several).",
            [target('sum(increase(lyssna_alerts_events_total{state="firing"}[$__range])) or vector(0)',
                    "alerts", instant=True)], w=6, h=4, decimals=0)
    d.panel("stat", "Languages", "Distinct languages among the mentions.",
            [target(f"count(sum by (lang) (increase({MENTIONS}[$__range])) > 0) or vector(0)",
                    "languages", instant=True)], w=6, h=4, decimals=0)

    d.row("Mentions over time")
    d.panel("timeseries", "Mentions per hour by organization", "5-minute average, scaled to an hour.",
            [target(f"sum by (org) ({RATE}) * 3600", "{{org}}")], w=24)
    d.panel("timeseries", "Mentions per hour by topic",
            "A post can touch several HR topics; \"none\" = no HR topic above its threshold.",
            [target(f"sum by (topic) ({RATE}) * 3600", "{{topic}}")])
    d.panel("timeseries", "Mentions per hour by sentiment", "Sentiment toward the mentioned organization.",
            [target(f"sum by (sentiment) ({RATE}) * 3600", "{{sentiment}}")], overrides=_sentiment_overrides())

    d.row("Topics and sentiment")
    d.panel("bargauge", "Share of negative mentions per topic",
            "For the selected time range: negative mentions / all mentions of the topic.",
            [target(_negative_share("topic", f"increase({MENTIONS_NEG}[$__range])",
                                    f"increase({MENTIONS}[$__range])"), "{{topic}}", instant=True)],
            unit="percentunit", decimals=0, defaults={"min": 0, "max": 1, **_thresholds(
                (None, "green"), (0.3, "orange"), (0.5, "red"))})
    d.panel("timeseries", "Negative share per topic, trailing hour",
            "At each point: the share of negative mentions over the hour before it.",
            [target(_negative_share("topic", HOUR_NEG, HOUR), "{{topic}}")], unit="percentunit",
            defaults={"min": 0, "max": 1})
    d.panel("piechart", "Language mix", "Languages of the mentions in the selected time range.",
            [target(f"sum by (lang) (increase({MENTIONS}[$__range]))", "{{lang}}", instant=True)], w=8, decimals=0)
    d.panel("table", "Mentions by organization, topic and sentiment", "Counts for the selected time range.",
            [target(f"sum by (org, topic, sentiment) (increase({MENTIONS}[$__range]))", instant=True, fmt="table")],
            w=16, decimals=0, overrides=[{"matcher": {"id": "byName", "options": "Time"},
                                          "properties": [{"id": "custom.hidden", "value": True}]}])

    d.row("Alerts")
    d.panel("timeseries", "Alerts fired per rule (trailing hour)",
            "Firing alerts per rule over the hour before each point. Alerts are per rule, so the organization "
            "filter does not apply here.",
            [target('sum by (rule) (rule_state:lyssna_alerts_events:increase1h{state="firing"}) or on() vector(0)',
                    "{{rule}}")], w=24, decimals=0)
    return d


DASHBOARDS = {"pipeline-health.json": pipeline_health, "hr-insights.json": hr_insights}


def render() -> dict[str, str]:
    return {name: json.dumps(build().to_json(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale dashboards (run python3 deploy/grafana/generate_dashboards.py): "
              + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
