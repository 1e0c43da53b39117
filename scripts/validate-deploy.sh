#!/usr/bin/env bash
# Check the docker-compose deployment without a Docker engine:
#   compose file, Prometheus config and rules (+ rule unit tests), Grafana dashboards.
# The same checks, and more cross-checks, run in `make test` (tests/unit/test_deploy_config.py).
# Tools: Debian's docker-compose and prometheus packages (scripts/system-deps.sh installs them).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=0
ok()   { printf 'ok    %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; failed=1; }
skip() { printf 'SKIP  %s\n' "$1"; }
check() { # description, command...
  local what=$1 out; shift
  if out=$("$@" 2>&1); then ok "$what"; else fail "$what"; printf '%s\n' "$out" | sed 's/^/      /'; fi
}

PY=python3
[[ -x .venv/bin/python ]] && PY=.venv/bin/python

# Compose needs the required secrets to interpolate; use dummies from a temp copy of .env.example.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed -e 's/^LYSSNA_API_KEY=$/LYSSNA_API_KEY=validate/' -e 's/^LYSSNA_AUTHOR_KEY=$/LYSSNA_AUTHOR_KEY=validate/' -e 's/^GRAFANA_ADMIN_PASSWORD=$/GRAFANA_ADMIN_PASSWORD=validate/' \
  .env.example >"$tmp/validate.env"
if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=()
fi
if [[ ${#compose[@]} -gt 0 ]]; then
  check "docker-compose.yml (${compose[*]} config)" \
    env -u LYSSNA_API_KEY -u LYSSNA_AUTHOR_KEY -u GRAFANA_ADMIN_PASSWORD "${compose[@]}" --env-file "$tmp/validate.env" -f docker-compose.yml config -q
else
  skip "docker-compose.yml: no docker-compose here (scripts/system-deps.sh installs it)"
fi

if command -v promtool >/dev/null; then
  check "deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
  check "deploy/prometheus/prometheus.local.yml" promtool check config deploy/prometheus/prometheus.local.yml
  check "deploy/prometheus/rules.yml" promtool check rules deploy/prometheus/rules.yml
  check "deploy/prometheus/rules.test.yml (promtool test rules)" promtool test rules deploy/prometheus/rules.test.yml
else
  fail "promtool not found (Debian package 'prometheus'; scripts/system-deps.sh installs it)"
fi

for f in deploy/grafana/dashboards/*.json; do
  check "$f parses" "$PY" -m json.tool "$f" /dev/null
done
check "dashboards match deploy/grafana/generate_dashboards.py" "$PY" deploy/grafana/generate_dashboards.py --check

exit $failed
