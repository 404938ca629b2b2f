//! The Cassandra backend's settings: the `[cassandra]` section of the config
//! file, or a `cassandra://host1,host2:9042/keyspace?rf=1` URL
//! (`--store cassandra://...`).

use std::time::Duration;

use serde::Deserialize;

/// How the keyspace is replicated (used only when sipring creates it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor: a dev or test node.
    Simple(u8),
    /// `NetworkTopologyStrategy`: (datacenter, replication factor) pairs, for
    /// production.
    NetworkTopology(Vec<(String, u8)>),
}

impl Replication {
    /// The CQL map literal for `CREATE KEYSPACE ... WITH replication = `.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple(rf) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let mut s = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, rf) in dcs {
                    s.push_str(&format!(", '{}': {rf}", dc.replace('\'', "''")));
                }
                s.push('}');
                s
            }
        }
    }
}

/// How a flush of dialog mutations is sent for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// One UNLOGGED BATCH per partition: one request, one mutation of one
    /// partition on the replica (measured the faster, BENCHMARKS.md).
    Unlogged,
    /// One prepared statement per mutation, all in flight at once.
    Concurrent,
}

/// The Cassandra backend's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraConfig {
    /// Contact points, `host` or `host:port` (9042 when absent).
    pub hosts: Vec<String>,
    /// The keyspace; created with `replication` (and the tables) when absent.
    pub keyspace: String,
    /// Replication of the keyspace when sipring creates it.
    pub replication: Replication,
    /// Time limit of one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Time limit of the first connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Jobs (user, binding, proxy requests) that may wait for the storage
    /// thread; beyond it a request fails at once with `Overloaded`.
    pub queue_jobs: usize,
    /// A core flushes its dialog mutations when it holds this many.
    pub batch_max: usize,
    /// ... or when its oldest unflushed mutation is this old (microseconds).
    pub batch_window_us: u64,
    /// Flushes one core may have queued for the storage thread; when they are
    /// all taken, further mutations are dropped and counted (memory stays
    /// bounded by `queue_batches * batch_max` mutations per core).
    pub queue_batches: usize,
    /// UNLOGGED BATCH per partition, or concurrent single statements.
    pub batch_mode: BatchMode,
    /// TTL of a dialog row (a safety net: rows are deleted on BYE), seconds.
    pub dialog_ttl_secs: u32,
    /// Width of a dialog time bucket (a partition), seconds.
    pub dialog_bucket_secs: u32,
    /// First retry delay of a failed dialog write, milliseconds (doubles).
    pub retry_initial_ms: u64,
    /// Largest retry delay, milliseconds.
    pub retry_max_ms: u64,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            hosts: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "sipring".to_owned(),
            replication: Replication::Simple(1),
            request_timeout_ms: 2_000,
            connect_timeout_ms: 10_000,
            queue_jobs: 4_096,
            batch_max: 64,
            batch_window_us: 5_000,
            queue_batches: 256,
            batch_mode: BatchMode::Unlogged,
            dialog_ttl_secs: 4 * 3600,
            dialog_bucket_secs: 300,
            retry_initial_ms: 10,
            retry_max_ms: 2_000,
        }
    }
}

