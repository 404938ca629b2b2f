//! Runs targets under sipp load and records what happened: one run at a time
//! (callee, target, caller started fresh, measured, stopped), fixed-rate
//! comparisons with the targets in turn (A B A B ...), and ramps.
//!
//! Layout of a run directory (`<out>/runs/NNN-target-scenario-rate/`): the
//! sipp stat and rtt files, the target's and sipp's logs, and `run.json`.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::resource::{UsageWho, getrusage};

use crate::plot;
use crate::process::{self, ProcessGuard};
use crate::procfs::{self, CpuSample, RssSample, SocketKind, UdpErrors};
use crate::report::{
    self, Calls, Criteria, FixedRow, Meta, Mode, RampRow, Retransmissions, RunRecord, Usage,
};
use crate::scenario::{Scenario, Transport};
use crate::sipp::{self, UacArgs};
use crate::stats;
use crate::target::{self, TargetEnv, TargetKind, TargetSettings};
use crate::users::{self, Users};

/// Loopback only.
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Picks `n` distinct loopback ports free for both UDP and TCP (Kamailio
/// listens on both). The probe sockets are held until all are chosen.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let (first, mut rest) = reserve_ports(1, n.saturating_sub(1))?;
    rest.insert(0, first);
    Ok(rest)
}

/// Ports this process has handed out. Once a choice returns, its probe
/// sockets close, and the kernel may give the same port to the next
/// `bind(0)` of a concurrent caller (tests run in parallel threads): a
/// port is never handed out twice.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn handed_out() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u16>> {
    HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bind_both(port: u16) -> Option<(TcpListener, UdpSocket)> {
    let tcp = TcpListener::bind((LOCALHOST, port)).ok()?;
    if handed_out().contains(&tcp.local_addr().ok()?.port()) {
        return None;
    }
    let udp = UdpSocket::bind((LOCALHOST, tcp.local_addr().ok()?.port())).ok()?;
    Some((tcp, udp))
}

/// Picks a block of `block` consecutive loopback ports (sipring binds a
/// private port per core after its public one) and `extra` other ports, all
/// free for UDP and TCP and distinct. Returns the block's first port.
pub fn reserve_ports(block: usize, extra: usize) -> Result<(u16, Vec<u16>)> {
    let mut held = Vec::new();
    let mut first = None;
    for _ in 0..200 {
        let Some(probe) = bind_both(0) else { continue };
        let p = probe.0.local_addr()?.port();
        let mut block_held = vec![probe];
        for q in 1..block {
            let Some(next) = p.checked_add(q as u16).and_then(bind_both) else {
                break;
            };
            block_held.push(next);
        }
        if block_held.len() == block.max(1) {
            held.extend(block_held);
            first = Some(p);
            break;
        }
    }
    let first = first.with_context(|| format!("no {block} consecutive free loopback ports"))?;
    let mut ports = Vec::new();
    for _ in 0..(extra + 1) * 20 {
        if ports.len() == extra {
            break;
        }
        if let Some(s) = bind_both(0) {
            ports.push(s.0.local_addr()?.port());
            held.push(s);
        }
    }
    if ports.len() < extra {
        bail!("could not find {extra} free loopback ports");
    }
    let mut handed = handed_out();
    handed.extend((0..block.max(1)).map(|q| first + q as u16));
    handed.extend(ports.iter().copied());
    Ok((first, ports))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((LOCALHOST, port))
}

/// One run to make.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    pub target: TargetKind,
    pub scenario: &'a Scenario,
    pub rate: u32,
    pub duration: Duration,
    pub mode: Mode,
    pub repeat: u32,
    pub step: Option<u32>,
}

/// The harness of one invocation: settings, output directory, records.
#[derive(Debug)]
pub struct Harness {
    pub out_dir: PathBuf,
    pub bench_dir: PathBuf,
    pub sipp_bin: PathBuf,
    pub settings: TargetSettings,
    pub criteria: Criteria,
    /// Call hold time between ACK and BYE, ms.
    pub hold_ms: u64,
    /// Users generated for the registration scenarios.
    pub user_count: u32,
    users: Option<Users>,
    runs: u32,
    pub records: Vec<RunRecord>,
}

fn cpu_seconds_of_children() -> f64 {
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => f64::NAN,
    }
}

fn rtt_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_rtt.csv"))
        .collect();
    v.sort();
    Ok(v)
}

