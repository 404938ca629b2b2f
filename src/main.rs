//! The `sipring` command line: `sipring serve` runs the proxy.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use prometheus_client::collector::Collector;
use sipring::cli::{Cli, Command, ServeArgs};
use sipring::config::Config;
use sipring::engine::{CoreContext, Engine};
use sipring::proxy::{ProxyEngine, ProxySettings};
use sipring::registrar::{IpNet, Registrar, RegistrarSettings};
use sipring::relay::BlindRelay;
use sipring::store::cassandra::{CassandraDialogs, CassandraStore, ProxyInfo};
use sipring::store::embedded::{EmbeddedStore, OpenError};
use sipring::store::{Store, StoreSelection};
use sipring::users::{ADMIN_SOCKET, AdminServer};
use sipring::{metrics, shell};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::User(args) => {
            let mut out = std::io::stdout().lock();
            match sipring::users::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sipring user: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match args.load_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let next_hop = match config.proxy.forward_to.as_deref().map(resolve).transpose() {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("forward_to: {e}");
            return ExitCode::from(2);
        }
    };
    let cassandra = match open_cassandra(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    // Metrics families beyond the cores' counters.
    let mut extra: Vec<Arc<dyn Collector>> = Vec::new();
    if let Some(store) = &cassandra {
        extra.push(store.stats().clone());
    }
    // The blind relay baseline (`--relay`): no registrar, no embedded store
    // (with Cassandra the node is still announced).
    if let (true, Some(hop)) = (args.relay, next_hop) {
        let code = run(&config, &extra, None, move |ctx| BlindRelay::new(ctx, hop));
        if let Some(store) = cassandra {
            close_cassandra(store, &config);
        }
        return code;
    }
    // The embedded store, the default, when the registrar needs a store.
    let embedded = match (&cassandra, config.registrar.enabled) {
        (None, true) => match open_embedded(&config) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };
    let store: Option<Arc<dyn Store>> = match (&cassandra, &embedded) {
        (Some(c), _) => Some(Arc::new(c.clone())),
        (None, Some(e)) => Some(Arc::new(e.clone())),
        (None, None) => None,
    };
    // `sipring user ...` reaches the embedded store through this socket
    // while the server holds it.
    let admin = match (&embedded, &store) {
        (Some(_), Some(s)) => {
            let path = config.server.data_dir.join(ADMIN_SOCKET);
            match AdminServer::start(&path, s.clone()) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(
                        "admin socket {}: {e}; sipring user cannot reach this server",
                        path.display()
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let registrar = match config.registrar.enabled {
        true => match registrar_settings(&config, next_hop.is_some(), cassandra.is_some()) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        },
        false => None,
    };
    let settings = ProxySettings::from_config(&config, next_hop);
    // With Cassandra, each core persists its dialogs (docs/storage.md).
    let dialogs = cassandra.clone().map(|s| (s, config.effective_node_id()));
    let services = registrar.zip(store.as_ref().map(|s| s.epochs()));
    if let Some((r, _)) = &services {
        tracing::info!(domains = ?r.domains, "registrar on");
    }
    let code = run(&config, &extra, store.clone(), move |ctx| {
        let core = ctx.core;
        let mut engine = ProxyEngine::new(ctx, settings.clone());
        if let Some((cfg, epochs)) = &services {
            let seed = settings.seed ^ u64::from(core).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            engine.set_services(Box::new(Registrar::new(
                cfg.clone(),
                epochs.clone(),
                core,
                seed,
            )));
        }
        if let Some((store, node)) = &dialogs {
            engine.set_dialog_sink(Box::new(CassandraDialogs::new(store, node, core)));
        }
        engine
    });
    drop(admin);
    drop(store);
    if let Some(e) = embedded {
        e.close();
    }
    if let Some(store) = cassandra {
        close_cassandra(store, &config);
    }
    code
}

/// The embedded store in `server.data_dir`.
fn open_embedded(config: &Config) -> Result<EmbeddedStore, String> {
    let dir = &config.server.data_dir;
    let store =
        EmbeddedStore::open_with(dir, config.store.embedded_options()).map_err(|e| match e {
            OpenError::Locked(p) => format!(
                "{}: another sipring serve holds this store (--data-dir picks another)",
                p.display()
            ),
            e => e.to_string(),
        })?;
    tracing::info!(file = %store.path().display(), "embedded store ready");
    Ok(store)
}

/// The registrar's settings from `[registrar]`, `[auth]` and `[server]`.
fn registrar_settings(
    config: &Config,
    next_hop: bool,
    cluster: bool,
) -> Result<RegistrarSettings, String> {
    let r = &config.registrar;
    let mut domains = vec![config.effective_domain(), config.advertised_host()];
    domains.extend(r.domains.iter().cloned());
    let ip = config.server.listen.ip();
    if !ip.is_unspecified() {
        domains.push(ip.to_string());
    }
    for d in &mut domains {
        d.make_ascii_lowercase();
    }
    domains.sort();
    domains.dedup();
    let trusted = r
        .trusted_peers
        .iter()
        .map(|p| IpNet::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let algorithms = config
        .auth
        .algorithms
        .iter()
        .filter_map(|a| sipring::auth::Algorithm::parse(Some(a.as_bytes())))
        .collect();
    let node_id = config.effective_node_id();
    let wall_base_ms = sipring::store::wall_ms();
    let auth = sipring::auth::AuthSettings {
        secret: nonce_secret(config)?,
        nonce_ttl: Duration::from_secs(config.auth.nonce_ttl_secs),
        algorithms,
        max_nonces: config.auth.max_nonces,
        node: sipring_ring::key_id(node_id.as_bytes()) as u32,
        wall_base_ms,
    };
    let ttl = match r.cache_ttl_secs {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None if cluster => Some(Duration::from_secs(5)),
        None => None,
    };
    Ok(RegistrarSettings {
        domains,
        rules: sipring::registrar::register::Rules {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
            max_contacts: r.max_contacts,
        },
        trusted,
        authenticate_requests: r.authenticate_requests,
        next_hop,
        auth,
        node_id,
        cache_ttl: ttl,
        max_pending: r.max_pending,
        registrations_per_tick: r.registrations_per_tick,
        wall_base_ms,
        ..RegistrarSettings::default()
    })
}

/// The nonce secret: `auth.secret`, else the one kept in
/// `<data_dir>/nonce-secret` (made from /dev/urandom the first time, mode
/// 0600), so nonces survive a restart.
fn nonce_secret(config: &Config) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(s) = &config.auth.secret {
        return Ok(s.as_bytes().to_vec());
    }
    let dir = &config.server.data_dir;
    let path = dir.join("nonce-secret");
    if let Ok(s) = std::fs::read(&path) {
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, &secret).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(secret.to_vec())
}

/// The Cassandra store when `--store cassandra://...` selects it: connected
/// and its schema created before serving, this node announced in `proxies`
/// with a heartbeat every 5 s.
fn open_cassandra(config: &Config) -> Result<Option<CassandraStore>, String> {
    let StoreSelection::Cassandra(c) = config.store_selection().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let hosts = c.hosts.clone();
    let store = CassandraStore::connect(c).map_err(|e| format!("store {hosts:?}: {e}"))?;
    let host = config.advertised_host();
    let port = config.server.listen.port();
    let now = sipring::store::cassandra::wall_ms();
    let me = ProxyInfo {
        node_id: config.effective_node_id(),
        addresses: config
            .server
            .transports
            .iter()
            .map(|t| format!("{}:{host}:{port}", format!("{t:?}").to_lowercase()))
            .collect(),
        cores: config.effective_cores(),
        ring_ids: Vec::new(),
        started_at_ms: now,
        heartbeat_ms: now,
        load: 0.0,
    };
    let node = me.node_id.clone();
    futures_lite::future::block_on(store.announce(me, Duration::from_secs(5), || 0.0))
        .map_err(|e| format!("announcing {node}: {e}"))?;
    tracing::info!(node = %node, keyspace = %store.config().keyspace, "cassandra store ready");
    Ok(Some(store))
}

/// Retracts this node from `proxies` and stops the storage thread.
fn close_cassandra(store: CassandraStore, config: &Config) {
    let node = config.effective_node_id();
    if let Err(e) = futures_lite::future::block_on(store.delete_proxy(&node)) {
        tracing::warn!("retracting {node}: {e}");
    }
    store.shutdown(Duration::from_secs(5));
}

fn resolve(hostport: &str) -> std::io::Result<SocketAddr> {
    hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{hostport} does not resolve")))
}

/// Start the shell with `factory` (and `store` for the engines' store
/// requests), serve until SIGINT/SIGTERM, drain, exit 0. A second signal
/// during the drain exits at once with status 1.
fn run<F, E>(
    config: &Config,
    extra: &[Arc<dyn Collector>],
    store: Option<Arc<dyn Store>>,
    factory: F,
) -> ExitCode
where
    F: Fn(CoreContext) -> E + Send + Sync + 'static,
    E: Engine + 'static,
{
    let handle = match shell::start_with_store(config, store, factory) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    let stop = handle.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The conditional handler first: it fires only once `stop` is set,
        // i.e. on the second signal.
        let r = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = r {
            tracing::error!("installing signal handlers: {e}");
            handle.stop();
            let _ = handle.join();
            return ExitCode::from(1);
        }
    }
    let _metrics = match config.metrics.listen {
        Some(addr) => match metrics::serve_with(addr, handle.counters().to_vec(), extra.to_vec()) {
            Ok(m) => {
                tracing::info!(addr = %m.addr(), "metrics endpoint at /metrics");
                Some(m)
            }
            Err(e) => {
                tracing::error!("{e}");
                handle.stop();
                let _ = handle.join();
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    for a in handle.addrs() {
        tracing::info!(
            core = a.core,
            public_udp = ?a.public_udp,
            public_tcp = ?a.public_tcp,
            private_udp = ?a.private_udp,
            private_tcp = ?a.private_tcp,
            "listening"
        );
    }
    match handle.join() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}
