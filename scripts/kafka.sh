#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, broker+controller in one JVM) for development and the
# Kafka tests. Needs only java (17+) and mvn: the broker and its runtime dependencies are resolved
# from Maven Central into a cache folder on first start.
#
#   scripts/kafka.sh start    resolve (once), format (once), start in the background, wait until it
#                             answers; prints the bootstrap address (127.0.0.1:PORT) as the LAST line
#                             of stdout. A running, answering broker is reused.
#   scripts/kafka.sh stop     SIGTERM, bounded wait, SIGKILL fallback.
#   scripts/kafka.sh status   prints "running ADDRESS" (exit 0) or "stopped" (exit 1).
#
# Environment (all optional):
#   TLSDECRYPT_KAFKA_HOME             cache folder (default: <repo>/.cache/kafka)
#   TLSDECRYPT_KAFKA_VERSION          Kafka version (default 3.9.2, the newest 3.9.x on Maven Central)
#   TLSDECRYPT_KAFKA_PORT             client listener port (default 19092)
#   TLSDECRYPT_KAFKA_CONTROLLER_PORT  KRaft controller port (default PORT+1)
#   TLSDECRYPT_KAFKA_HEAP_OPTS        JVM heap (default "-Xms128m -Xmx512m", with JVM=stock "-Xmx1G -Xms1G";
#                                     KAFKA_HEAP_OPTS also honoured)
#   TLSDECRYPT_KAFKA_JVM              test (default): options for fast start-up in tests (-XX:+UseSerialGC
#                                     -XX:TieredStopAtLevel=1, C1 only). stock: the JVM options Kafka's own
#                                     kafka-server-start.sh / kafka-run-class.sh use (G1, full tiered JIT),
#                                     for benchmarks "into a broker as Kafka ships it" (bench/mirror.mjs
#                                     --own-broker). Applies when this call starts the broker; a running
#                                     one is reused as it is.
#   TLSDECRYPT_KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 120)
#   TLSDECRYPT_KAFKA_AUTO_CREATE      auto.create.topics.enable (default false: tlsdecrypt creates its topics)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${TLSDECRYPT_KAFKA_HOME:-$REPO/.cache/kafka}"
VERSION="${TLSDECRYPT_KAFKA_VERSION:-3.9.2}"
PORT="${TLSDECRYPT_KAFKA_PORT:-19092}"
CPORT="${TLSDECRYPT_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
JVM="${TLSDECRYPT_KAFKA_JVM:-test}"
case "$JVM" in
  test) DEFAULT_HEAP="-Xms128m -Xmx512m" ;;
  stock) DEFAULT_HEAP="-Xmx1G -Xms1G" ;;
  *) echo "kafka.sh: TLSDECRYPT_KAFKA_JVM takes test or stock, got '$JVM'" >&2; exit 2 ;;
esac
HEAP="${TLSDECRYPT_KAFKA_HEAP_OPTS:-${KAFKA_HEAP_OPTS:-$DEFAULT_HEAP}}"
TIMEOUT="${TLSDECRYPT_KAFKA_START_TIMEOUT:-120}"
AUTO_CREATE="${TLSDECRYPT_KAFKA_AUTO_CREATE:-false}"
ADDR="127.0.0.1:$PORT"

LIB="$HOME_DIR/lib-$VERSION"
DATA="$HOME_DIR/data-$PORT"
PIDFILE="$HOME_DIR/kafka-$PORT.pid"
LOGFILE="$HOME_DIR/kafka-$PORT.log"
PROPS="$HOME_DIR/server-$PORT.properties"
LOG4J="$HOME_DIR/log4j.properties"

log() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: $*" >&2; exit 1; }

