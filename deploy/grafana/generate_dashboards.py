#!/usr/bin/env python3
"""Write the two provisioned Grafana dashboards as JSON, with Grafana's own SDK.

    .venv/bin/python deploy/grafana/generate_dashboards.py          # rewrite dashboards/*.json
    .venv/bin/python deploy/grafana/generate_dashboards.py --check  # exit 1 if they are stale

The JSON files are committed (Grafana reads them from disk); this script is
their source so that layout, datasource and conventions stay uniform. Edit the
panels here, rerun, commit both. tests/unit/test_deploy_config.py fails when the
committed files differ from what this script writes.

The dashboards are built with Grafana's grafana-foundation-sdk (a dev
dependency, pinned in pyproject.toml and requirements.lock, generated for
Grafana 11.6; compose runs 12.x, which reads that schema): its typed builders
know the dashboard schema, so a misspelt option is an AttributeError here, not a
key Grafana silently ignores. The SDK lays panels out on the 24-column grid
left to right (``with_row`` / ``with_panel``) and wraps only after a line is
full, so each line of panels here adds up to exactly 24 columns
(test_deploy_config checks that no panel sticks out or overlaps another).
What the SDK cannot say: a query variable's ``definition`` (only the text
Grafana's variable list shows; the query itself is ``query.query``), and panel
ids, which it leaves unset and ``numbered`` assigns.

Every query uses only metrics the services export or the recording rules in
deploy/prometheus/rules.yml. ``or on() vector(0)`` appears only where a series
legitimately does not exist until something happens (a dead letter, a failed
delivery, an alert): there the panel should say 0, not "No data".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

try:
    from grafana_foundation_sdk.builders import (bargauge, common, dashboard, piechart, prometheus, stat, table,
                                                 timeseries)
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as cm
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models import piechart as pm
    from grafana_foundation_sdk.models import prometheus as prom
except ModuleNotFoundError as e:  # a plain python3 without the project's dev dependencies
    sys.exit(f"{e}: install the dev dependencies: python -m pip install -c requirements.lock -e '.[dev]'")

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="lyssna-prometheus")  # provisioning/datasources/prometheus.yml
QUANTILES = (0.5, 0.95, 0.99)
LYSSNA_JOBS = 'job=~"lyssna-(ingest|classify|alerts)"'
SENTIMENT_COLORS = {"negative": "red", "neutral": "text", "positive": "green"}

Panel = timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel | piechart.Panel


# ------------------------------------------------------------------ queries

def query(expr: str, legend: str = "__auto", *, instant: bool = False, fmt: prom.PromQueryFormat | None = None
          ) -> prometheus.Dataquery:
    q = (prometheus.Dataquery().datasource(DATASOURCE).editor_mode(prom.QueryEditorMode.CODE)
         .expr(expr).legend_format(legend))
    q = q.instant() if instant else q.range()
    return q.format(fmt) if fmt else q


def quantile_queries(bucket_rule: str, by: str = "le") -> list[prometheus.Dataquery]:
    return [query(f"histogram_quantile({q}, sum by ({by}) ({bucket_rule}))", f"p{round(q * 100)}")
            for q in QUANTILES]


# ------------------------------------------------------------------ panels

def _base(panel: Panel, title: str, description: str, queries: Iterable[prometheus.Dataquery], *,
          w: int, h: int, unit: str) -> Panel:
    """What every panel shares: the Prometheus datasource, a size, a unit, queries named A, B, ..."""
    return (panel.title(title).description(description).datasource(DATASOURCE).span(w).height(h).unit(unit)
            .targets([q.ref_id(chr(ord("A") + i)) for i, q in enumerate(queries)]))


def last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def graph(title: str, description: str, queries: Iterable[prometheus.Dataquery], *, w: int = 12, h: int = 8,
          unit: str = "short") -> timeseries.Panel:
    return (_base(timeseries.Panel(), title, description, queries, w=w, h=h, unit=unit)
            .draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
            .show_points(cm.VisibilityMode.NEVER).span_nulls(False)
            .legend(common.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                    .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
            .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))


def single(title: str, description: str, queries: Iterable[prometheus.Dataquery], *, w: int, h: int = 4,
           unit: str = "short") -> stat.Panel:
    return (_base(stat.Panel(), title, description, queries, w=w, h=h, unit=unit)
            .reduce_options(last_value()).color_mode(cm.BigValueColorMode.VALUE)
            .graph_mode(cm.BigValueGraphMode.AREA).justify_mode(cm.BigValueJustifyMode.AUTO)
            .orientation(cm.VizOrientation.AUTO).text_mode(cm.BigValueTextMode.AUTO))


def grid(title: str, description: str, queries: Iterable[prometheus.Dataquery], *, w: int, h: int = 8,
         unit: str = "short") -> table.Panel:
    """A table of instant values; Prometheus' Time column says nothing there, so it is hidden."""
    return (_base(table.Panel(), title, description, queries, w=w, h=h, unit=unit)
            .show_header(True).cell_height(cm.TableCellHeight.SM)
            .footer(common.TableFooterOptions().show(False).reducer(["sum"]))
            .override_by_name("Time", [dm.DynamicConfigValue(id_val="custom.hidden", value=True)]))


