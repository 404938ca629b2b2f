//! `sipring-bench`: the sipp load and latency harness (see
//! `bench/results/README.md` for how to read what it writes).
//!
//! ```text
//! sipring-bench run   --targets kamailio,relay-std,relay-glommio --scenarios invite --rate 2000 --duration 10 --repeats 3
//! sipring-bench ramp  --targets kamailio,relay-std,relay-glommio --scenarios invite --start 1000 --step 1000 --max-rate 8000
//! sipring-bench report bench/results/DIR
//! sipring-bench relay --runtime glommio --listen .. --upstream-bind .. --forward-to .. --client ..
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use sipring_bench::install;
use sipring_bench::process;
use sipring_bench::procfs::Machine;
use sipring_bench::relay::{self, RelayConfig};
use sipring_bench::report::{self, Criteria, Meta, RunRecord};
use sipring_bench::runner::{self, Harness};
use sipring_bench::scenario::{self, Scenario, Transport};
use sipring_bench::target::{TargetKind, TargetSettings};

#[derive(Parser, Debug)]
#[command(
    name = "sipring-bench",
    version,
    about = "sipp load and latency harness: sipring vs Kamailio vs a blind relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fixed rate for a duration, targets in turn, repeated.
    Run {
        #[command(flatten)]
        common: Common,
        /// Calls (or registrations) per second.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Rounds of A B C ... alternation.
        #[arg(long, default_value_t = 3)]
        repeats: u32,
    },
    /// Raise the rate step by step until a target stops being clean.
    Ramp {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        start: u32,
        #[arg(long, default_value_t = 1000)]
        step: u32,
        #[arg(long, default_value_t = 10000)]
        max_rate: u32,
        /// At most this many steps.
        #[arg(long, default_value_t = 20)]
        max_steps: u32,
        /// Seconds of load per step.
        #[arg(long, default_value_t = 5)]
        step_duration: u64,
        #[arg(long, default_value_t = 1)]
        repeats: u32,
    },
    /// Rebuild summary.md, summary.json and the plots of a results directory.
    Report {
        /// A directory written by `run` or `ramp`.
        dir: PathBuf,
    },
    /// Run a blind relay (started by the harness for relay-std/relay-glommio).
    Relay(RelayArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Comma-separated: kamailio, kamailio-stateless, relay-std, relay-glommio,
    /// sipring, sipring-relay.
    #[arg(
        long,
        default_value = "kamailio,relay-std,relay-glommio",
        value_delimiter = ','
    )]
    targets: Vec<String>,
    /// Comma-separated: invite, invite-tcp, cancel, cancel-tcp, register, register-tcp.
    #[arg(long, default_value = "invite", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Output directory (default bench/results/<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Fail instead of installing a missing sipp or Kamailio with apt.
    #[arg(long)]
    no_install: bool,
    /// Call hold time between ACK and BYE, ms.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Users generated for the registration scenarios.
    #[arg(long, default_value_t = 1000)]
    users: u32,
    #[arg(long, default_value_t = 2)]
    kamailio_children: u32,
    #[arg(long, default_value_t = 2)]
    kamailio_tcp_children: u32,
    #[arg(long, default_value_t = 1024)]
    kamailio_shm_mb: u32,
    #[arg(long, default_value_t = 32)]
    kamailio_pkg_mb: u32,
    /// CPU the glommio relay is pinned to, or "none" (unbound).
    #[arg(long, default_value = "0", value_parser = parse_core)]
    relay_core: CorePin,
    /// Receives outstanding per socket in the glommio relay.
    #[arg(long, default_value_t = 1)]
    glommio_recv_depth: usize,
    /// glommio relay: spin this many µs before parking (0: never).
    #[arg(long, default_value_t = 0)]
    glommio_spin_us: u64,
    /// glommio relay: bytes asked of each receive (SIP over UDP fits in
    /// 64 KiB; glommio allocates that much per receive through io_uring).
    #[arg(long, default_value_t = 65_535)]
    glommio_recv_buffer: usize,
    /// The sipring binary (default: target/release/sipring of this workspace).
    #[arg(long)]
    sipring_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    sipring_cores: u32,
    /// Extra argument for `sipring serve` (repeatable).
    #[arg(long = "sipring-serve-arg", allow_hyphen_values = true)]
    sipring_serve_args: Vec<String>,
    /// Extra argument for `sipring user add` (repeatable).
    #[arg(long = "sipring-user-arg", allow_hyphen_values = true)]
    sipring_user_args: Vec<String>,
    /// Ramp: failed calls above this percentage end a target's ramp.
    #[arg(long, default_value_t = 0.1)]
    max_failed_pct: f64,
    /// Ramp: p99 latency above this (ms) ends a target's ramp.
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// Ramp: sipp starting fewer calls than this fraction of the offered rate
    /// ends the ramp (the generator is the limit).
    #[arg(long, default_value_t = 0.9)]
    min_achieved: f64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Runtime {
    Std,
    Glommio,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
}

