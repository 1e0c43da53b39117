#!/usr/bin/env bash
# Start/stop the real local infrastructure (Kafka in KRaft mode, Redis, and on
# request Prometheus) as plain processes on loopback, without Docker.
#
#   scripts/infra.sh up [kafka|redis|prometheus ...]   start (default: kafka redis), wait until they answer
#   scripts/infra.sh down [...]                        stop exactly what this script started
#   scripts/infra.sh status
#
# Kafka is one broker by default. LYSSNA_KAFKA_BROKERS=3 starts a replicated
# KRaft cluster instead: node i (1..N) is broker and controller, its broker on
# LYSSNA_KAFKA_PORT + 2(i-1) (9092, 9094, 9096) and its controller on the port
# above it (9093, 9095, 9097); topics default to replication 3 and
# min.insync.replicas 2 there, so one broker can die without losing a write.
# The cluster keeps its own data (.local/kafka/cluster-<port>/) apart from the
# single broker's, and records its size, so "status" and "down" find every
# node without being told LYSSNA_KAFKA_BROKERS again.
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
# A cluster started earlier on this port keeps its size, so status/down need no env.
KAFKA_CLUSTER_RECORD="$RUN/kafka-cluster-$KAFKA_PORT"
KAFKA_BROKERS_WANTED=${LYSSNA_KAFKA_BROKERS:-}
if [[ -z "$KAFKA_BROKERS_WANTED" && -f "$KAFKA_CLUSTER_RECORD" ]]; then KAFKA_BROKERS_WANTED=$(cat "$KAFKA_CLUSTER_RECORD"); fi
KAFKA_BROKERS=${KAFKA_BROKERS_WANTED:-1}
[[ "$KAFKA_BROKERS" =~ ^[1-9]$ ]] || { printf '[infra] error: LYSSNA_KAFKA_BROKERS=%s: use 1 (one dev broker) or 3 (a replicated cluster)\n' "$KAFKA_BROKERS" >&2; exit 1; }
mkdir -p "$RUN"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pidfile() {
  case $1 in
    kafka) if [[ $KAFKA_PORT == 9092 ]]; then echo "$RUN/kafka.pid"; else echo "$RUN/kafka-$KAFKA_PORT.pid"; fi ;;
    kafka.*) echo "$RUN/kafka-$KAFKA_PORT-node${1#kafka.}.pid" ;;  # node i of a cluster
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

# Node i of the Kafka we run: its pid name, ports, data and log directories.
# One broker keeps the layout it always had; a cluster's nodes live under cluster-<port>/.
kafka_node() {
  local i=$1
  if ((KAFKA_BROKERS == 1)); then
    NODE_NAME=kafka NODE_PORT=$KAFKA_PORT NODE_CPORT=$KAFKA_CONTROLLER_PORT
    NODE_DATA=$KAFKA_DATA NODE_PROPS="$KAFKA_HOME/server-$KAFKA_PORT.properties"
  else
    NODE_NAME=kafka.$i NODE_PORT=$((KAFKA_PORT + 2 * (i - 1))) NODE_CPORT=$((KAFKA_CONTROLLER_PORT + 2 * (i - 1)))
    NODE_DATA="$KAFKA_HOME/cluster-$KAFKA_PORT/node-$i" NODE_PROPS="$KAFKA_HOME/cluster-$KAFKA_PORT/node-$i.properties"
  fi
  NODE_LOG="$NODE_DATA.log"
}

# A random cluster id as Kafka writes them (base64url of a UUID), never starting
# with "-": the storage tool would take such an id for an option and refuse it.
kafka_cluster_id() {
  python3 -c 'import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(i)'
}

kafka_voters() {
  local i out=()
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do out+=("$i@127.0.0.1:$((KAFKA_CONTROLLER_PORT + 2 * (i - 1)))"); done
  local IFS=,; echo "${out[*]}"
}

kafka_node_ready() { # needs kafka_node
  port_open "$NODE_PORT" || return 1
  grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$NODE_LOG/server.log" 2>/dev/null
}

kafka_all_ready() {
  local i
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_node "$i"; kafka_node_ready || return 1; done
}

kafka_bootstrap() {
  local i out=()
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_node "$i"; out+=("127.0.0.1:$NODE_PORT"); done
  local IFS=,; echo "${out[*]}"
}