/// A setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cassandra: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl CassandraConfig {
    /// Parses `cassandra://host1[:port],host2[:port]/keyspace[?k=v&...]` over
    /// the defaults (see [`CassandraConfig::apply_url`]).
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let mut c = CassandraConfig::default();
        c.apply_url(url)?;
        Ok(c)
    }

    /// Overrides these settings with a
    /// `cassandra://host1[:port],host2[:port][/keyspace][?k=v&...]` URL: its
    /// hosts, its keyspace when given, and its query keys: `rf=N`
    /// (SimpleStrategy), `dc=NAME:N` (NetworkTopologyStrategy, repeatable),
    /// `batch_max=N`, `batch_window_us=N`, `batch_mode=unlogged|concurrent`,
    /// `dialog_ttl_secs=N`, `dialog_bucket_secs=N`, `request_timeout_ms=N`.
    pub fn apply_url(&mut self, url: &str) -> Result<(), ConfigError> {
        let rest = url
            .strip_prefix("cassandra://")
            .ok_or_else(|| ConfigError(format!("{url}: not a cassandra:// URL")))?;
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (hosts, keyspace) = match main.split_once('/') {
            Some((h, k)) => (h, k),
            None => (main, ""),
        };
        let c = self;
        c.hosts = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if !keyspace.is_empty() {
            c.keyspace = keyspace.to_owned();
        }
        let mut dcs = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("{pair}: expected key=value")))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| ConfigError(format!("{k}={v}: not a number")))
            };
            match k {
                "rf" => c.replication = Replication::Simple(small(num(v)?, k)?),
                "dc" => {
                    let (dc, rf) = v
                        .split_once(':')
                        .ok_or_else(|| ConfigError(format!("dc={v}: expected NAME:RF")))?;
                    dcs.push((dc.to_owned(), small(num(rf)?, k)?));
                }
                "batch_max" => c.batch_max = usize::try_from(num(v)?).unwrap_or(usize::MAX),
                "batch_window_us" => c.batch_window_us = num(v)?,
                "batch_mode" => {
                    c.batch_mode = match v {
                        "unlogged" => BatchMode::Unlogged,
                        "concurrent" => BatchMode::Concurrent,
                        _ => return Err(ConfigError(format!("batch_mode={v}: unknown"))),
                    }
                }
                "dialog_ttl_secs" => c.dialog_ttl_secs = u32::try_from(num(v)?).unwrap_or(0),
                "dialog_bucket_secs" => {
                    c.dialog_bucket_secs = u32::try_from(num(v)?).unwrap_or(0);
                }
                "request_timeout_ms" => c.request_timeout_ms = num(v)?,
                _ => return Err(ConfigError(format!("{k}: unknown URL parameter"))),
            }
        }
        if !dcs.is_empty() {
            c.replication = Replication::NetworkTopology(dcs);
        }
        c.validate()
    }

    /// Checks what the driver or the schema would reject later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError("no host given".into()));
        }
        let ks = &self.keyspace;
        if ks.is_empty()
            || ks.len() > 48
            || !ks.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ConfigError(format!(
                "keyspace {ks:?}: 1 to 48 letters, digits or _"
            )));
        }
        if let Replication::NetworkTopology(dcs) = &self.replication
            && dcs.iter().any(|(dc, _)| dc.is_empty())
        {
            return Err(ConfigError("empty datacenter name".into()));
        }
        if self.batch_max == 0 || self.queue_batches == 0 || self.queue_jobs == 0 {
            return Err(ConfigError(
                "batch_max, queue_batches and queue_jobs must be at least 1".into(),
            ));
        }
        if self.dialog_bucket_secs == 0 || self.dialog_ttl_secs == 0 {
            return Err(ConfigError(
                "dialog_ttl_secs and dialog_bucket_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The contact points with the default port where none is given.
    pub fn contact_points(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| {
                let has_port = match h.rsplit_once(':') {
                    // `[v6]:port`, `v4:port` or `name:port`; a bare v6
                    // address has more than one colon and no brackets.
                    Some((host, port)) => {
                        port.parse::<u16>().is_ok() && (host.ends_with(']') || !host.contains(':'))
                    }
                    None => false,
                };
                if has_port {
                    h.clone()
                } else if h.contains(':') && !h.starts_with('[') {
                    format!("[{h}]:9042")
                } else {
                    format!("{h}:9042")
                }
            })
            .collect()
    }

    /// `batch_window_us` as a duration.
    pub fn batch_window(&self) -> Duration {
        Duration::from_micros(self.batch_window_us)
    }

    /// `dialog_bucket_secs` in milliseconds.
    pub fn bucket_ms(&self) -> i64 {
        i64::from(self.dialog_bucket_secs) * 1000
    }
}

fn small(v: u64, k: &str) -> Result<u8, ConfigError> {
    u8::try_from(v)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| ConfigError(format!("{k}: replication factor {v} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_sets_hosts_keyspace_and_replication() {
        let c = CassandraConfig::from_url("cassandra://10.0.0.1,db2:9043/calls").unwrap();
        assert_eq!(c.hosts, vec!["10.0.0.1", "db2:9043"]);
        assert_eq!(c.contact_points(), vec!["10.0.0.1:9042", "db2:9043"]);
        assert_eq!(c.keyspace, "calls");
        assert_eq!(c.replication, Replication::Simple(1));

        let c = CassandraConfig::from_url(
            "cassandra://h/ks?dc=east:3&dc=west:2&batch_max=32&batch_mode=concurrent",
        )
        .unwrap();
        assert_eq!(
            c.replication.cql(),
            "{'class': 'NetworkTopologyStrategy', 'east': 3, 'west': 2}"
        );
        assert_eq!(c.batch_max, 32);
        assert_eq!(c.batch_mode, BatchMode::Concurrent);
        assert_eq!(
            Replication::Simple(1).cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let c = CassandraConfig::from_url("cassandra://::1,[::1]:9000").unwrap();
        assert_eq!(c.contact_points(), vec!["[::1]:9042", "[::1]:9000"]);
        assert_eq!(c.keyspace, "sipring");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "http://h/ks",
            "cassandra:///ks",
            "cassandra://h/bad-name",
            "cassandra://h/ks?rf=0",
            "cassandra://h/ks?rf=x",
            "cassandra://h/ks?nope=1",
            "cassandra://h/ks?batch_max=0",
            "cassandra://h/ks?dc=east",
        ] {
            assert!(CassandraConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
