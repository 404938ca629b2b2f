//! The TOML configuration of `sipring serve`.
//!
//! Every section is a struct with `#[serde(default)]`, so an empty file (or no
//! file) gives a working single-node proxy, and unknown keys are errors (a
//! typo must not be silently ignored). Command-line flags override the file
//! (`crate::cli`). Every option is documented in docs/configuration.md; a
//! part that needs options adds its own section struct here and a field in
//! [`Config`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses, cores, identity.
    pub server: ServerConfig,
    /// Routing of the proxy.
    pub proxy: ProxyConfig,
    /// UDP and the per-core event loop.
    pub udp: UdpConfig,
    /// TCP transport (RFC 3261 §18).
    pub tcp: TcpConfig,
    /// DNS resolution off the packet path.
    pub dns: DnsConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Which store: embedded (default) or Cassandra.
    pub store: StoreConfig,
    /// The Cassandra backend's settings (docs/storage.md).
    pub cassandra: crate::store::cassandra::CassandraConfig,
    /// The registrar and location service.
    pub registrar: RegistrarConfig,
    /// Digest authentication.
    pub auth: AuthConfig,
}

/// `[registrar]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Run the registrar, authentication and location service (off: a plain
    /// proxy that routes by Route, `forward_to` and Request-URI).
    pub enabled: bool,
    /// More domains this node serves, besides `server.domain`.
    pub domains: Vec<String>,
    /// Shortest registration accepted, seconds (423 with Min-Expires below).
    pub min_expires: u32,
    /// Longest registration granted, seconds.
    pub max_expires: u32,
    /// Registration length when the REGISTER gives none, seconds.
    pub default_expires: u32,
    /// Most registered contacts per user.
    pub max_contacts: usize,
    /// Peers (`IP` or `IP/PREFIX`) whose requests need no authentication
    /// and may be relayed anywhere.
    pub trusted_peers: Vec<String>,
    /// Challenge (407) requests other than REGISTER whose From is a user.
    pub authenticate_requests: bool,
    /// Refetch cached users and bindings after this many seconds; unset:
    /// never for the embedded store (its writes are seen at once), 5 s for
    /// Cassandra (other nodes write too).
    pub cache_ttl_secs: Option<u64>,
    /// Most requests per core waiting for the store (503 beyond).
    pub max_pending: usize,
    /// Most REGISTERs per core per 10 ms (503 with Retry-After beyond).
    pub registrations_per_tick: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            enabled: true,
            domains: Vec::new(),
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3_600,
            max_contacts: 16,
            trusted_peers: Vec::new(),
            authenticate_requests: true,
            cache_ttl_secs: None,
            max_pending: 8_192,
            registrations_per_tick: 1_000,
        }
    }
}

/// `[auth]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The secret that signs nonces; give every node of a cluster the same.
    /// Unset: a random one kept in `<data_dir>/nonce-secret`.
    pub secret: Option<String>,
    /// How long a nonce is accepted, seconds.
    pub nonce_ttl_secs: u64,
    /// The digest algorithms offered, in order (`MD5`, `SHA-256`,
    /// `MD5-sess`, `SHA-256-sess`). MD5 first by default: RFC 2617 clients
    /// read only the first challenge.
    pub algorithms: Vec<String>,
    /// Most nonces whose counts each core tracks (replay protection).
    pub max_nonces: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret: None,
            nonce_ttl_secs: 300,
            algorithms: vec!["MD5".into(), "SHA-256".into()],
            max_nonces: 65_536,
        }
    }
}

/// The transports sipring serves.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    /// RFC 3261 §18 over UDP.
    Udp,
    /// RFC 3261 §18 over TCP.
    Tcp,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The public SIP address every core binds with SO_REUSEPORT.
    pub listen: SocketAddr,
    /// Transports to serve on `listen` and on the private ports.
    pub transports: Vec<TransportName>,
    /// Number of cores (executors); 0 means one per CPU this process may use.
    pub cores: u16,
    /// Pin each executor to its own CPU.
    pub pin: bool,
    /// Core `i` binds private port `private_base + i`; 0 means listen port + 1.
    pub private_base: u16,
    /// Host written into Via and Record-Route; default: the listen IP when it
    /// is not a wildcard, else `domain`.
    pub advertise: Option<String>,
    /// The SIP domain this node serves; default: the host name.
    pub domain: Option<String>,
    /// Where the embedded store and other state live.
    pub data_dir: PathBuf,
    /// This node's identity in the cluster (the `proxies` row, the owner of
    /// its dialogs); default: advertised host and listen port.
    pub node_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060),
            transports: vec![TransportName::Udp, TransportName::Tcp],
            cores: 0,
            pin: true,
            private_base: 0,
            advertise: None,
            domain: None,
            data_dir: PathBuf::from("./sipring-data"),
            node_id: None,
        }
    }
}