def bars(title: str, description: str, queries: Iterable[prometheus.Dataquery], *, w: int = 12, h: int = 8,
         unit: str = "short") -> bargauge.Panel:
    return (_base(bargauge.Panel(), title, description, queries, w=w, h=h, unit=unit)
            .reduce_options(last_value()).orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.BASIC).show_unfilled(True))


def pie(title: str, description: str, queries: Iterable[prometheus.Dataquery], *, w: int, h: int = 8,
        unit: str = "short") -> piechart.Panel:
    return (_base(piechart.Panel(), title, description, queries, w=w, h=h, unit=unit)
            .reduce_options(last_value()).pie_type(pm.PieChartType.DONUT)
            .legend(piechart.PieChartLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.RIGHT).show_legend(True)
                    .values([pm.PieChartLegendValues.VALUE, pm.PieChartLegendValues.PERCENT]))
            .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE).sort(cm.SortOrder.NONE)))


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


def color_by_sentiment(panel: timeseries.Panel) -> timeseries.Panel:
    for name, color in SENTIMENT_COLORS.items():
        panel.override_by_name(name, [dm.DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": color})])
    return panel


def lyssna_dashboard(uid: str, title: str, description: str, *, time_from: str = "now-6h") -> dashboard.Dashboard:
    """The frame both dashboards share: tag, refresh, shared crosshair, a link to the other Lyssna dashboards."""
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(["lyssna"]).timezone("browser")
            .editable().tooltip(dm.DashboardCursorSync.CROSSHAIR).version(1).refresh("30s")
            .time(time_from, "now").timepicker(dashboard.TimePicker()).fiscal_year_start_month(0)
            .live_now(False).week_start("").variables([])
            .annotation(dashboard.AnnotationQuery().built_in(1).name("Annotations & Alerts").type("dashboard")
                        .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                        .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)"))
            .link(dashboard.DashboardLink("Lyssna").type(dm.DashboardLinkType.DASHBOARDS).tags(["lyssna"])
                  .as_dropdown(False).include_vars(False).keep_time(True).target_blank(False)
                  .icon("external link").tooltip("").url("")))


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title).collapsed(False)


# ------------------------------------------------------------------ pipeline health

