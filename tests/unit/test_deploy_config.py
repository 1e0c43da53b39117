"""The docker-compose route, checked without a Docker engine.

Runs the real tools where they exist offline: `docker-compose config` (Debian's
v1, or v2), `promtool check config|rules` and `promtool test rules`; parses
every dashboard query with a PromQL parser; and checks that the pieces agree
with each other (compose service names and ports, Prometheus targets, the
services' default ports, the Grafana datasource uid, the start commands).
Whether the metric names exist is checked against a real scrape in tests/e2e.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import promql_parser
import pytest
import yaml

from tests.helpers.metric_names import (
    PROMETHEUS_SYNTHETIC, dashboard_queries, exposition_sample_names, load_dashboards,
    metric_names_used, recording_rules, render_expr, resolve, selector_names,
)
from lyssna.cli import SERVICES
from lyssna.common.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
OVERRIDE_EXAMPLE = ROOT / "deploy" / "docker" / "docker-compose.override.example.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
REQUIRED_SECRETS = ("LYSSNA_API_KEY", "LYSSNA_AUTHOR_KEY", "GRAFANA_ADMIN_PASSWORD")
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
BOOTSTRAP = ",".join(f"{node}:9092" for node in KAFKA_NODES)
PUBLISHED = {"ingest", "alerts", "grafana", "prometheus"}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def require_promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: run scripts/system-deps.sh (Debian package 'prometheus'); "
                    "`make test` does this for you")
    return path


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("no docker-compose binary (scripts/system-deps.sh installs Debian's docker-compose); "
                "the compose file could not be validated by the tool")


def compose_yaml() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # SafeLoader resolves the <<: merges


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """.env.example with the required secrets filled, and a process env without ambient LYSSNA_* values."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in REQUIRED_SECRETS:
        text = re.sub(rf"(?m)^{name}=$", f"{name}=test-{name.lower()}", text)
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LYSSNA_", "GRAFANA_", "KAFKA_", "PROMETHEUS_"))}
    return env_file, env


# ------------------------------------------------------------------ compose, by the tool