/// `[proxy]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Next hop for every request (`HOST:PORT`); unset: route by Request-URI.
    pub forward_to: Option<String>,
    /// Add a Record-Route to dialog-creating requests.
    pub record_route: bool,
    /// Requests larger than this many bytes are answered 513.
    pub max_request_size: usize,
    /// RFC 3261 T1 (RTT estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (longest retransmit interval), milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 (longest a message stays in the network), milliseconds.
    pub t4_ms: u64,
    /// Timer C (§16.6): wait for a final response to an INVITE after its
    /// last provisional one, seconds (more than 180).
    pub timer_c_secs: u64,
    /// 100 Trying to an INVITE: 0 sends it at once; N sends it only if no
    /// other response went upstream within N ms (RFC 3261 §17.2.1 allows
    /// up to 200).
    pub trying_delay_ms: u64,
    /// Requests that would be larger than this many bytes over UDP are
    /// forwarded over TCP (RFC 3261 §18.1.1), back to UDP if no connection
    /// can be opened; 0 never switches.
    pub udp_max_request: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            forward_to: None,
            record_route: true,
            max_request_size: 16 * 1024,
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            timer_c_secs: 181,
            trying_delay_ms: 0,
            udp_max_request: 1_300,
        }
    }
}

/// `[udp]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UdpConfig {
    /// SO_RCVBUF of each UDP socket, bytes (0: the kernel default).
    pub recv_buffer: usize,
    /// SO_SNDBUF of each UDP socket, bytes (0: the kernel default).
    pub send_buffer: usize,
    /// Most datagrams read from one socket per wake-up before the core moves
    /// on (fairness between sockets, timers and hand-offs).
    pub recv_batch: usize,
    /// Largest message accepted or sent, bytes (larger ones are dropped and
    /// counted; RFC 3261 §18.1.1 sends big requests over TCP).
    pub max_message_size: usize,
    /// While busy, wait this long after a batch before reading again, so the
    /// next wake-up finds several datagrams (0: wake per datagram). Trades up
    /// to this much latency for fewer wake-ups; see BENCHMARKS.md.
    pub batch_interval_us: u64,
    /// glommio `spin_before_park`: spin this long before sleeping (0: never).
    /// Lowers latency, costs CPU.
    pub spin_before_park_us: u64,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            recv_batch: 64,
            max_message_size: 65_535,
            batch_interval_us: 0,
            spin_before_park_us: 0,
        }
    }
}

/// `[tcp]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// Most open connections per core (accepted plus opened); more are refused.
    pub max_connections_per_core: usize,
    /// Close a connection idle this long, seconds.
    pub idle_timeout_secs: u64,
    /// Give up an outbound connect after this long, milliseconds.
    pub connect_timeout_ms: u64,
    /// Close a connection whose unsent output exceeds this many bytes.
    pub max_pending_output: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections_per_core: 10_000,
            idle_timeout_secs: 600,
            connect_timeout_ms: 2_000,
            max_pending_output: 4 << 20,
        }
    }
}

/// `[dns]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Keep a resolved name this long, seconds.
    pub cache_ttl_secs: u64,
    /// Keep a failed lookup this long, seconds.
    pub negative_ttl_secs: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cache_ttl_secs: 60,
            negative_ttl_secs: 5,
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `http://LISTEN/metrics`; unset: off.
    pub listen: Option<SocketAddr>,
}

/// `[store]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `"embedded"` (in `server.data_dir`) or
    /// `"cassandra://host1,host2[:port]/keyspace[?k=v...]"` (over `[cassandra]`).
    pub url: String,
    /// Embedded store: `"os"` (a write is answered once in the
    /// write-ahead log: survives a killed process) or `"disk"` (also
    /// fsynced: survives a power loss).
    pub sync: crate::store::embedded::SyncMode,
    /// Embedded store: how often the database file is made durable and
    /// the write-ahead log emptied, milliseconds.
    pub checkpoint_ms: u64,
    /// Embedded store: how long a write waits for others to share its
    /// transaction, microseconds.
    pub group_window_us: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let e = crate::store::embedded::EmbeddedOptions::default();
        StoreConfig {
            url: "embedded".to_string(),
            sync: e.sync,
            checkpoint_ms: e.checkpoint_every.as_millis() as u64,
            group_window_us: e.group_window.as_micros() as u64,
        }
    }
}

impl StoreConfig {
    /// The embedded store's options from this section.
    pub fn embedded_options(&self) -> crate::store::embedded::EmbeddedOptions {
        crate::store::embedded::EmbeddedOptions {
            sync: self.sync,
            checkpoint_every: std::time::Duration::from_millis(self.checkpoint_ms.max(1)),
            group_window: std::time::Duration::from_micros(self.group_window_us),
        }
    }
}