def pipeline_health() -> dashboard.Dashboard:
    return (lyssna_dashboard(
        "lyssna-pipeline-health", "Lyssna / Pipeline health",
        "Is every post getting from the sources to HR? Ingest, classification, alert delivery, lag "
        "and dead letters. Rates are 5-minute averages from deploy/prometheus/rules.yml.")

        .with_row(row("Overview"))
        .with_panel(single("Services up", "1 = Prometheus can scrape the service's /metrics.",
                           [query(f"up{{{LYSSNA_JOBS}}}", "{{job}}")], w=8)
                    .mappings([]).thresholds(thresholds((None, "red"), (1, "green"))))
        .with_panel(single("Posts accepted / s", "Posts written to Kafka by ingest, all sources.",
                           [query('sum(source_outcome:lyssna_ingest_posts:rate5m{outcome="accepted"})', "accepted")],
                           w=4, unit="ops"))
        .with_panel(single("Posts classified / s", "Posts the classifier finished, all partitions.",
                           [query('sum(outcome:lyssna_classify_posts:rate5m{outcome="classified"})', "classified")],
                           w=4, unit="ops"))
        # Every replica reports its whole group's lag: the largest report of each counts once.
        .with_panel(single("Consumer lag", "Messages waiting in Kafka, summed over the consuming services.",
                           [query("sum(max by (service, topic) (lyssna_consumer_lag_messages))", "lag")], w=4)
                    .thresholds(thresholds((None, "green"), (1000, "orange"), (10000, "red"))))
        .with_panel(single("Dead letters (1h)", "Records that could not be processed in the last hour. "
                           "Look at the lyssna.deadletter topic for the reasons.",
                           [query("sum(service:lyssna_deadletter_records:increase1h) or vector(0)", "dead letters")],
                           w=4)
                    .decimals(0).thresholds(thresholds((None, "green"), (1, "red"))))

        .with_row(row("Ingest"))
        .with_panel(graph("Ingest rate by source and outcome",
                          "Posts per second answered by ingest: accepted (sent to Kafka), duplicate (seen before), "
                          "rejected (invalid, with a per-item reason).",
                          [query("sum by (source, outcome) (source_outcome:lyssna_ingest_posts:rate5m)",
                                 "{{source}} {{outcome}}")], unit="ops"))
        .with_panel(graph("Posts received by source", "Everything that arrived, before dedup and validation.",
                          [query("sum by (source) (source:lyssna_ingest_posts_received:rate5m)", "{{source}}")],
                          unit="ops"))
        .with_panel(graph("Kafka produce latency",
                          "One produce of a batch until Kafka acknowledged it (acks=all).",
                          quantile_queries("le:lyssna_ingest_produce_latency_seconds_bucket:rate5m"), w=8, unit="s"))
        .with_panel(graph("Connector errors (1h)", "Failed fetches per pull connector in the last hour.",
                          [query("sum by (connector) (connector:lyssna_ingest_connector_errors:increase1h) "
                                 "or on() vector(0)", "{{connector}}")], w=8)
                    .decimals(0))
        .with_panel(grid("Time since connector's last success",
                         "How long ago each pull connector last fetched successfully. Compare with its interval.",
                         [query("time() - max by (connector) (lyssna_ingest_connector_last_success_timestamp_seconds)",
                                "{{connector}}", instant=True, fmt=prom.PromQueryFormat.TABLE)], w=8, unit="s"))

        .with_row(row("Classify"))
        .with_panel(graph("Classify throughput", "Posts per second: classified, skipped (no watched organization, classify.scope: mentions), or sent to the dead letter.",
                          [query("sum by (outcome) (outcome:lyssna_classify_posts:rate5m)", "{{outcome}}")],
                          w=8, unit="ops"))
        .with_panel(graph("Inference latency per batch", "One model call over a micro-batch.",
                          quantile_queries("le:lyssna_classify_inference_latency_seconds_bucket:rate5m"),
                          w=8, unit="s"))
        .with_panel(graph("Batch size", "Posts per model call: quantiles and mean.",
                          [*quantile_queries("le:lyssna_classify_batch_posts_bucket:rate5m")[:2],
                           query("sum(job:lyssna_classify_batch_posts:mean5m)", "mean")], w=8))
        .with_panel(graph("Consumer lag by service and topic",
                          "Messages behind the end of each topic, per consuming service.",
                          [query("max by (service, topic) (lyssna_consumer_lag_messages)", "{{service}} {{topic}}")]))
        .with_panel(graph("Dead-letter rate", "Records per second sent to the dead-letter topic, by service.",
                          [query("sum by (service) (service:lyssna_deadletter_records:rate5m) or on() vector(0)",
                                 "{{service}}")], unit="ops"))

        .with_row(row("Alerts and webhook delivery"))
        .with_panel(graph("Webhook deliveries by outcome",
                          "Delivery attempts per second: delivered, retry (will try again), failed (gave up), "
                          "disabled (endpoint answered 410), silenced.",
                          [query("sum by (webhook, outcome) (webhook_outcome:lyssna_alerts_deliveries:rate5m) "
                                 "or on() vector(0)", "{{webhook}} {{outcome}}")], unit="ops"))
        .with_panel(graph("Delivery latency", "From the alert event to the receiver's 2xx, all webhooks.",
                          quantile_queries("webhook_le:lyssna_alerts_delivery_latency_seconds_bucket:rate5m"),
                          unit="s"))
        .with_panel(graph("Retry queue depth", "Deliveries waiting for their next attempt.",
                          [query("max(lyssna_alerts_retry_queue_depth)", "waiting")])
                    .decimals(0))
        .with_panel(graph("Alert state changes (1h)", "Alerts that fired or resolved in the last hour, by rule.",
                          [query("sum by (rule, state) (rule_state:lyssna_alerts_events:increase1h) "
                                 "or on() vector(0)", "{{rule}} {{state}}")])
                    .decimals(0)))


