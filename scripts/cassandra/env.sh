# Sourced by the scripts in this directory: where the jars are cached, where the
# node keeps its data, which ports it uses. Every value can be overridden from
# the environment.
#
#   SIPRING_CASSANDRA_VERSION  Apache Cassandra release fetched from Maven Central (5.0.8)
#   SIPRING_CACHE_DIR          cache root (${XDG_CACHE_HOME:-~/.cache}/sipring); the jars go to
#                              $SIPRING_CACHE_DIR/cassandra/$VERSION/lib, Maven's local
#                              repository for them to $SIPRING_CACHE_DIR/cassandra/m2
#   SIPRING_CASSANDRA_BASE     the node's config, data and logs (<repo>/target/cassandra-node)
#   SIPRING_CASSANDRA_HOST     listen/rpc address. Default: the first of 127.0.0.1,
#                              127.0.0.2, ... where the ports are free (so that several
#                              checkouts on one machine can each run their node); start.sh
#                              records the choice in $BASE/address for the other scripts
#   SIPRING_CASSANDRA_PORT     CQL native port (9042); storage port 7000, JMX port
#                              7199 (+ N-1 on 127.0.0.N) can be moved with
#                              SIPRING_CASSANDRA_STORAGE_PORT / _JMX_PORT
#   SIPRING_CASSANDRA_HEAP     JVM heap (768m: enough for the tests and benchmarks, small
#                              enough for a 2-core 24 GiB machine shared with cargo)
#   SIPRING_JAVA               java of a JDK 17 or 11 (default: Debian's JDK 17, else
#                              $JAVA_HOME/bin/java, else `java` on the PATH)
CASS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CASS_REPO=$(cd "$CASS_DIR/../.." && pwd)
CASS_VERSION=${SIPRING_CASSANDRA_VERSION:-5.0.8}
CASS_CACHE=${SIPRING_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sipring}/cassandra
CASS_LIB=$CASS_CACHE/$CASS_VERSION/lib
CASS_M2=$CASS_CACHE/m2
CASS_BASE=${SIPRING_CASSANDRA_BASE:-$CASS_REPO/target/cassandra-node}
CASS_PORT=${SIPRING_CASSANDRA_PORT:-9042}
CASS_STORAGE_PORT=${SIPRING_CASSANDRA_STORAGE_PORT:-7000}
CASS_JMX_PORT=${SIPRING_CASSANDRA_JMX_PORT:-7199}
CASS_HOST=${SIPRING_CASSANDRA_HOST:-}
if [ -z "$CASS_HOST" ] && [ -f "$CASS_BASE/address" ]; then
  CASS_HOST=$(cat "$CASS_BASE/address")
fi
CASS_HOST=${CASS_HOST:-127.0.0.1}
CASS_HEAP=${SIPRING_CASSANDRA_HEAP:-768m}
# Cassandra 5.0 runs on JDK 11 or 17 (not 21+): prefer Debian's JDK 17 over JAVA_HOME.
cass_jdk17=$(compgen -G '/usr/lib/jvm/java-17-openjdk-*/bin/java' | head -n 1 || true)
if [ -n "${SIPRING_JAVA:-}" ]; then
  CASS_JAVA=$SIPRING_JAVA
elif [ -n "$cass_jdk17" ]; then
  CASS_JAVA=$cass_jdk17
elif [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
  CASS_JAVA=$JAVA_HOME/bin/java
else
  CASS_JAVA=java
fi
CASS_PIDFILE=$CASS_BASE/cassandra.pid

# Whether something accepts TCP connections on HOST PORT.
cass_port_busy() {
  timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# The pid of our node when it is running, else nothing. Only a pid recorded by
# start.sh whose command line is a CassandraDaemon with our config counts, so
# these scripts never signal another process.
cass_pid() {
  [ -f "$CASS_PIDFILE" ] || return 1
  local pid
  pid=$(cat "$CASS_PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null \
    | grep -q -- "-Dcassandra.config=file://$CASS_BASE/conf/cassandra.yaml .*CassandraDaemon" \
    || return 1
  echo "$pid"
}
