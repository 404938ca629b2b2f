//! The `sipring` command line: `sipring serve` runs the proxy.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use clap::Parser;
use sipring::cli::{Cli, Command, ServeArgs};
use sipring::config::Config;
use sipring::engine::{CoreContext, Engine};
use sipring::relay::BlindRelay;
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
    // The engine each core runs. When ProxyEngine lands, the `else` branch
    // becomes `run(&config, move |ctx| ProxyEngine::new(ctx, &proxy_config, seed))`.
    match next_hop {
        Some(hop) if args.relay => run(&config, move |ctx| BlindRelay::new(ctx, hop)),
        Some(hop) => {
            tracing::warn!(
                "the stateful proxy engine is not wired into `serve` yet: running the blind relay"
            );
            run(&config, move |ctx| BlindRelay::new(ctx, hop))
        }
        None => {
            tracing::error!(
                "the stateful proxy engine is not wired into `serve` yet: give --forward-to"
            );
            ExitCode::from(2)
        }
    }
}

fn resolve(hostport: &str) -> std::io::Result<SocketAddr> {
    hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{hostport} does not resolve")))
}

/// Start the shell with `factory`, serve until SIGINT/SIGTERM, drain, exit 0.
/// A second signal during the drain exits at once with status 1.
fn run<F, E>(config: &Config, factory: F) -> ExitCode
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
        Some(addr) => match metrics::serve(addr, handle.counters().to_vec()) {
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
