#!/usr/bin/env bash
# Install the system packages Lyssna's tooling needs, once per machine (Debian).
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v curl >/dev/null || need+=(curl)
[[ ${#need[@]} -eq 0 ]] && exit 0
command -v apt-get >/dev/null || { echo "missing: ${need[*]}; install them with your package manager" >&2; exit 1; }
echo "[deps] installing ${need[*]} with apt-get (once per machine)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
# Debian starts packaged daemons on their default ports; the project runs its own.
for svc in redis-server prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" && systemctl disable "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
