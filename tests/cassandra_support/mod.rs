//! Shared helpers of the Cassandra backend's tests: find the test node,
//! connect with a keyspace of the test's own.
//!
//! The node is the real single-node Cassandra that `scripts/test-all.sh`
//! starts (`scripts/cassandra/start.sh`). `SIPRING_CASSANDRA` gives its CQL
//! address (default 127.0.0.1:9042). When it does not answer, the tests skip
//! with a message, except under `SIPRING_REQUIRE_CASSANDRA=1` (set by
//! test-all.sh), where they fail.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sipring::store::cassandra::{CassandraConfig, CassandraStore};

/// The test node's CQL address.
pub fn address() -> String {
    std::env::var("SIPRING_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_owned())
}

/// Whether the tests must fail, not skip, without a node.
pub fn required() -> bool {
    std::env::var("SIPRING_REQUIRE_CASSANDRA").is_ok_and(|v| v == "1")
}

fn reachable(addr: &str) -> bool {
    let Some(sa) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    TcpStream::connect_timeout(&sa, Duration::from_secs(2)).is_ok()
}

/// Settings for a keyspace named after the test (and this process), on the
/// test node; `None` (after saying why) when there is no node and none is
/// required.
pub fn config(test: &str) -> Option<CassandraConfig> {
    let addr = address();
    if !reachable(&addr) {
        assert!(
            !required(),
            "SIPRING_REQUIRE_CASSANDRA=1 but no Cassandra answers on {addr} \
             (scripts/cassandra/start.sh starts one)"
        );
        eprintln!("SKIP {test}: no Cassandra on {addr} (scripts/cassandra/start.sh starts one)");
        return None;
    }
    Some(CassandraConfig {
        hosts: vec![addr],
        keyspace: format!("t_{test}_{}", std::process::id()),
        ..CassandraConfig::default()
    })
}

/// Connects with `config(test)`.
pub fn connect(test: &str) -> Option<CassandraStore> {
    let c = config(test)?;
    Some(CassandraStore::connect(c).expect("connect to the test node"))
}

/// Polls `f` every 20 ms until it is true or `limit` passes; whether it
/// became true.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unused-import guard for the address type some tests print.
pub type Addr = SocketAddr;
