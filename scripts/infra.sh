#!/usr/bin/env bash
# Start/stop the real local infrastructure (Kafka in KRaft mode, Redis, and on
# request Prometheus) as plain processes on loopback, without Docker.
#
#   scripts/infra.sh up [kafka|redis|prometheus ...]   start (default: kafka redis), wait until they answer
#   scripts/infra.sh down [...]                        stop exactly what this script started
#   scripts/infra.sh status
#
# What it starts is recorded in .local/run/<name>.pid (<name>-<port>.pid off the
# default port, so a second instance, e.g. a test's private broker, keeps its own
# record); "down" only signals
# those pids, and only while they still run the command we started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
RUN="$LOCAL/run"
KAFKA_PORT=${LYSSNA_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${LYSSNA_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
REDIS_PORT=${LYSSNA_REDIS_PORT:-6379}
PROMETHEUS_PORT=${LYSSNA_PROMETHEUS_PORT:-9090}
KAFKA_HOME="$LOCAL/kafka"
KAFKA_DATA="$KAFKA_HOME/data-$KAFKA_PORT"
mkdir -p "$RUN"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pidfile() {
  case $1 in
    kafka) if [[ $KAFKA_PORT == 9092 ]]; then echo "$RUN/kafka.pid"; else echo "$RUN/kafka-$KAFKA_PORT.pid"; fi ;;
    redis) if [[ $REDIS_PORT == 6379 ]]; then echo "$RUN/redis.pid"; else echo "$RUN/redis-$REDIS_PORT.pid"; fi ;;
    prometheus) if [[ $PROMETHEUS_PORT == 9090 ]]; then echo "$RUN/prometheus.pid"; else echo "$RUN/prometheus-$PROMETHEUS_PORT.pid"; fi ;;
    *) echo "$RUN/$1.pid" ;;
  esac
}

# pid recorded for $1 that is still alive and still running our command ($2 = pattern)
our_pid() {
  local f pid
  f=$(pidfile "$1")
  [[ -f "$f" ]] || return 1
  pid=$(cat "$f")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -qa -- "$2" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

wait_for() { # name, seconds, check command...
  local name=$1 secs=$2; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" && return 0
    sleep 0.25
  done
  return 1
}

apt_install() {
  command -v apt-get >/dev/null || die "$* missing and no apt-get here; install it and rerun"
  log "installing $* with apt-get (once per machine)"
  export DEBIAN_FRONTEND=noninteractive
  if [[ ! -f "$LOCAL/.apt-updated" ]]; then apt-get update -q >/dev/null && touch "$LOCAL/.apt-updated"; fi
  apt-get install -y -q "$@" >/dev/null
}

# ------------------------------------------------------------------ Kafka
kafka_fetch() {
  [[ -f "$KAFKA_HOME/libs/.complete" ]] && [[ "$KAFKA_HOME/libs/.complete" -nt "$ROOT/deploy/kafka/pom.xml" ]] && return 0
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "resolving Kafka jars from Maven Central (once per machine)"
  rm -rf "$KAFKA_HOME/libs.tmp"
  mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_HOME/libs.tmp" -DincludeScope=runtime >&2 \
    || die "Maven could not resolve Kafka's jars; check network access to Maven Central and rerun"
  rm -rf "$KAFKA_HOME/libs" && mv "$KAFKA_HOME/libs.tmp" "$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/libs/.complete"
}

kafka_ready() {
  port_open "$KAFKA_PORT" || return 1
  grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$KAFKA_DATA.log/server.log" 2>/dev/null
}

kafka_up() {
  if our_pid kafka kafka.Kafka >/dev/null; then log "kafka already running on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is in use by a process this project did not start; stop it or set LYSSNA_KAFKA_PORT"
  kafka_fetch
  local props="$KAFKA_HOME/server-$KAFKA_PORT.properties" cp="$KAFKA_HOME/libs/*"
  mkdir -p "$KAFKA_DATA" "$KAFKA_DATA.log"
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
PROPS
  local jvm=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
             -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties"
             -Dkafka.logs.dir="$KAFKA_DATA.log" -cp "$cp")
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    log "formatting Kafka storage in $KAFKA_DATA (once)"
    local cluster_id
    cluster_id=$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
    "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >"$KAFKA_DATA.log/format.log" 2>&1 \
      || die "formatting Kafka storage failed; see $KAFKA_DATA.log/format.log"
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  : >"$KAFKA_DATA.log/server.log"
  setsid nohup "${jvm[@]}" kafka.Kafka "$props" >"$KAFKA_DATA.log/stdout.log" 2>&1 &
  echo $! >"$(pidfile kafka)"
  wait_for kafka 90 kafka_ready || die "kafka did not start within 90s; see $KAFKA_DATA.log/"
  log "kafka ready"
}