fn spawn_logged(name: &str, mut cmd: Command, log: &Path) -> Result<ProcessGuard> {
    let f = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
    ProcessGuard::spawn(name, cmd)
}

fn socket_kind(t: Transport) -> SocketKind {
    match t {
        Transport::Udp => SocketKind::Udp,
        Transport::Tcp => SocketKind::TcpListen,
    }
}

impl Harness {
    pub fn new(
        out_dir: PathBuf,
        sipp_bin: PathBuf,
        settings: TargetSettings,
        criteria: Criteria,
        hold_ms: u64,
        user_count: u32,
    ) -> Result<Self> {
        fs::create_dir_all(out_dir.join("runs"))
            .with_context(|| format!("creating {}", out_dir.display()))?;
        // Absolute: targets and sipp run in their own run directories, where
        // a relative path (the users file, Kamailio's runtime dir) breaks.
        let out_dir = fs::canonicalize(&out_dir)
            .with_context(|| format!("resolving {}", out_dir.display()))?;
        Ok(Self {
            out_dir,
            bench_dir: crate::scenario::bench_dir(),
            sipp_bin,
            settings,
            criteria,
            hold_ms,
            user_count,
            users: None,
            runs: 0,
            records: Vec::new(),
        })
    }

    fn users(&mut self) -> Result<Users> {
        if self.users.is_none() {
            self.users = Some(users::generate(
                &self.out_dir.join("users"),
                self.user_count,
            )?);
        }
        Ok(self.users.clone().expect("just generated"))
    }

    /// Makes one run and records it. A target that fails is recorded with its
    /// error; only an interrupt (or an I/O error of the harness) is an `Err`.
    pub fn run_once(&mut self, spec: &RunSpec<'_>) -> Result<RunRecord> {
        process::check_interrupted()?;
        self.runs += 1;
        let run_dir = self.out_dir.join("runs").join(format!(
            "{:03}-{}-{}-{}",
            self.runs, spec.target, spec.scenario.name, spec.rate
        ));
        fs::create_dir_all(&run_dir)?;
        eprintln!(
            "sipring-bench: run {:3}: {} {} {} calls/s for {} s{} ...",
            self.runs,
            spec.target,
            spec.scenario.name,
            spec.rate,
            spec.duration.as_secs_f64(),
            spec.step
                .map_or(String::new(), |s| format!(" (ramp step {s})")),
        );
        let record = match self.measure(spec, &run_dir) {
            Ok(r) => r,
            Err(e) if process::interrupted() => return Err(e),
            Err(e) => {
                let msg = format!("{e:#}");
                eprintln!("sipring-bench:   failed: {msg}");
                self.empty_record(spec, &run_dir, msg)
            }
        };
        if record.error.is_none() {
            eprintln!(
                "sipring-bench:   {}/{} ok, {} failed, {} retransmissions, {} UDP drops, \
                 {:.1} µs CPU/call, p99 {} ms",
                record.calls.successful,
                record.calls.attempted,
                record.calls.failed,
                record.retransmissions.uac + record.retransmissions.uas,
                record.udp_socket_drops.values().sum::<u64>(),
                record.target_usage.cpu_us_per_call.unwrap_or(f64::NAN),
                record.latency.p99_ms
            );
            if !record.udp_socket_drops.is_empty() {
                eprintln!(
                    "sipring-bench:   UDP drops by socket: {:?}",
                    record.udp_socket_drops
                );
            }
        }
        fs::write(
            run_dir.join("run.json"),
            serde_json::to_string_pretty(&record)?,
        )?;
        self.records.push(record.clone());
        Ok(record)
    }

    fn empty_record(&self, spec: &RunSpec<'_>, run_dir: &Path, error: String) -> RunRecord {
        RunRecord {
            target: spec.target,
            scenario: spec.scenario.name.to_owned(),
            transport: spec.scenario.transport,
            mode: spec.mode,
            repeat: spec.repeat,
            step: spec.step,
            offered_rate: spec.rate,
            achieved_rate: None,
            duration_s: spec.duration.as_secs_f64(),
            wall_s: 0.0,
            calls: Calls::default(),
            failed_by_reason: Default::default(),
            retransmissions: Retransmissions::default(),
            udp_errors: UdpErrors::default(),
            udp_socket_drops: Default::default(),
            target_usage: Usage::default(),
            sipp_cpu_us_per_call: None,
            latency: Default::default(),
            latency_by_rtd: Default::default(),
            latency_hist: Vec::new(),
            sipp_exit_code: None,
            loadavg_before: procfs::loadavg(),
            target_command: String::new(),
            uac_command: String::new(),
            run_dir: run_dir.display().to_string(),
            error: Some(error),
        }
    }

