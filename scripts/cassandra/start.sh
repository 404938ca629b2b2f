#!/usr/bin/env bash
# Start a single-node Apache Cassandra 5.0 from Maven Central jars (fetch.sh) on
# $SIPRING_CASSANDRA_HOST:$SIPRING_CASSANDRA_PORT (127.0.0.1:9042) and return
# once it answers CQL. Idempotent: a node of ours already running is waited for,
# not started twice.
#   start.sh         # in the background; the pid goes to $CASS_BASE/cassandra.pid
#   start.sh --fg    # in the foreground (exec); Ctrl-C stops it
# Env (besides env.sh's): SIPRING_CASSANDRA_FRESH=0 keeps the data of an earlier
# run (default 1: wiped at each start), SIPRING_CASSANDRA_START_TIMEOUT (s, 240).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
TIMEOUT=${SIPRING_CASSANDRA_START_TIMEOUT:-240}
FG=0; [ "${1:-}" = "--fg" ] && FG=1

wait_ready() { # pid
  local pid=$1 start
  start=$(date +%s)
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "cassandra: pid $pid exited during startup; last lines of $CASS_BASE/logs:" >&2
      tail -n 40 "$CASS_BASE/logs/stdout.log" >&2 || true
      tail -n 40 "$CASS_BASE/logs/system.log" >&2 || true
      rm -f "$CASS_PIDFILE"
      return 1
    fi
    if "$CASS_DIR/ready.sh"; then
      echo "cassandra: ready on $CASS_HOST:$CASS_PORT (pid $pid) after $(( $(date +%s) - start ))s" >&2
      return 0
    fi
    if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
      echo "cassandra: not ready after ${TIMEOUT}s; last lines of $CASS_BASE/logs/system.log:" >&2
      tail -n 60 "$CASS_BASE/logs/system.log" >&2 || true
      "$CASS_DIR/stop.sh"
      return 1
    fi
    sleep 0.5
  done
}

if pid=$(cass_pid); then
  wait_ready "$pid"
  exit
fi
# Where to listen: the given host, else the first loopback address whose
# ports are free (another checkout's node may hold 127.0.0.1).
if [ -n "${SIPRING_CASSANDRA_HOST:-}" ]; then
  if cass_port_busy "$CASS_HOST" "$CASS_PORT"; then
    echo "cassandra: something else already listens on $CASS_HOST:$CASS_PORT" >&2
    exit 1
  fi
else
  CASS_HOST=
  for n in $(seq 1 32); do
    jmx=$(( ${SIPRING_CASSANDRA_JMX_PORT:-7199} + n - 1 ))
    if ! cass_port_busy "127.0.0.$n" "$CASS_PORT" && ! cass_port_busy "127.0.0.$n" "$CASS_STORAGE_PORT" \
      && ! cass_port_busy 127.0.0.1 "$jmx"; then
      CASS_HOST=127.0.0.$n
      CASS_JMX_PORT=$jmx
      break
    fi
  done
  if [ -z "$CASS_HOST" ]; then
    echo "cassandra: ports $CASS_PORT/$CASS_STORAGE_PORT busy on 127.0.0.1-32; set SIPRING_CASSANDRA_HOST/_PORT" >&2
    exit 1
  fi
fi
mkdir -p "$CASS_BASE"
echo "$CASS_HOST" >"$CASS_BASE/address"

jver=$("$CASS_JAVA" -version 2>&1 || true)
case "$jver" in
  *'version "17.'* | *'version "11.'*) ;;
  *) echo "cassandra: needs JDK 17 (or 11) at $CASS_JAVA (set SIPRING_JAVA); found: $jver" >&2; exit 1 ;;
esac

# 1. jars (cassandra-all and every runtime dependency) from Maven Central, once.
"$CASS_DIR/fetch.sh"
jamm=("$CASS_LIB"/jamm-*.jar)
JAMM=${jamm[0]}

# 2. directories and the generated configuration.
if [ "${SIPRING_CASSANDRA_FRESH:-1}" = 1 ]; then
  rm -rf "${CASS_BASE:?}"/{data,commitlog,hints,saved_caches,cdc_raw,logs,tmp}
fi
mkdir -p "$CASS_BASE"/{conf,data,commitlog,hints,saved_caches,cdc_raw,logs,triggers,tmp}
sed -e "s#@BASE@#$CASS_BASE#g" -e "s#@HOST@#$CASS_HOST#g" -e "s#@PORT@#$CASS_PORT#g" \
  -e "s#@STORAGE_PORT@#$CASS_STORAGE_PORT#g" \
  "$CASS_DIR/cassandra.yaml.in" >"$CASS_BASE/conf/cassandra.yaml"
cp "$CASS_DIR/logback.xml" "$CASS_BASE/conf/logback.xml"
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-4}   # as conf/cassandra-env.sh does
ulimit -n 100000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# 3. JVM flags: conf/jvm-server.options + conf/jvm17-server.options of 5.0 and
# what bin/cassandra adds, with a heap sized for a small shared machine.
JVM_OPTS=(
  -ea -da:net.openhft...
  -XX:+UseThreadPriorities -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$CASS_BASE/logs"
  -Xss256k -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem
  -Djava.net.preferIPv4Stack=true -Dchronicle.analytics.disable=true
  -Xms"$CASS_HEAP" -Xmx"$CASS_HEAP"
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
  -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
  -XX:InitiatingHeapOccupancyPercent=70 -XX:+ExitOnOutOfMemoryError
  -Djdk.attach.allowAttachSelf=true
  --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports=java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports=java.management/com.sun.jmx.remote.security=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports=java.sql/java.sql=ALL-UNNAMED
  --add-exports=java.base/java.lang.ref=ALL-UNNAMED
  --add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-opens=java.base/java.lang.module=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens=java.base/java.nio.charset=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
  -javaagent:"$JAMM"
  # the system properties bin/cassandra and cassandra-env.sh pass
  -Dcassandra.config=file://"$CASS_BASE"/conf/cassandra.yaml
  -Dlogback.configurationFile="$CASS_BASE"/conf/logback.xml
  -Dcassandra.logdir="$CASS_BASE"/logs
  -Dcassandra.storagedir="$CASS_BASE"
  -Dcassandra.triggers_dir="$CASS_BASE"/triggers
  -Dcassandra-foreground=yes
  -Dcassandra.jmx.local.port="$CASS_JMX_PORT"
  -Dcom.sun.management.jmxremote.authenticate=false
  -Djava.io.tmpdir="$CASS_BASE"/tmp
  -Dcassandra.libjemalloc=-
  # a single test node: start and stop fast
  -Dcassandra.skip_wait_for_gossip_to_settle=0
  -Dcassandra.shutdown_announce_in_ms=0
  -Dcassandra.superuser_setup_delay_ms=0
  -Dcassandra.unsafesystem=true
)
CP="$CASS_BASE/conf:$CASS_LIB/*"
MAIN=org.apache.cassandra.service.CassandraDaemon

if [ "$FG" = 1 ]; then
  exec "$CASS_JAVA" "${JVM_OPTS[@]}" -cp "$CP" "$MAIN"
fi
# setsid: the node outlives the shell that started it and gets none of its
# terminal's signals; stop.sh stops it by pid.
setsid "$CASS_JAVA" "${JVM_OPTS[@]}" -cp "$CP" "$MAIN" >"$CASS_BASE/logs/stdout.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$CASS_PIDFILE"
wait_ready "$pid"