# ------------------------------------------------------------------ Redis
redis_up() {
  if our_pid redis redis-server >/dev/null; then log "redis already running on 127.0.0.1:$REDIS_PORT"; return 0; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is in use by a process this project did not start; stop it or set LYSSNA_REDIS_PORT"
  command -v redis-server >/dev/null || apt_install redis-server
  # Debian's package starts a system-wide redis on 6379; we run our own.
  if systemctl is-active --quiet redis-server 2>/dev/null; then systemctl stop redis-server || true; fi
  local dir="$LOCAL/redis-$REDIS_PORT"
  mkdir -p "$dir"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --appendonly yes \
    --save "" --daemonize yes --pidfile "$(pidfile redis)" --logfile "$dir/redis.log" >/dev/null
  wait_for redis 30 sh -c "redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG" \
    || die "redis did not answer within 30s; see $dir/redis.log"
  log "redis ready"
}

# ------------------------------------------------------------------ Prometheus
prometheus_up() {
  if our_pid prometheus prometheus >/dev/null; then log "prometheus already running on 127.0.0.1:$PROMETHEUS_PORT"; return 0; fi
  port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is in use; stop it or set LYSSNA_PROMETHEUS_PORT"
  command -v prometheus >/dev/null || apt_install prometheus
  # Debian's package starts a system-wide prometheus; it is not ours to use.
  if systemctl is-active --quiet prometheus 2>/dev/null; then systemctl stop prometheus || true; fi
  local cfg=${LYSSNA_PROMETHEUS_CONFIG:-$ROOT/deploy/prometheus/prometheus.local.yml}
  local dir="$LOCAL/prometheus-$PROMETHEUS_PORT"
  mkdir -p "$dir"
  log "starting prometheus on 127.0.0.1:$PROMETHEUS_PORT ($cfg)"
  setsid nohup prometheus --config.file="$cfg" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle >"$dir/prometheus.log" 2>&1 &
  echo $! >"$(pidfile prometheus)"
  wait_for prometheus 30 sh -c "curl -fs http://127.0.0.1:$PROMETHEUS_PORT/-/ready >/dev/null" \
    || die "prometheus did not become ready within 30s; see $dir/prometheus.log"
  log "prometheus ready"
}

stop() { # name, pattern
  local pid
  if pid=$(our_pid "$1" "$2"); then
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { log "$1 did not stop in 30s, killing"; kill -9 "$pid" 2>/dev/null || true; }
  fi
  rm -f "$(pidfile "$1")"
}

pattern() { case $1 in kafka) echo kafka.Kafka ;; redis) echo redis-server ;; prometheus) echo prometheus ;; *) die "unknown component '$1' (kafka, redis, prometheus)" ;; esac; }

cmd=${1:-status}; shift || true
case $cmd in
  up)
    comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || comps=(kafka redis)
    for c in "${comps[@]}"; do pattern "$c" >/dev/null; "${c}_up"; done ;;
  down)
    comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || comps=(prometheus kafka redis)
    for c in "${comps[@]}"; do stop "$c" "$(pattern "$c")"; done ;;
  status)
    for c in kafka redis prometheus; do
      if pid=$(our_pid "$c" "$(pattern "$c")"); then echo "$c: running (pid $pid)"; else echo "$c: stopped"; fi
    done ;;
  *) die "usage: $0 up|down|status [kafka|redis|prometheus ...]" ;;
esac