#[derive(Args, Debug)]
struct RelayArgs {
    #[arg(long, value_enum)]
    runtime: Runtime,
    #[arg(long, value_enum, default_value = "udp")]
    transport: TransportArg,
    /// Caller-facing address.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Callee-facing local address (UDP).
    #[arg(long, default_value = "127.0.0.1:0")]
    upstream_bind: std::net::SocketAddr,
    /// The callee.
    #[arg(long)]
    forward_to: std::net::SocketAddr,
    /// The caller (UDP): where the callee's packets go.
    #[arg(long)]
    client: Option<std::net::SocketAddr>,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    lifetime_s: u64,
    /// glommio: pin the executor to this CPU.
    #[arg(long)]
    core: Option<usize>,
    /// glommio: receives outstanding per socket.
    #[arg(long, default_value_t = 1)]
    recv_depth: usize,
    /// glommio: spin before parking, µs.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// glommio: bytes asked of each receive.
    #[arg(long, default_value_t = relay::MAX_DATAGRAM)]
    recv_buffer: usize,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic
/// Gregorian), without a date crate.
fn utc_timestamp(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A CPU to pin to, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CorePin(Option<usize>);

fn parse_core(s: &str) -> Result<CorePin, String> {
    if s == "none" {
        return Ok(CorePin(None));
    }
    s.parse()
        .map(|c| CorePin(Some(c)))
        .map_err(|_| format!("{s:?} is neither a CPU number nor \"none\""))
}

fn parse_targets(names: &[String]) -> Result<Vec<TargetKind>> {
    names
        .iter()
        .map(|n| TargetKind::by_name(n.trim()))
        .collect()
}

fn parse_scenarios(names: &[String]) -> Result<Vec<Scenario>> {
    names.iter().map(|n| Scenario::by_name(n.trim())).collect()
}

struct Setup {
    harness: Harness,
    meta: Meta,
    targets: Vec<TargetKind>,
    scenarios: Vec<Scenario>,
}

fn setup(common: &Common) -> Result<Setup> {
    let targets = parse_targets(&common.targets)?;
    let scenarios = parse_scenarios(&common.scenarios)?;
    if targets.is_empty() || scenarios.is_empty() {
        bail!("nothing to run: give --targets and --scenarios");
    }
    let install = !common.no_install;
    let sipp_bin = install::ensure("sipp", "sip-tester", install)?;
    let wants_kamailio = targets
        .iter()
        .any(|t| matches!(t, TargetKind::Kamailio | TargetKind::KamailioStateless));
    let kamailio_bin = if wants_kamailio {
        install::ensure("kamailio", "kamailio", install)?
    } else {
        install::which("kamailio").unwrap_or_else(|| PathBuf::from("kamailio"))
    };
    let bench_dir = scenario::bench_dir();
    let started_unix = now_unix();
    let started = utc_timestamp(started_unix);
    let out = match &common.out {
        Some(p) => p.clone(),
        None => bench_dir.join("results").join(
            started
                .replace([':', '-'], "")
                .trim_end_matches('Z')
                .replace('T', "-"),
        ),
    };
    let settings = TargetSettings {
        kamailio_bin: kamailio_bin.clone(),
        kamailio_children: common.kamailio_children,
        kamailio_tcp_children: common.kamailio_tcp_children,
        kamailio_shm_mb: common.kamailio_shm_mb,
        kamailio_pkg_mb: common.kamailio_pkg_mb,
        relay_exe: std::env::current_exe().context("locating sipring-bench itself")?,
        relay_core: common.relay_core.0,
        glommio_recv_depth: common.glommio_recv_depth,
        glommio_spin_us: common.glommio_spin_us,
        glommio_recv_buffer: common.glommio_recv_buffer,
        sipring_bin: common.sipring_bin.clone().unwrap_or_else(|| {
            bench_dir.parent().map_or_else(
                || PathBuf::from("sipring"),
                |w| w.join("target/release/sipring"),
            )
        }),
        sipring_cores: common.sipring_cores,
        sipring_serve_args: common.sipring_serve_args.clone(),
        sipring_user_args: common.sipring_user_args.clone(),
    };
    let criteria = Criteria {
        max_failed_pct: common.max_failed_pct,
        max_p99_ms: common.max_p99_ms,
        min_achieved_fraction: common.min_achieved,
    };
    let machine = Machine::detect();
    let mut notes = Vec::new();
    if machine.loadavg_at_start > 1.0 {
        notes.push(format!(
            "the machine was not quiet when the run started (load average {:.2}): \
             other work shared the cores",
            machine.loadavg_at_start
        ));
    }
    let meta = Meta {
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        started,
        machine,
        sipp_version: install::version_line(&sipp_bin, "-v", "SIPp"),
        kamailio_version: if wants_kamailio {
            install::version_line(&kamailio_bin, "-v", "version:")
                .trim_start_matches("version:")
                .trim()
                .to_owned()
        } else {
            "kamailio not used".to_owned()
        },
        settings: settings.clone(),
        criteria,
        notes,
    };
    let harness = Harness::new(
        out,
        sipp_bin,
        settings,
        criteria,
        common.hold_ms,
        common.users,
    )?;
    std::fs::write(
        harness.out_dir.join("meta.json"),
        serde_json::to_string_pretty(&meta)?,
    )?;
    Ok(Setup {
        harness,
        meta,
        targets,
        scenarios,
    })
}

/// Writes the report even when the runs were cut short, then returns the
/// outcome of the runs.
fn finish(s: &Setup, outcome: Result<()>) -> Result<()> {
    if s.harness.records.is_empty() {
        return outcome;
    }
    let mut meta = s.meta.clone();
    if outcome.is_err() {
        meta.notes
            .push("the invocation was cut short: the tables hold only the runs completed".into());
    }
    let md = s.harness.write_report(&meta)?;
    let _ = writeln!(std::io::stdout().lock(), "{md}");
    eprintln!(
        "sipring-bench: report written to {}",
        s.harness.out_dir.display()
    );
    outcome
}

fn load_dir(dir: &std::path::Path) -> Result<(Meta, Vec<RunRecord>)> {
    let meta: Meta = serde_json::from_str(
        &std::fs::read_to_string(dir.join("meta.json"))
            .with_context(|| format!("{} has no meta.json", dir.display()))?,
    )?;
    let mut runs = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("run.json")))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for p in entries {
        runs.push(
            serde_json::from_str(&std::fs::read_to_string(&p)?)
                .with_context(|| format!("parsing {}", p.display()))?,
        );
    }
    Ok((meta, runs))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Relay(a) => {
            let cfg = RelayConfig {
                transport: match a.transport {
                    TransportArg::Udp => Transport::Udp,
                    TransportArg::Tcp => Transport::Tcp,
                },
                listen: a.listen,
                upstream_bind: a.upstream_bind,
                forward_to: a.forward_to,
                client: a.client,
                lifetime: Duration::from_secs(a.lifetime_s),
                core: a.core,
                recv_depth: a.recv_depth,
                spin_before_park: (a.spin_us > 0).then(|| Duration::from_micros(a.spin_us)),
                recv_buffer: a.recv_buffer,
            };
            match a.runtime {
                Runtime::Std => relay::std_net::run(&cfg),
                Runtime::Glommio => relay::glommio_net::run(&cfg),
            }
        }
        Cmd::Report { dir } => {
            let (meta, runs) = load_dir(&dir)?;
            let fixed = report::fixed_rows(&runs)?;
            let ramps = report::ramp_rows(&runs, &meta.criteria);
            let md = runner::write_report(&dir, &meta, &runs, &fixed, &ramps)?;
            let _ = writeln!(std::io::stdout().lock(), "{md}");
            Ok(())
        }
        Cmd::Run {
            common,
            rate,
            duration,
            repeats,
        } => {
            process::install_signal_handlers()?;
            let mut s = setup(&common)?;
            let (targets, scenarios) = (s.targets.clone(), s.scenarios.clone());
            let outcome = s.harness.fixed(
                &targets,
                &scenarios,
                rate,
                Duration::from_secs(duration.max(1)),
                repeats.max(1),
            );
            finish(&s, outcome)
        }
        Cmd::Ramp {
            common,
            start,
            step,
            max_rate,
            max_steps,
            step_duration,
            repeats,
        } => {
            process::install_signal_handlers()?;
            let rates: Vec<u32> = (0..max_steps)
                .map(|k| start.saturating_add(k.saturating_mul(step)))
                .take_while(|&r| r <= max_rate)
                .collect();
            if rates.is_empty() {
                bail!("no ramp steps: --start must be <= --max-rate");
            }
            let mut s = setup(&common)?;
            let (targets, scenarios) = (s.targets.clone(), s.scenarios.clone());
            let outcome = s.harness.ramp(
                &targets,
                &scenarios,
                &rates,
                Duration::from_secs(step_duration.max(1)),
                repeats.max(1),
            );
            finish(&s, outcome)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipring-bench: error: {e:#}");
            if process::interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_559_610), "2026-11-24T22:33:30Z");
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from([
            "sipring-bench",
            "run",
            "--targets",
            "kamailio,relay-std",
            "--rate",
            "50",
            "--sipring-serve-arg=--config",
            "--sipring-serve-arg",
            "x.toml",
        ])
        .unwrap();
        let Cmd::Run { common, rate, .. } = c.command else {
            panic!("not run")
        };
        assert_eq!(rate, 50);
        assert_eq!(parse_targets(&common.targets).unwrap().len(), 2);
        assert_eq!(common.sipring_serve_args, ["--config", "x.toml"]);
        assert!(parse_targets(&["nope".to_owned()]).is_err());
        assert_eq!(common.relay_core, CorePin(Some(0)));
        assert_eq!(parse_core("none"), Ok(CorePin(None)));
        assert!(parse_core("x").is_err());
    }
}