/// `[shutdown]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGINT/SIGTERM, wait at most this long for in-flight
    /// transactions, milliseconds.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_ms: 5_000,
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML for this schema.
    Parse(PathBuf, String),
    /// A value is out of range.
    Invalid(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "{}: {e}", p.display()),
            ConfigError::Invalid(e) => write!(f, "invalid configuration: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse a configuration from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(origin.to_path_buf(), e.to_string()))
    }

    /// Load a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        Config::from_toml(&text, path)
    }

    /// Check values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.server.transports.is_empty() {
            return bad("server.transports is empty");
        }
        if self.udp.recv_batch == 0 {
            return bad("udp.recv_batch must be at least 1");
        }
        if self.udp.max_message_size < 1_300 || self.udp.max_message_size > 65_535 {
            return bad("udp.max_message_size must be within 1300..=65535");
        }
        if self.proxy.t1_ms == 0 || self.proxy.t2_ms < self.proxy.t1_ms || self.proxy.t4_ms == 0 {
            return bad("proxy timers must satisfy 0 < t1_ms <= t2_ms and t4_ms > 0");
        }
        if self.proxy.timer_c_secs <= 180 {
            return bad("proxy.timer_c_secs must be more than 180 (RFC 3261 §16.6)");
        }
        if self.proxy.trying_delay_ms > 200 {
            return bad("proxy.trying_delay_ms must be at most 200 (RFC 3261 §17.2.1)");
        }
        if self.proxy.max_request_size < 1_300 {
            return bad("proxy.max_request_size must be at least 1300");
        }
        if self.tcp.max_connections_per_core == 0 {
            return bad("tcp.max_connections_per_core must be at least 1");
        }
        if self.tcp.idle_timeout_secs == 0 {
            return bad("tcp.idle_timeout_secs must be at least 1");
        }
        let r = &self.registrar;
        if r.min_expires == 0 || r.min_expires > r.max_expires {
            return bad("registrar: 0 < min_expires <= max_expires");
        }
        if r.default_expires < r.min_expires || r.default_expires > r.max_expires {
            return bad("registrar.default_expires must be within min_expires..=max_expires");
        }
        if r.max_contacts == 0 || r.max_pending == 0 || r.registrations_per_tick == 0 {
            return bad("registrar: max_contacts, max_pending, registrations_per_tick at least 1");
        }
        for p in &r.trusted_peers {
            crate::registrar::IpNet::parse(p).map_err(ConfigError::Invalid)?;
        }
        let a = &self.auth;
        if a.nonce_ttl_secs == 0 || a.max_nonces == 0 {
            return bad("auth: nonce_ttl_secs and max_nonces at least 1");
        }
        if a.algorithms.is_empty() {
            return bad("auth.algorithms is empty");
        }
        for alg in &a.algorithms {
            if crate::auth::Algorithm::parse(Some(alg.as_bytes())).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "auth.algorithms: {alg:?} is not MD5, SHA-256, MD5-sess or SHA-256-sess"
                )));
            }
        }
        if a.secret.as_deref().is_some_and(|s| s.len() < 16) {
            return bad("auth.secret: at least 16 characters");
        }
        if let crate::store::StoreSelection::Cassandra(c) = self.store_selection()? {
            c.validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// The store `serve` uses: `store.url` over `[cassandra]`.
    pub fn store_selection(&self) -> Result<crate::store::StoreSelection, ConfigError> {
        crate::store::StoreSelection::from_url(
            &self.store.url,
            self.server.data_dir.clone(),
            &self.cassandra,
        )
        .map_err(ConfigError::Invalid)
    }

    /// Whether `t` is served.
    pub fn serves(&self, t: TransportName) -> bool {
        self.server.transports.contains(&t)
    }

    /// The number of cores to run: `server.cores`, or every CPU this process
    /// may use when it is 0.
    pub fn effective_cores(&self) -> u16 {
        if self.server.cores > 0 {
            return self.server.cores;
        }
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// The first private port: `server.private_base`, or listen port + 1.
    pub fn effective_private_base(&self) -> u16 {
        if self.server.private_base != 0 {
            self.server.private_base
        } else if self.server.listen.port() == 0 {
            0
        } else {
            self.server.listen.port().saturating_add(1)
        }
    }

    /// The domain: `server.domain`, else the host name, else "localhost".
    pub fn effective_domain(&self) -> String {
        if let Some(d) = &self.server.domain {
            return d.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }

    /// This node's identity: `server.node_id`, else `advertised_host:port`.
    pub fn effective_node_id(&self) -> String {
        match &self.server.node_id {
            Some(id) => id.clone(),
            None => format!("{}:{}", self.advertised_host(), self.server.listen.port()),
        }
    }

    /// The host written into Via and Record-Route.
    pub fn advertised_host(&self) -> String {
        if let Some(a) = &self.server.advertise {
            return a.clone();
        }
        let ip = self.server.listen.ip();
        if !ip.is_unspecified() {
            return match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
        }
        self.effective_domain()
    }

    /// `tcp.idle_timeout_secs` as a duration.
    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp.idle_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = Config::from_toml("", Path::new("t.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.listen, "0.0.0.0:5060".parse().unwrap());
        assert!(c.serves(TransportName::Udp) && c.serves(TransportName::Tcp));
        assert_eq!(c.effective_private_base(), 5061);
        assert_eq!(c.server.data_dir, PathBuf::from("./sipring-data"));
        c.validate().unwrap();
        assert!(c.effective_cores() >= 1);
    }

    #[test]
    fn sections_parse_and_unknown_keys_are_errors() {
        let text = r#"
            [server]
            listen = "127.0.0.1:5080"
            cores = 2
            transports = ["udp"]
            domain = "example.com"
            [proxy]
            forward_to = "10.0.0.1:5060"
            [tcp]
            idle_timeout_secs = 30
        "#;
        let c = Config::from_toml(text, Path::new("t.toml")).unwrap();
        assert_eq!(c.server.cores, 2);
        assert_eq!(c.effective_private_base(), 5081);
        assert_eq!(c.proxy.forward_to.as_deref(), Some("10.0.0.1:5060"));
        assert_eq!(c.advertised_host(), "127.0.0.1");
        assert_eq!(c.effective_domain(), "example.com");
        assert!(!c.serves(TransportName::Tcp));
        let err = Config::from_toml("[server]\nlisten_on = 1", Path::new("t.toml"));
        assert!(matches!(err, Err(ConfigError::Parse(..))));
    }

    #[test]
    fn the_embedded_store_durability_settings() {
        use crate::store::embedded::{EmbeddedOptions, SyncMode};
        let d = Config::from_toml("", Path::new("t.toml")).unwrap();
        assert_eq!(d.store.embedded_options(), EmbeddedOptions::default());
        assert_eq!(d.store.embedded_options().sync, SyncMode::Os);
        let c = Config::from_toml(
            "[store]\nsync = \"disk\"\ncheckpoint_ms = 250\ngroup_window_us = 0",
            Path::new("t.toml"),
        )
        .unwrap();
        let o = c.store.embedded_options();
        assert_eq!(o.sync, SyncMode::Disk);
        assert_eq!(o.checkpoint_every, std::time::Duration::from_millis(250));
        assert_eq!(o.group_window, std::time::Duration::ZERO);
        assert!(Config::from_toml("[store]\nsync = \"never\"", Path::new("t.toml")).is_err());
    }

    #[test]
    fn store_and_cassandra_sections_select_and_tune_the_backend() {
        let text = r#"
            [server]
            node_id = "edge-1"
            [store]
            url = "cassandra://db1,db2:9043/calls?rf=3"
            [cassandra]
            batch_max = 32
            replication = { network_topology = [["east", 3]] }
        "#;
        let c = Config::from_toml(text, Path::new("t.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.effective_node_id(), "edge-1");
        let crate::store::StoreSelection::Cassandra(cc) = c.store_selection().unwrap() else {
            panic!("not cassandra");
        };
        assert_eq!(cc.hosts, vec!["db1", "db2:9043"]);
        assert_eq!(cc.keyspace, "calls");
        assert_eq!(cc.batch_max, 32);
        // The URL's rf overrides the section's replication.
        assert_eq!(
            cc.replication,
            crate::store::cassandra::Replication::Simple(3)
        );
        let bad = Config::from_toml("[store]\nurl = \"mysql://x\"", Path::new("t.toml")).unwrap();
        assert!(bad.validate().is_err());
        assert_eq!(
            Config::default().effective_node_id(),
            format!("{}:5060", Config::default().advertised_host())
        );
    }

    #[test]
    fn validate_rejects_nonsense() {
        let mut c = Config::default();
        c.udp.recv_batch = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.server.transports.clear();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.registrar.min_expires = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.registrar.trusted_peers = vec!["10.0.0.0/99".into()];
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.auth.algorithms = vec!["SHA-1".into()];
        assert!(c.validate().is_err());
    }

    #[test]
    fn registrar_and_auth_sections() {
        let c = Config::from_toml(
            "[registrar]\ndomains = [\"example.com\"]\ntrusted_peers = [\"10.0.0.0/8\"]\nmin_expires = 30\n\
             [auth]\nsecret = \"0123456789abcdef\"\nalgorithms = [\"SHA-256\", \"MD5\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.registrar.domains, vec!["example.com"]);
        assert_eq!(c.registrar.min_expires, 30);
        assert_eq!(c.auth.algorithms, vec!["SHA-256", "MD5"]);
        assert!(c.registrar.enabled && c.registrar.authenticate_requests);
    }
}