    fn measure(&mut self, spec: &RunSpec<'_>, run_dir: &Path) -> Result<RunRecord> {
        let sc = spec.scenario;
        if !spec.target.supports(sc) {
            bail!("target {} does not play scenario {}", spec.target, sc.name);
        }
        let users = if sc.flow == crate::scenario::Flow::Register {
            Some(self.users()?)
        } else {
            None
        };
        // The listen port is followed by sipring's private ports, one per core.
        let (first, ports) = reserve_ports(1 + self.settings.sipring_cores as usize, 3)?;
        let (listen, upstream, uas_addr, uac_addr) = (
            loopback(first),
            loopback(ports[0]),
            loopback(ports[1]),
            loopback(ports[2]),
        );
        let run_limit = spec.duration * 2 + Duration::from_secs(40);

        // The callee first, so the target finds it.
        let mut uas = None;
        if spec.target.needs_uas(sc) {
            let mut c = Command::new(&self.sipp_bin);
            c.args(sipp::uas_args(
                &sc.uas_path(&self.bench_dir),
                uas_addr,
                sc.transport,
                &run_dir.join("uas_stat.csv"),
            ))
            .current_dir(run_dir);
            let mut g = spawn_logged("sipp uas", c, &run_dir.join("uas.log"))?;
            let mut exited = None;
            let up = process::wait_until(Duration::from_secs(10), || {
                exited = g.try_status()?;
                Ok(exited.is_some()
                    || procfs::port_bound(uas_addr.port(), socket_kind(sc.transport)))
            })?;
            if let Some(st) = exited {
                bail!(
                    "sipp uas exited at startup ({st}); see {}",
                    run_dir.join("uas.log").display()
                );
            }
            if !up {
                bail!("sipp uas did not bind {uas_addr} within 10 s");
            }
            uas = Some(g);
        }

        let env = TargetEnv {
            scenario: sc,
            listen,
            relay_upstream: upstream,
            uas: spec.target.needs_uas(sc).then_some(uas_addr),
            client: uac_addr,
            run_dir,
            users: users.as_ref(),
            lifetime: run_limit + Duration::from_secs(30),
        };
        let mut running = target::start(spec.target, &env, &self.settings)?;
        let pgid = running.guard.pid();

        let calls = u64::from(spec.rate) * spec.duration.as_secs().max(1);
        let uac_stat = run_dir.join("uac_stat.csv");
        let uac_args = sipp::uac_args(&UacArgs {
            target: listen,
            scenario: &sc.uac_path(&self.bench_dir),
            local: uac_addr,
            transport: sc.transport,
            rate: spec.rate,
            calls,
            hold_ms: self.hold_ms,
            inf: users.as_ref().map(|u| u.sipp_inf.as_path()),
            stat_file: &uac_stat,
            timeout_s: run_limit.as_secs(),
        });
        let uac_command = format!("{} {}", self.sipp_bin.display(), uac_args.join(" "));
        let mut c = Command::new(&self.sipp_bin);
        c.args(&uac_args).current_dir(run_dir);

        let loadavg_before = procfs::loadavg();
        let uas_pid = uas.as_ref().map(|g| g.pid());
        let uas_before = uas_pid.map(CpuSample::of_group).transpose()?;
        let children_before = cpu_seconds_of_children();
        let target_before = CpuSample::of_group(pgid)?;
        let udp_before = UdpErrors::now();
        let t0 = Instant::now();
        let mut uac = spawn_logged("sipp uac", c, &run_dir.join("uac.log"))?;
        let status = uac.wait_timeout(run_limit)?;
        let wall = t0.elapsed();
        let udp_errors = UdpErrors::now().since(&udp_before);
        let udp_socket_drops: std::collections::BTreeMap<String, u64> = [
            ("target", listen.port()),
            ("relay-upstream", upstream.port()),
            ("uac", uac_addr.port()),
            ("uas", uas_addr.port()),
        ]
        .into_iter()
        .map(|(k, p)| (k.to_owned(), procfs::udp_socket_drops(p)))
        .filter(|(_, n)| *n > 0)
        .collect();
        let target_after = CpuSample::of_group(pgid)?;
        let rss = RssSample::of_group(pgid)?;
        let uas_after = uas_pid.map(CpuSample::of_group).transpose()?;
        if status.is_none() {
            uac.stop();
        }
        let children_after = cpu_seconds_of_children();
        if let Some(st) = running.guard.try_status()? {
            bail!(
                "target {} died during the run ({st}); see {}",
                spec.target,
                running.log.display()
            );
        }
        running.guard.stop();
        if let Some(g) = uas.as_mut() {
            // SIGTERM: sipp writes its final statistics.
            g.stop();
        }
        let status = status.ok_or_else(|| {
            anyhow!(
                "sipp uac still running after {} s; stopped (see {})",
                run_limit.as_secs(),
                run_dir.join("uac.log").display()
            )
        })?;

        let uac_stats = sipp::parse_stat_csv(
            &fs::read_to_string(&uac_stat)
                .with_context(|| format!("sipp wrote no {}", uac_stat.display()))?,
        )
        .with_context(|| format!("parsing {}", uac_stat.display()))?;
        let uas_stats = match uas {
            Some(_) => Some(sipp::parse_stat_csv(&fs::read_to_string(
                run_dir.join("uas_stat.csv"),
            )?)?),
            None => None,
        };
        let mut samples = Vec::new();
        for f in rtt_files(run_dir)? {
            samples.extend(sipp::parse_rtt_csv(&fs::read_to_string(&f)?)?);
        }
        let mut hist = stats::new_histogram();
        let mut by_rtd = std::collections::BTreeMap::new();
        for rtd in sc.rtds {
            let mut h = stats::new_histogram();
            for s in samples.iter().filter(|s| s.rtd == *rtd) {
                stats::record_ms(&mut h, s.rtt_ms);
            }
            hist.add(&h)?;
            by_rtd.insert((*rtd).to_owned(), stats::summarize(&h));
        }

        let ticks = procfs::clock_ticks_per_second() as f64;
        let cpu_s = target_after.ticks_since(&target_before) as f64 / ticks;
        let ok = uac_stats.successful;
        let per_call = |s: f64| (ok > 0 && s.is_finite()).then(|| s * 1e6 / ok as f64);
        let uas_cpu_s = match (&uas_before, &uas_after) {
            (Some(b), Some(a)) => a.ticks_since(b) as f64 / ticks,
            _ => 0.0,
        };
        let uac_cpu_s = children_after - children_before;
        Ok(RunRecord {
            target: spec.target,
            scenario: sc.name.to_owned(),
            transport: sc.transport,
            mode: spec.mode,
            repeat: spec.repeat,
            step: spec.step,
            offered_rate: spec.rate,
            achieved_rate: sipp::achieved_rate(&samples, sc.rtds[0])
                .or((uac_stats.call_rate > 0.0).then_some(uac_stats.call_rate)),
            duration_s: spec.duration.as_secs_f64(),
            wall_s: wall.as_secs_f64(),
            calls: Calls {
                attempted: uac_stats.created,
                successful: uac_stats.successful,
                failed: uac_stats.failed,
            },
            failed_by_reason: uac_stats.failed_by_reason.clone(),
            retransmissions: Retransmissions {
                uac: uac_stats.retransmissions,
                uas: uas_stats.as_ref().map_or(0, |s| s.retransmissions),
            },
            udp_errors,
            udp_socket_drops,
            target_usage: Usage {
                processes: target_after.processes(),
                cpu_s,
                cpu_us_per_call: per_call(cpu_s),
                peak_rss: rss,
            },
            sipp_cpu_us_per_call: per_call(uac_cpu_s + uas_cpu_s),
            latency: stats::summarize(&hist),
            latency_by_rtd: by_rtd,
            latency_hist: stats::to_pairs(&hist),
            sipp_exit_code: status.code(),
            loadavg_before,
            target_command: running.command.clone(),
            uac_command,
            run_dir: run_dir.display().to_string(),
            error: None,
        })
    }