def test_compose_file_is_valid_for_docker_compose(compose_env):
    env_file, env = compose_env
    res = run([*compose_command(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"], env=env)
    assert res.returncode == 0, res.stderr


def test_override_example_merges_into_the_stack(compose_env):
    env_file, env = compose_env
    env = {**env, "HR_SLACK_SECRET": "whsec_a", "HR_TEAMS_SECRET": "whsec_b"}
    res = run([*compose_command(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE),
               "-f", str(OVERRIDE_EXAMPLE), "config"], env=env)
    assert res.returncode == 0, res.stderr
    alerts = yaml.safe_load(res.stdout)["services"]["alerts"]
    assert alerts["environment"]["HR_SLACK_SECRET"] == "whsec_a"
    assert alerts["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP  # merged, not replaced


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_a_secret(compose_env, secret, tmp_path):
    env_file, env = compose_env
    blanked = tmp_path / "blank.env"
    blanked.write_text(re.sub(rf"(?m)^{secret}=.*$", f"{secret}=", env_file.read_text()), encoding="utf-8")
    res = run([*compose_command(), "--env-file", str(blanked), "-f", str(COMPOSE_FILE), "config", "-q"], env=env)
    assert res.returncode != 0
    assert f"set {secret} in .env" in res.stderr


# ------------------------------------------------------------------ compose, by structure

def test_lyssna_services_run_the_same_command_as_the_local_run():
    services = compose_yaml()["services"]
    for svc in SERVICES:
        assert services[svc]["command"] == ["lyssna", "serve", svc]
        assert "entrypoint" not in services[svc]


def test_the_image_is_built_once_for_the_three_services():
    services = compose_yaml()["services"]
    builders = [name for name, s in services.items() if "build" in s]
    assert builders == ["ingest"]
    build = services["ingest"]["build"]
    assert build["dockerfile"] == "deploy/docker/Dockerfile" and (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert {services[svc]["image"] for svc in SERVICES} == {"lyssna:${LYSSNA_IMAGE_TAG:-local}"}
    for svc in SERVICES:  # never pulled from a registry under that local tag
        assert services[svc]["pull_policy"] == "never"


def test_several_replicas_of_each_service_with_memory_limits_on_three_brokers():
    services = compose_yaml()["services"]
    for svc in SERVICES:
        deploy = services[svc]["deploy"]
        assert deploy["replicas"] == f"${{LYSSNA_{svc.upper()}_REPLICAS:-2}}"
        assert deploy["resources"]["limits"]["memory"].startswith(f"${{LYSSNA_{svc.upper()}_MEMORY_LIMIT:-")
    assert services["classify"]["deploy"]["resources"]["limits"]["memory"].endswith(":-2G}")  # encoder ~1.5 GB
    voters = {services[n]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for n in KAFKA_NODES}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for i, node in enumerate(KAFKA_NODES, 1):
        env = services[node]["environment"]
        assert env["KAFKA_NODE_ID"] == i and env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{node}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert services[node]["deploy"]["resources"]["limits"]["memory"]


def test_compose_mounts_the_production_template_by_default():
    services = compose_yaml()["services"]
    for svc in SERVICES:
        assert "${LYSSNA_CONFIG_FILE:-./config/lyssna.production.yaml}:/etc/lyssna/lyssna.yaml:ro" in services[svc]["volumes"]
    assert re.search(r"(?m)^LYSSNA_CONFIG_FILE=./config/lyssna.production.yaml$", ENV_EXAMPLE.read_text(encoding="utf-8"))
    production = load_settings(str(ROOT / "config" / "lyssna.production.yaml"), env={})
    assert production.organizations == [] and production.sources == []
    assert production.rules == [] and production.webhooks == []
    assert (production.kafka.replication_factor, production.kafka.min_insync_replicas) == (3, 2)


def test_lyssna_services_are_wired_to_kafka_redis_and_the_mounted_config():
    services = compose_yaml()["services"]
    defaults = Settings()
    for svc in SERVICES:
        s, env = services[svc], services[svc]["environment"]
        port = getattr(defaults, svc).port
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env[f"LYSSNA_{svc.upper()}_HOST"] == "0.0.0.0"
        assert int(env[f"LYSSNA_{svc.upper()}_PORT"]) == port
        assert env["LYSSNA_CONFIG"] == "/etc/lyssna/lyssna.yaml"
        assert any(v.endswith(":/etc/lyssna/lyssna.yaml:ro") for v in s["volumes"]), s["volumes"]
        assert s["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/readyz"
        for dep in (*KAFKA_NODES, "redis"):
            assert s["depends_on"][dep] == {"condition": "service_healthy"}


def test_every_service_has_a_healthcheck_restart_policy_and_waits_for_healthy_dependencies():
    services = compose_yaml()["services"]
    for name, s in services.items():
        assert s.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert s.get("restart") == "unless-stopped", name
        for dep, cond in (s.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
            assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"


def test_only_the_user_facing_ports_are_published():
    services = compose_yaml()["services"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == PUBLISHED
    for name in PUBLISHED:
        for mapping in services[name]["ports"]:
            # The host address is explicit and loopback unless .env says otherwise,
            # never Docker's all-interfaces default.
            host, _, _ = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", mapping).split(":")
            assert host == "127.0.0.1", (name, mapping)
    assert all(p.startswith("127.0.0.1:") for p in services["prometheus"]["ports"])


def test_secrets_come_from_the_environment_and_anonymous_grafana_is_off_by_default():
    services = compose_yaml()["services"]
    for svc in ("ingest", "alerts"):
        assert services[svc]["environment"]["LYSSNA_API_KEY"].startswith("${LYSSNA_API_KEY:?")
    assert "LYSSNA_API_KEY" not in services["classify"]["environment"]  # it serves no authenticated API
    gf = services["grafana"]["environment"]
    assert gf["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert gf["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS_ENABLED:-false}"
    assert gf["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_state_lives_in_named_volumes_and_redis_persists_appends():
    doc = compose_yaml()
    services = doc["services"]
    mounts = {name: [v.split(":")[0] for v in s.get("volumes", [])] for name, s in services.items()}
    for name, volume in (*((n, f"{n}-data") for n in KAFKA_NODES), ("redis", "redis-data"),
                         ("prometheus", "prometheus-data"), ("grafana", "grafana-data")):
        assert volume in mounts[name] and volume in doc["volumes"]
    cmd = services["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    for node in KAFKA_NODES:
        assert services[node]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_images_are_pinned_and_kafka_matches_the_local_run():
    services = compose_yaml()["services"]
    for name, s in services.items():
        if name in SERVICES:  # built here
            continue
        image, _, tag = s["image"].rpartition(":")
        assert image and re.match(r"^v?\d+\.\d+\.\d+", tag), f"{name}: pin an exact version, not {s['image']!r}"
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    local_kafka = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    for node in KAFKA_NODES:
        assert services[node]["image"] == f"apache/kafka:{local_kafka}"
    assert services["redis"]["image"].startswith("redis:7.")


def test_every_compose_variable_is_documented_in_env_example():
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = set(re.findall(r"(?m)^#?\s*(\w+)=", ENV_EXAMPLE.read_text(encoding="utf-8")))
    assert used - documented == set()
    for name in REQUIRED_SECRETS:  # shipped empty, so compose stops until someone sets them
        assert re.search(rf"(?m)^{name}=$", ENV_EXAMPLE.read_text(encoding="utf-8")), name


# ------------------------------------------------------------------ the image

def test_dockerfile_runs_as_non_root_with_the_model_built_in():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text)
    users = re.findall(r"(?m)^USER\s+(\S+)", text)
    assert users and users[-1] not in ("root", "0")
    assert "python -m lyssna.classify.training.model_prep --out \"$LYSSNA_MODEL\"" in text
    assert "-c requirements.lock" in text
    for src in re.findall(r"(?m)^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text):
        for part in src.split():
            assert (ROOT / part).exists(), f"Dockerfile copies {part}, which does not exist"
    # compose's healthchecks call the script the image installs
    assert "/usr/local/bin/lyssna-healthcheck" in text
    model_env = re.search(r"LYSSNA_MODEL=(\S+)", text).group(1)
    assert compose_yaml()["services"]["classify"]["environment"]["LYSSNA_MODEL"].endswith(f":-{model_env}}}")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/readyz" else 503
        body = b'{"kafka": "down"}' if code != 200 else b"{}"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_container_healthcheck_script_passes_on_2xx_and_fails_otherwise():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = str(ROOT / "deploy" / "docker" / "healthcheck.py")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert run([sys.executable, script, f"{base}/readyz"]).returncode == 0
        bad = run([sys.executable, script, f"{base}/notready"])
        assert bad.returncode == 1 and "kafka" in bad.stderr
    finally:
        server.shutdown()
    assert run([sys.executable, script, "http://127.0.0.1:1/readyz"]).returncode == 1


def test_image_healthcheck_asks_the_service_that_listens_in_the_container():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r'(?m)^HEALTHCHECK .*CMD \["lyssna-healthcheck"\]$', text)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = str(ROOT / "deploy" / "docker" / "healthcheck.py")
    closed = {f"LYSSNA_{s.upper()}_PORT": "1" for s in SERVICES}
    try:
        for svc in SERVICES:  # one service listens, the other two ports refuse
            env = {**os.environ, **closed, f"LYSSNA_{svc.upper()}_PORT": str(server.server_address[1])}
            assert run([sys.executable, script], env=env).returncode == 0, svc
    finally:
        server.shutdown()
    nothing = run([sys.executable, script], env={**os.environ, **closed})
    assert nothing.returncode == 1 and "nothing listens" in nothing.stderr


# ------------------------------------------------------------------ Prometheus

@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_accepts_the_prometheus_config_and_its_rules(config):
    res = run([require_promtool(), "check", "config", str(PROM_DIR / config)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rule files found" in res.stdout  # check config also parsed rules.yml


def test_promtool_accepts_the_recording_rules():
    res = run([require_promtool(), "check", "rules", str(PROM_DIR / "rules.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


def test_recording_rule_unit_tests_pass():
    res = run([require_promtool(), "test", "rules", str(PROM_DIR / "rules.test.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


def _targets(config: str) -> dict[str, list[str]]:
    doc = yaml.safe_load((PROM_DIR / config).read_text(encoding="utf-8"))
    # Static targets, or every replica behind a name (dns_sd: compose's service names).
    return {j["job_name"]: [t for sc in j.get("static_configs", []) for t in sc["targets"]]
            + [f"{name}:{sd['port']}" for sd in j.get("dns_sd_configs", []) for name in sd["names"]]
            for j in doc["scrape_configs"]}


def test_prometheus_scrapes_every_service_where_it_listens():
    defaults = Settings()
    compose, local = _targets("prometheus.yml"), _targets("prometheus.local.yml")
    services = compose_yaml()["services"]
    for svc in SERVICES:
        port = getattr(defaults, svc).port
        assert compose[f"lyssna-{svc}"] == [f"{svc}:{port}"]
        assert services[svc]["environment"][f"LYSSNA_{svc.upper()}_PORT"] == port
        assert local[f"lyssna-{svc}"] == [f"127.0.0.1:{port}"]
    local_doc = yaml.safe_load((PROM_DIR / "prometheus.local.yml").read_text())
    assert local_doc["global"]["scrape_interval"] == local_doc["global"]["evaluation_interval"] == "2s"


def test_compose_mounts_the_rules_next_to_the_config():
    vols = compose_yaml()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in vols
    assert "./deploy/prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in vols
    for config in ("prometheus.yml", "prometheus.local.yml"):
        assert yaml.safe_load((PROM_DIR / config).read_text())["rule_files"] == ["rules.yml"]


# ------------------------------------------------------------------ Grafana

def _provisioned_datasource() -> dict:
    doc = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = doc["datasources"]
    return ds


def test_grafana_provisioning_points_at_the_compose_services():
    ds = _provisioned_datasource()
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert ds["jsonData"]["timeInterval"] == yaml.safe_load(
        (PROM_DIR / "prometheus.yml").read_text())["global"]["scrape_interval"]
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "lyssna.yml").read_text())["providers"][0]
    vols = compose_yaml()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in vols
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in vols
    home = compose_yaml()["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()


def test_committed_dashboards_are_what_the_generator_writes():
    res = run([sys.executable, str(GRAFANA_DIR / "generate_dashboards.py"), "--check"])
    assert res.returncode == 0, res.stderr


def test_dashboard_check_fails_on_a_stale_file(tmp_path):
    generator = [sys.executable, str(GRAFANA_DIR / "generate_dashboards.py"), "--out", str(tmp_path)]
    assert run(generator).returncode == 0
    assert run([*generator, "--check"]).returncode == 0
    stale = tmp_path / "hr-insights.json"
    stale.write_text(stale.read_text(encoding="utf-8").replace("Lyssna / HR insights", "Old title"), encoding="utf-8")
    res = run([*generator, "--check"])
    assert res.returncode == 1 and str(stale) in res.stderr and "pipeline-health" not in res.stderr


def test_both_dashboards_exist_with_unique_uids():
    dashboards = load_dashboards()
    assert set(dashboards) == {"pipeline-health.json", "hr-insights.json"}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", ["pipeline-health.json", "hr-insights.json"])
def test_dashboard_panels_are_well_formed(name):
    dash = load_dashboards()[name]
    uid = _provisioned_datasource()["uid"]
    assert dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{panel['title']!r} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["expr"].strip(), panel["title"]
            assert t["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == uid


def test_every_dashboard_query_is_valid_promql():
    for q in dashboard_queries():
        try:
            promql_parser.parse(render_expr(q.expr))
        except ValueError as e:
            pytest.fail(f"{q.dashboard} / {q.panel} / {q.ref}: {e}\n{q.expr}")


def _unguarded_fallbacks(node, found: list) -> None:
    """`X or vector(0)` where X keeps labels adds a stray 0 series next to X's; `or on() vector(0)` does not."""
    def visit(n) -> bool:
        if (isinstance(n, promql_parser.BinaryExpr) and str(n.op) == "or"
                and isinstance(n.rhs, promql_parser.Call) and n.rhs.func.name == "vector"
                and n.modifier.matching is None):
            lhs = n.lhs.expr if isinstance(n.lhs, promql_parser.ParenExpr) else n.lhs
            if not (isinstance(lhs, (promql_parser.AggregateExpr,)) and lhs.modifier is None) and not (
                    isinstance(lhs, promql_parser.BinaryExpr) and str(lhs.op) in (">", "<", ">=", "<=", "==", "!=")
                    and isinstance(lhs.lhs, promql_parser.AggregateExpr) and lhs.lhs.modifier is None):
                found.append(str(n))
        return True
    promql_parser.walk(node, visit)


def test_zero_fallbacks_do_not_add_a_series_next_to_real_ones():
    bad: list[str] = []
    for q in dashboard_queries():
        _unguarded_fallbacks(promql_parser.parse(render_expr(q.expr)), bad)
    assert bad == []
    _unguarded_fallbacks(promql_parser.parse("sum by (a) (x) or vector(0)"), bad)
    assert bad, "the check itself must catch the pattern"


def test_dashboards_use_defined_recording_rules_and_every_rule_is_shown():
    rules = recording_rules()
    used = set().union(*(selector_names(render_expr(q.expr)) for q in dashboard_queries()))
    undefined = {n for n in used if ":" in n} - set(rules)
    assert undefined == set(), "recording-rule names used but not defined in rules.yml"
    assert set(rules) - used == set(), "recording rules no dashboard shows"
    raw = {n for n in used if ":" not in n} - PROMETHEUS_SYNTHETIC
    assert all(n.startswith("lyssna_") for n in raw), raw


def test_hr_dashboard_filters_mentions_by_the_org_variable():
    dash = load_dashboards()["hr-insights.json"]
    (org,) = [v for v in dash["templating"]["list"] if v["name"] == "org"]
    assert org["query"]["query"] == "label_values(lyssna_classify_mentions_total, org)"
    assert org["includeAll"] and org["allValue"] == ".*"
    for q in dashboard_queries({"hr-insights.json": dash}):
        if "mentions" in q.expr and not q.panel.startswith("variable"):
            assert q.expr.count('org=~"$org"') == len(re.findall(r"mentions[\w:]*\{", q.expr)), q.panel


# ------------------------------------------------------------------ metric-name helper

def test_metric_names_resolve_recording_rules_to_exported_samples():
    names = metric_names_used()
    assert names and all(n.startswith("lyssna_") for n in names), names
    assert not any(":" in n for n in names)
    # spot checks of the resolution path: rule -> histogram bucket, dashboard variable -> counter
    assert "lyssna_classify_inference_latency_seconds_bucket" in names
    assert "lyssna_classify_mentions_total" in names
    rules = {"a:b:rate5m": "sum(rate(x_total[5m]))", "c:d:ratio": "a:b:rate5m / y"}
    assert resolve({"c:d:ratio", "z"}, rules) == {"x_total", "y", "z"}


def test_selector_names_and_grafana_variables():
    expr = 'histogram_quantile(0.9, sum by (le) (rate(h_bucket{org=~"$org"}[$__rate_interval]))) / {__name__="n"}'
    rendered = render_expr(expr)
    assert "$" not in rendered and 'org=~".*"' in rendered
    assert selector_names(rendered) == {"h_bucket", "n"}
    assert render_expr("x{org=~\"${org}\"}[$__range]", {"org": "Acme", "__range": "5m"}) == 'x{org=~"Acme"}[5m]'
    with pytest.raises(ValueError):
        selector_names("sum(rate(x[5m])")


def test_exposition_names_include_metrics_without_samples_yet():
    text = (
        "# HELP lyssna_alerts_events_total Alert state changes.\n"
        "# TYPE lyssna_alerts_events_total counter\n"
        "# HELP lyssna_classify_batch_posts Posts per batch.\n"
        "# TYPE lyssna_classify_batch_posts histogram\n"
        'lyssna_classify_batch_posts_bucket{le="+Inf"} 3.0\n'
        "lyssna_classify_batch_posts_count 3.0\n"
        "lyssna_classify_batch_posts_sum 12.0\n"
        "# TYPE lyssna_alerts_retry_queue_depth gauge\n"
        "lyssna_alerts_retry_queue_depth 0.0\n"
    )
    names = exposition_sample_names(text)
    assert {"lyssna_alerts_events_total", "lyssna_classify_batch_posts_bucket",
            "lyssna_classify_batch_posts_sum", "lyssna_alerts_retry_queue_depth"} <= names


# ------------------------------------------------------------------ the script ops run

def test_validate_deploy_script_passes():
    compose_command()  # skips with the reason when no compose binary is installed
    require_promtool()
    res = run(["bash", str(ROOT / "scripts" / "validate-deploy.sh")])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" not in res.stdout