kafka_up() {
  # One size per port: a different one would reuse some ports and strand the other nodes.
  local recorded=1
  [[ -f "$KAFKA_CLUSTER_RECORD" ]] && recorded=$(cat "$KAFKA_CLUSTER_RECORD")
  if [[ "$recorded" != "$KAFKA_BROKERS" ]] && [[ -n "$(KAFKA_BROKERS=$recorded kafka_pids)" ]]; then
    die "a $recorded-broker Kafka runs on port $KAFKA_PORT; run 'scripts/infra.sh down kafka' first, then up with LYSSNA_KAFKA_BROKERS=$KAFKA_BROKERS"
  fi
  # Recorded first, so "down" finds the nodes that started even if a later one does not.
  if ((KAFKA_BROKERS > 1)); then echo "$KAFKA_BROKERS" >"$KAFKA_CLUSTER_RECORD"; else rm -f "$KAFKA_CLUSTER_RECORD"; fi
  # Replication of the internal and default topics: 3 copies, 2 in sync, as soon as there are 3 brokers.
  local rf=$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3)) isr=1 i started=() cluster_id=""
  ((rf >= 3)) && isr=2
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do
    kafka_node "$i"
    if our_pid "$NODE_NAME" kafka.Kafka >/dev/null; then log "kafka already running on 127.0.0.1:$NODE_PORT"; continue; fi
    port_open "$NODE_PORT" && die "port $NODE_PORT is in use by a process this project did not start; stop it or set LYSSNA_KAFKA_PORT"
    port_open "$NODE_CPORT" && die "port $NODE_CPORT is in use by a process this project did not start; stop it or set LYSSNA_KAFKA_CONTROLLER_PORT"
    kafka_fetch
    local cp="$KAFKA_HOME/libs/*" heap=768m
    ((KAFKA_BROKERS > 1)) && heap=512m
    mkdir -p "$NODE_DATA" "$NODE_LOG"
    cat >"$NODE_PROPS" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(kafka_voters)
listeners=PLAINTEXT://127.0.0.1:$NODE_PORT,CONTROLLER://127.0.0.1:$NODE_CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$NODE_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$NODE_DATA
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
PROPS
    local jvm=(java -Xms256m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
               -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties"
               -Dkafka.logs.dir="$NODE_LOG" -cp "$cp")
    if [[ ! -f "$NODE_DATA/meta.properties" ]]; then
      # Every node of a cluster is formatted with the same cluster id, kept beside them.
      if ((KAFKA_BROKERS > 1)); then
        local id_file="$KAFKA_HOME/cluster-$KAFKA_PORT/cluster.id"
        [[ -s "$id_file" ]] || kafka_cluster_id >"$id_file"
        cluster_id=$(cat "$id_file")
      else
        cluster_id=$(kafka_cluster_id)
      fi
      log "formatting Kafka storage in $NODE_DATA (once)"
      "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$NODE_PROPS" >"$NODE_LOG/format.log" 2>&1 \
        || die "formatting Kafka storage failed; see $NODE_LOG/format.log"
    fi
    log "starting kafka on 127.0.0.1:$NODE_PORT"
    : >"$NODE_LOG/server.log"
    setsid nohup "${jvm[@]}" kafka.Kafka "$NODE_PROPS" >"$NODE_LOG/stdout.log" 2>&1 &
    echo $! >"$(pidfile "$NODE_NAME")"
    started+=("$i")
  done
  ((${#started[@]})) || return 0
  # A cluster's nodes wait for each other's controller quorum, so they start together and are awaited together.
  wait_for kafka 90 kafka_all_ready || die "kafka did not start within 90s; see the logs under $KAFKA_HOME/"
  log "kafka ready ($KAFKA_BROKERS broker(s): $(kafka_bootstrap))"
}

kafka_pids() {
  local i pid
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_node "$i"; pid=$(our_pid "$NODE_NAME" kafka.Kafka) && echo "$pid"; done
  return 0
}

kafka_status() {
  local pids
  pids=$(kafka_pids | tr '\n' ' '); pids=${pids% }
  local n
  n=$(wc -w <<<"$pids")
  if ((KAFKA_BROKERS == 1)); then
    if [[ -n "$pids" ]]; then echo "kafka: running (pid $pids)"; else echo "kafka: stopped"; fi
  elif ((n == KAFKA_BROKERS)); then echo "kafka: running ($KAFKA_BROKERS brokers $(kafka_bootstrap), pids $pids)"
  elif ((n > 0)); then echo "kafka: degraded ($n of $KAFKA_BROKERS brokers running, pids $pids)"
  else echo "kafka: stopped"; fi
}

# The nodes of a cluster are signalled together: a node stopped alone waits for a
# controller quorum that its stopped peers no longer form.
kafka_down() {
  local i pid pids=()
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do
    kafka_node "$i"
    if pid=$(our_pid "$NODE_NAME" kafka.Kafka); then log "stopping kafka on 127.0.0.1:$NODE_PORT (pid $pid)"; kill "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  for ((i = 0; i < 120; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && { log "kafka (pid $pid) did not stop in 30s, killing"; kill -9 "$pid" 2>/dev/null || true; }
  done
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_node "$i"; rm -f "$(pidfile "$NODE_NAME")"; done
  rm -f "$KAFKA_CLUSTER_RECORD"
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
    for c in "${comps[@]}"; do
      pattern "$c" >/dev/null
      if [[ $c == kafka ]]; then kafka_down; else stop "$c" "$(pattern "$c")"; fi
    done ;;
  status)
    kafka_status
    for c in redis prometheus; do
      if pid=$(our_pid "$c" "$(pattern "$c")"); then echo "$c: running (pid $pid)"; else echo "$c: stopped"; fi
    done ;;
  *) die "usage: $0 up|down|status [kafka|redis|prometheus ...]" ;;
esac