    /// Fixed rate: every scenario, every target in turn, `repeats` times.
    pub fn fixed(
        &mut self,
        targets: &[TargetKind],
        scenarios: &[Scenario],
        rate: u32,
        duration: Duration,
        repeats: u32,
    ) -> Result<()> {
        for repeat in 0..repeats {
            for sc in scenarios {
                for &t in targets.iter().filter(|t| t.supports(sc)) {
                    self.run_once(&RunSpec {
                        target: t,
                        scenario: sc,
                        rate,
                        duration,
                        mode: Mode::Fixed,
                        repeat,
                        step: None,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Ramp: the rate rises through `rates`; at each step the targets still
    /// clean run in turn; a target leaves the ramp at its first unclean step.
    /// The whole ramp is repeated `repeats` times.
    pub fn ramp(
        &mut self,
        targets: &[TargetKind],
        scenarios: &[Scenario],
        rates: &[u32],
        step_duration: Duration,
        repeats: u32,
    ) -> Result<()> {
        for repeat in 0..repeats {
            for sc in scenarios {
                let mut alive: Vec<TargetKind> =
                    targets.iter().copied().filter(|t| t.supports(sc)).collect();
                for (step, &rate) in rates.iter().enumerate() {
                    if alive.is_empty() {
                        break;
                    }
                    let mut still = Vec::new();
                    for &t in &alive {
                        let r = self.run_once(&RunSpec {
                            target: t,
                            scenario: sc,
                            rate,
                            duration: step_duration,
                            mode: Mode::Ramp,
                            repeat,
                            step: Some(step as u32),
                        })?;
                        match r.verdict(&self.criteria) {
                            None => still.push(t),
                            Some(limit) => eprintln!(
                                "sipring-bench:   {t} leaves the ramp at {rate} calls/s: {}",
                                limit.describe()
                            ),
                        }
                    }
                    alive = still;
                }
            }
        }
        Ok(())
    }

    /// Writes `summary.json`, `summary.md` and the plots for every record so
    /// far; returns the Markdown.
    pub fn write_report(&self, meta: &Meta) -> Result<String> {
        let fixed = report::fixed_rows(&self.records)?;
        let ramps = report::ramp_rows(&self.records, &self.criteria);
        write_report(&self.out_dir, meta, &self.records, &fixed, &ramps)
    }
}

/// Writes the summary files and plots of `records` into `out_dir`.
pub fn write_report(
    out_dir: &Path,
    meta: &Meta,
    records: &[RunRecord],
    fixed: &[FixedRow],
    ramps: &[RampRow],
) -> Result<String> {
    let summary = serde_json::json!({ "meta": meta, "fixed": fixed, "ramps": ramps });
    fs::write(
        out_dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    let md = report::render_markdown(meta, fixed, ramps);
    fs::write(out_dir.join("summary.md"), &md)?;

    let mut scenarios: Vec<&str> = records.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.sort_unstable();
    scenarios.dedup();
    for sc in scenarios {
        let fixed_runs: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario == sc && r.mode == Mode::Fixed && r.error.is_none())
            .collect();
        if !fixed_runs.is_empty() {
            let mut targets: Vec<TargetKind> = fixed_runs.iter().map(|r| r.target).collect();
            targets.sort_unstable();
            targets.dedup();
            let mut cdf = Vec::new();
            let mut cpu = Vec::new();
            for t in targets {
                let mut h = stats::new_histogram();
                let mut c = Vec::new();
                for r in fixed_runs.iter().filter(|r| r.target == t) {
                    h.add(stats::from_pairs(&r.latency_hist)?)?;
                    c.extend(r.target_usage.cpu_us_per_call);
                }
                cdf.push((t, h));
                cpu.push((t, c));
            }
            plot::latency_cdf(
                &out_dir.join(format!("latency_cdf_{sc}.svg")),
                &format!("{sc}: latency CDF (fixed rate, all runs)"),
                &cdf,
            )?;
            plot::cpu_per_call(
                &out_dir.join(format!("cpu_per_call_{sc}.svg")),
                &format!("{sc}: target CPU per call (median, min–max)"),
                &cpu,
            )?;
        }
        let ramp_rows: Vec<RampRow> = ramps.iter().filter(|r| r.scenario == sc).cloned().collect();
        if !ramp_rows.is_empty() {
            plot::ramp(
                &out_dir.join(format!("ramp_{sc}.svg")),
                &format!("{sc}: ramp (medians over repeats)"),
                &ramp_rows,
            )?;
        }
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_block_is_consecutive_and_apart() {
        let (first, others) = reserve_ports(3, 2).unwrap();
        for p in first..first + 3 {
            UdpSocket::bind((LOCALHOST, p)).unwrap();
            TcpListener::bind((LOCALHOST, p)).unwrap();
            assert!(!others.contains(&p));
        }
        assert_eq!(others.len(), 2);
        assert_ne!(others[0], others[1]);
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let p = free_ports(4).unwrap();
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), 4);
        for port in p {
            UdpSocket::bind((LOCALHOST, port)).unwrap();
            TcpListener::bind((LOCALHOST, port)).unwrap();
        }
    }
}
