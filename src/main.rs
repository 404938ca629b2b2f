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
use sipring::relay::BlindRelay;
use sipring::store::StoreSelection;
use sipring::store::cassandra::{CassandraDialogs, CassandraStore, ProxyInfo};
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
    // The engine each core runs: the stateful proxy, or the blind relay
    // baseline (`--relay`).
    let code = match next_hop {
        Some(hop) if args.relay => run(&config, &extra, move |ctx| BlindRelay::new(ctx, hop)),
        _ => {
            let settings = ProxySettings::from_config(&config, next_hop);
            // With Cassandra, each core persists its dialogs (docs/storage.md).
            let dialogs = cassandra.clone().map(|s| (s, config.effective_node_id()));
            run(&config, &extra, move |ctx| {
                let core = ctx.core;
                let mut engine = ProxyEngine::new(ctx, settings.clone());
                if let Some((store, node)) = &dialogs {
                    engine.set_dialog_sink(Box::new(CassandraDialogs::new(store, node, core)));
                }
                engine
            })
        }
    };
    if let Some(store) = cassandra {
        close_cassandra(store, &config);
    }
    code
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

/// Start the shell with `factory`, serve until SIGINT/SIGTERM, drain, exit 0.
/// A second signal during the drain exits at once with status 1.
fn run<F, E>(config: &Config, extra: &[Arc<dyn Collector>], factory: F) -> ExitCode
where
    F: Fn(CoreContext) -> E + Send + Sync + 'static,
    E: Engine + 'static,
{
    let handle = match shell::start(config, factory) {
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