# ------------------------------------------------------------------ HR insights

MENTIONS = 'lyssna_classify_mentions_total{org=~"$org"}'
MENTIONS_NEG = 'lyssna_classify_mentions_total{org=~"$org", sentiment="negative"}'
RATE = 'org_topic_sentiment_lang:lyssna_classify_mentions:rate5m{org=~"$org"}'
HOUR = 'org_topic_sentiment_lang:lyssna_classify_mentions:increase1h{org=~"$org"}'
AUTHORS = "lyssna_alerts_distinct_authors"
HOUR_NEG = 'org_topic_sentiment_lang:lyssna_classify_mentions:increase1h{org=~"$org", sentiment="negative"}'


def _negative_share(by: str, negative: str, total: str) -> str:
    # A topic without negative mentions shows 0 instead of disappearing.
    return f"(sum by ({by}) ({negative}) or sum by ({by}) ({total}) * 0) / sum by ({by}) ({total})"


def org_variable() -> dashboard.QueryVariable:
    """Organizations to show, all by default; the queries match them with org=~"$org"."""
    expr = "label_values(lyssna_classify_mentions_total, org)"
    return (dashboard.QueryVariable("org").label("Organization").datasource(DATASOURCE)
            .query({"qryType": 1, "query": expr, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*").options([]).hide(dm.VariableHide.DONT_HIDE)
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))


def hr_insights() -> dashboard.Dashboard:
    return (lyssna_dashboard(
        "lyssna-hr-insights", "Lyssna / HR insights",
        "What is said about the watched organizations: volume, HR topics, sentiment, languages, "
        "and the alerts sent. Choose organizations at the top.", time_from="now-7d")
        .with_variable(org_variable())

        .with_row(row("Summary for the selected time range"))
        .with_panel(single("Mentions", "Posts that mention the selected organizations.",
                           [query(f"sum(increase({MENTIONS}[$__range]))", "mentions", instant=True)], w=6)
                    .decimals(0))
        .with_panel(single("Negative share", "Share of those mentions with negative sentiment.",
                           [query(f"(sum(increase({MENTIONS_NEG}[$__range])) or vector(0)) "
                                  f"/ sum(increase({MENTIONS}[$__range]))", "negative", instant=True)],
                           w=6, unit="percentunit")
                    .decimals(1).thresholds(thresholds((None, "green"), (0.3, "orange"), (0.5, "red"))))
        .with_panel(single("Alerts fired", "Alerts sent to HR (all organizations; rules may cover several).",
                           [query('sum(increase(lyssna_alerts_events_total{state="firing"}[$__range])) or vector(0)',
                                  "alerts", instant=True)], w=6)
                    .decimals(0))
        .with_panel(single("Languages", "Distinct languages among the mentions.",
                           [query(f"count(sum by (lang) (increase({MENTIONS}[$__range])) > 0) or vector(0)",
                                  "languages", instant=True)], w=6)
                    .decimals(0))

        .with_row(row("Mentions over time"))
        .with_panel(graph("Mentions per hour by organization", "5-minute average, scaled to an hour.",
                          [query(f"sum by (org) ({RATE}) * 3600", "{{org}}")], w=24))
        .with_panel(graph("Mentions per hour by topic",
                          "A post can touch several HR topics; \"none\" = no HR topic above its threshold.",
                          [query(f"sum by (topic) ({RATE}) * 3600", "{{topic}}")]))
        .with_panel(color_by_sentiment(graph(
            "Mentions per hour by sentiment", "Sentiment toward the mentioned organization.",
            [query(f"sum by (sentiment) ({RATE}) * 3600", "{{sentiment}}")])))
        .with_panel(graph("Distinct authors per organization, trailing hour",
                          "How many different people (pseudonyms) wrote the mentions of the hour before "
                          "each point, in all and with negative sentiment: 20 mentions by 2 authors are "
                          "not 20 voices. Posts without an author count for no one.",
                          [query(f'sum by (org) ({AUTHORS}{{org=~"$org", sentiment="all"}})', "{{org}}"),
                           query(f'sum by (org) ({AUTHORS}{{org=~"$org", sentiment="negative"}})',
                                 "{{org}} negative")], w=24)
                    .decimals(0))

        .with_row(row("Topics and sentiment"))
        .with_panel(bars("Share of negative mentions per topic",
                         "For the selected time range: negative mentions / all mentions of the topic.",
                         [query(_negative_share("topic", f"increase({MENTIONS_NEG}[$__range])",
                                                f"increase({MENTIONS}[$__range])"), "{{topic}}", instant=True)],
                         unit="percentunit")
                    .decimals(0).min(0).max(1).thresholds(thresholds((None, "green"), (0.3, "orange"), (0.5, "red"))))
        .with_panel(graph("Negative share per topic, trailing hour",
                          "At each point: the share of negative mentions over the hour before it.",
                          [query(_negative_share("topic", HOUR_NEG, HOUR), "{{topic}}")], unit="percentunit")
                    .min(0).max(1))
        .with_panel(pie("Language mix", "Languages of the mentions in the selected time range.",
                        [query(f"sum by (lang) (increase({MENTIONS}[$__range]))", "{{lang}}", instant=True)], w=8)
                    .decimals(0))
        .with_panel(grid("Mentions by organization, topic and sentiment", "Counts for the selected time range.",
                         [query(f"sum by (org, topic, sentiment) (increase({MENTIONS}[$__range]))", instant=True,
                                fmt=prom.PromQueryFormat.TABLE)], w=16)
                    .decimals(0))

        .with_row(row("Alerts"))
        .with_panel(graph("Alerts fired per rule (trailing hour)",
                          "Firing alerts per rule over the hour before each point. Alerts are per rule, so the "
                          "organization filter does not apply here.",
                          [query('sum by (rule) (rule_state:lyssna_alerts_events:increase1h{state="firing"}) '
                                 'or on() vector(0)', "{{rule}}")], w=24)
                    .decimals(0)))


DASHBOARDS = {"pipeline-health.json": pipeline_health, "hr-insights.json": hr_insights}


def numbered(built: dm.Dashboard) -> dm.Dashboard:
    """Panel ids 1, 2, ... in layout order: Grafana needs them unique, and the SDK leaves them unset."""
    for i, panel in enumerate(built.panels or [], start=1):
        panel.id_val = i
    return built


def render() -> dict[str, str]:
    return {name: json.dumps(numbered(build().build()), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
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
        print("stale dashboards (run .venv/bin/python deploy/grafana/generate_dashboards.py): "
              + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