pid_alive() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Answers when a Kafka client can fetch cluster metadata (kafkajs from the repo when installed,
# else a plain TCP check of the listener).
answers() {
  if [[ -d "$REPO/node_modules/kafkajs" ]] && command -v node >/dev/null; then
    (cd "$REPO" && timeout 20 node --input-type=module -e "
      import { Kafka, logLevel } from 'kafkajs';
      const k = new Kafka({ clientId: 'kafka.sh', brokers: ['$ADDR'], logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 3000 });
      const a = k.admin();
      try { await a.connect(); await a.listTopics(); await a.describeCluster(); process.exit(0); } catch { process.exit(1); }
    " >/dev/null 2>&1)
  else
    port_open "$PORT"
  fi
}

wait_ready() {
  local deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    pid_alive || return 1
    answers && return 0
    sleep 1
  done
  return 1
}

resolve() {
  if [[ -f "$LIB/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka $VERSION)"
  log "resolving org.apache.kafka:kafka_2.13:$VERSION and its runtime dependencies with Maven into $LIB"
  local work="$HOME_DIR/mvn-$VERSION"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tlsdecrypt</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <!-- the broker logs through slf4j 1.7 + reload4j (log4j 1.x API), as the Kafka 3.9 distribution does -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$LIB.tmp"
  if ! (cd "$work" && mvn -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB.tmp") >"$work/mvn.log" 2>&1; then
    tail -n 30 "$work/mvn.log" >&2
    die "Maven could not resolve Kafka $VERSION (full log: $work/mvn.log)"
  fi
  ls "$LIB.tmp"/kafka_2.13-"$VERSION".jar >/dev/null 2>&1 || die "kafka_2.13-$VERSION.jar missing after resolution"
  rm -rf "$LIB" && mv "$LIB.tmp" "$LIB" && touch "$LIB/.complete"
}

write_config() {
  cat >"$PROPS" <<EOF
# generated by scripts/kafka.sh — rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=$AUTO_CREATE
delete.topic.enable=true
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
EOF
  cat >"$LOG4J" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.org.apache.kafka.controller=WARN
log4j.logger.kafka.controller=WARN
EOF
}

java_opts() {
  # shellcheck disable=SC2206
  local heap=($HEAP)
  if [[ "$JVM" == stock ]]; then
    # KAFKA_JVM_PERFORMANCE_OPTS of Kafka 3.9 bin/kafka-run-class.sh (MaxInlineLevel=15 is JDK 14+'s default)
    echo "${heap[@]} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true -Dlog4j.configuration=file:$LOG4J"
  else
    echo "${heap[@]} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true -Dlog4j.configuration=file:$LOG4J"
  fi
}

cmd_start() {
  mkdir -p "$HOME_DIR"
  exec 9>"$HOME_DIR/.lock-$PORT"
  flock -w 600 9 || die "another kafka.sh start holds $HOME_DIR/.lock-$PORT"
  if pid_alive; then
    if wait_ready; then
      log "reusing running broker (pid $(cat "$PIDFILE"))"
      echo "$ADDR"
      return 0
    fi
    die "broker pid $(cat "$PIDFILE") is alive but does not answer at $ADDR; see $LOGFILE or run 'scripts/kafka.sh stop'"
  fi
  rm -f "$PIDFILE"
  if port_open "$PORT"; then die "port $PORT is in use by another process; set TLSDECRYPT_KAFKA_PORT"; fi
  if port_open "$CPORT"; then die "controller port $CPORT is in use; set TLSDECRYPT_KAFKA_CONTROLLER_PORT"; fi
  command -v java >/dev/null || die "java not found (17+ needed)"
  resolve
  write_config
  local opts
  opts="$(java_opts)"
  if [[ ! -f "$DATA/meta.properties" ]]; then
    local id
    # shellcheck disable=SC2086
    id="$(java $opts -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    [[ -n "$id" ]] || die "kafka.tools.StorageTool random-uuid failed"
    # shellcheck disable=SC2086
    java $opts -cp "$LIB/*" kafka.tools.StorageTool format -t "$id" -c "$PROPS" --ignore-formatted >"$HOME_DIR/format-$PORT.log" 2>&1 ||
      die "formatting $DATA failed"
  fi
  log "starting Kafka $VERSION at $ADDR, JVM options '$JVM' (log: $LOGFILE)"
  # shellcheck disable=SC2086
  nohup java $opts -cp "$LIB/*" kafka.Kafka "$PROPS" >"$LOGFILE" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDFILE"
  if ! wait_ready; then
    tail -n 20 "$LOGFILE" >&2 || true
    cmd_stop >/dev/null 2>&1 || true
    die "broker did not answer at $ADDR within ${TIMEOUT}s (log: $LOGFILE)"
  fi
  log "broker ready (pid $(cat "$PIDFILE"))"
  echo "$ADDR"
}

cmd_stop() {
  if ! pid_alive; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker pid $pid ignored SIGTERM for 60 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

cmd_status() {
  if pid_alive && answers; then
    echo "running $ADDR"
    return 0
  fi
  echo "stopped"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: scripts/kafka.sh start|stop|status" >&2; exit 2 ;;
esac
