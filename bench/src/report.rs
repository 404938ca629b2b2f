//! What a run measured ([`RunRecord`], one JSON file each), how runs are
//! summarised (medians over repeats, ratios to Kamailio and to the relay
//! floor, the highest clean rate of a ramp), and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::procfs::{Machine, RssSample, UdpErrors};
use crate::scenario::Transport;
use crate::stats::{self, LatencySummary};
use crate::target::{TargetKind, TargetSettings};

/// Fixed rate, or one step of a ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Fixed,
    Ramp,
}

/// Calls as the caller (sipp uac) counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    pub attempted: u64,
    pub successful: u64,
    pub failed: u64,
}

impl Calls {
    /// Failed calls as a percentage of attempted (100 when nothing was
    /// attempted: a run that made no call is not clean).
    pub fn failed_pct(&self) -> f64 {
        if self.attempted == 0 {
            100.0
        } else {
            self.failed as f64 * 100.0 / self.attempted as f64
        }
    }
}

/// Retransmissions sipp made (UDP timers firing), caller and callee side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retransmissions {
    pub uac: u64,
    pub uas: u64,
}

/// Resources the target used during the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Processes of the target's group sampled.
    pub processes: usize,
    /// CPU time (utime + stime) of all of them over the run, seconds.
    pub cpu_s: f64,
    /// `cpu_s` per successful call, µs.
    pub cpu_us_per_call: Option<f64>,
    pub peak_rss: RssSample,
}

/// One run: one target, one scenario, one rate, one repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub target: TargetKind,
    pub scenario: String,
    pub transport: Transport,
    pub mode: Mode,
    pub repeat: u32,
    /// Ramp step (0-based), `None` for fixed runs.
    pub step: Option<u32>,
    /// Calls per second asked of sipp.
    pub offered_rate: u32,
    /// Calls per second sipp really started (from the rtt dates).
    pub achieved_rate: Option<f64>,
    pub duration_s: f64,
    /// Wall time of the caller, start to exit, s.
    pub wall_s: f64,
    pub calls: Calls,
    pub failed_by_reason: BTreeMap<String, u64>,
    pub retransmissions: Retransmissions,
    /// UDP datagrams the kernel dropped during the run, machine-wide
    /// (receive buffers full), including other processes' sockets.
    #[serde(default)]
    pub udp_errors: UdpErrors,
    /// Of those, dropped by each side's sockets ("target", "uac", "uas"),
    /// read from /proc/net/udp before the processes stop.
    #[serde(default)]
    pub udp_socket_drops: BTreeMap<String, u64>,
    pub target_usage: Usage,
    /// CPU of the two sipp processes per successful call, µs (they share the
    /// cores with the target).
    pub sipp_cpu_us_per_call: Option<f64>,
    /// Every timed request/response pair of the scenario.
    pub latency: LatencySummary,
    pub latency_by_rtd: BTreeMap<String, LatencySummary>,
    /// The latency histogram as (µs, count) pairs.
    pub latency_hist: Vec<(u64, u64)>,
    pub sipp_exit_code: Option<i32>,
    pub loadavg_before: f64,
    pub target_command: String,
    pub uac_command: String,
    pub run_dir: String,
    /// Why the run produced no measurement, if it did not.
    pub error: Option<String>,
}

/// What makes a ramp step clean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Criteria {
    /// Failed calls above this percentage end the ramp (0.1).
    pub max_failed_pct: f64,
    /// p99 latency above this ends the ramp, ms.
    pub max_p99_ms: f64,
    /// sipp starting fewer calls than this fraction of the offered rate ends
    /// the ramp: the load generator, not the target, is then the limit.
    pub min_achieved_fraction: f64,
}

/// Why a ramp step is not clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The run produced no measurement (the target failed).
    Error,
    Failures,
    P99,
    /// sipp could not start calls at the offered rate.
    Generator,
    /// The ramp reached its highest rate while still clean.
    MaxRate,
}

impl Limit {
    pub fn describe(self) -> &'static str {
        match self {
            Limit::Error => "target error",
            Limit::Failures => "failed calls",
            Limit::P99 => "p99 latency",
            Limit::Generator => "sipp could not keep up",
            Limit::MaxRate => "highest rate tried",
        }
    }
}

impl RunRecord {
    /// `None` if the run is clean under `c`, otherwise why not.
    pub fn verdict(&self, c: &Criteria) -> Option<Limit> {
        if self.error.is_some() {
            return Some(Limit::Error);
        }
        if self.calls.failed_pct() > c.max_failed_pct {
            return Some(Limit::Failures);
        }
        if self.latency.p99_ms > c.max_p99_ms {
            return Some(Limit::P99);
        }
        match self.achieved_rate {
            Some(r) if r < c.min_achieved_fraction * f64::from(self.offered_rate) => {
                Some(Limit::Generator)
            }
            _ => None,
        }
    }
}

/// The whole invocation: where, how, what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub command_line: String,
    pub started: String,
    pub machine: Machine,
    pub sipp_version: String,
    pub kamailio_version: String,
    pub settings: TargetSettings,
    pub criteria: Criteria,
    /// Free-form notes (e.g. the load average when the run started).
    pub notes: Vec<String>,
}

/// One line of the fixed-rate table: a target in a scenario, over repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedRow {
    pub scenario: String,
    pub target: TargetKind,
    pub offered_rate: u32,
    pub runs: usize,
    pub calls: Calls,
    pub retransmissions: u64,
    /// UDP datagrams dropped (receive buffer full) by the run's own sockets
    /// (target, relay, sipp), all runs.
    #[serde(default)]
    pub udp_drops: u64,
    /// Median over runs of the target's CPU per call, µs.
    pub cpu_us_per_call: Option<f64>,
    pub cpu_us_per_call_min_max: Option<(f64, f64)>,
    /// This target's median CPU per call over a reference target's, by
    /// reference name (kamailio, relay-std, relay-glommio).
    pub ratios: BTreeMap<String, f64>,
    pub sipp_cpu_us_per_call: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub achieved_rate: Option<f64>,
    /// Latency of all runs together.
    pub latency: LatencySummary,
    pub errors: Vec<String>,
}

/// The targets CPU ratios are given against.
pub const RATIO_REFERENCES: [TargetKind; 3] = [
    TargetKind::Kamailio,
    TargetKind::RelayStd,
    TargetKind::RelayGlommio,
];

fn group_by<K: Ord + Clone>(
    runs: &[RunRecord],
    key: impl Fn(&RunRecord) -> K,
) -> BTreeMap<K, Vec<&RunRecord>> {
    let mut m: BTreeMap<K, Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        m.entry(key(r)).or_default().push(r);
    }
    m
}

/// Summarises fixed-rate runs per (scenario, rate, target), with ratios of the
/// median CPU per call to the references measured in the same invocation.
pub fn fixed_rows(runs: &[RunRecord]) -> Result<Vec<FixedRow>> {
    let fixed: Vec<RunRecord> = runs
        .iter()
        .filter(|r| r.mode == Mode::Fixed)
        .cloned()
        .collect();
    let mut rows = Vec::new();
    for ((scenario, rate, target), group) in
        group_by(&fixed, |r| (r.scenario.clone(), r.offered_rate, r.target))
    {
        let ok: Vec<&&RunRecord> = group.iter().filter(|r| r.error.is_none()).collect();
        let mut calls = Calls::default();
        let mut hist = stats::new_histogram();
        let mut retransmissions = 0;
        let mut udp_drops = 0;
        for r in &ok {
            udp_drops += r.udp_socket_drops.values().sum::<u64>();
            calls.attempted += r.calls.attempted;
            calls.successful += r.calls.successful;
            calls.failed += r.calls.failed;
            retransmissions += r.retransmissions.uac + r.retransmissions.uas;
            hist.add(stats::from_pairs(&r.latency_hist)?)?;
        }
        let cpu: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.target_usage.cpu_us_per_call)
            .collect();
        let sipp: Vec<f64> = ok.iter().filter_map(|r| r.sipp_cpu_us_per_call).collect();
        let rss: Vec<f64> = ok
            .iter()
            .map(|r| r.target_usage.peak_rss.sum_kib as f64 / 1024.0)
            .collect();
        let achieved: Vec<f64> = ok.iter().filter_map(|r| r.achieved_rate).collect();
        rows.push(FixedRow {
            scenario,
            target,
            offered_rate: rate,
            runs: group.len(),
            calls,
            retransmissions,
            udp_drops,
            cpu_us_per_call: stats::median(&cpu),
            cpu_us_per_call_min_max: stats::min_max(&cpu),
            ratios: BTreeMap::new(),
            sipp_cpu_us_per_call: stats::median(&sipp),
            peak_rss_mib: stats::median(&rss),
            achieved_rate: stats::median(&achieved),
            latency: stats::summarize(&hist),
            errors: group.iter().filter_map(|r| r.error.clone()).collect(),
        });
    }
    // Ratios within each (scenario, rate).
    let refs: BTreeMap<(String, u32, TargetKind), f64> = rows
        .iter()
        .filter_map(|r| {
            Some((
                (r.scenario.clone(), r.offered_rate, r.target),
                r.cpu_us_per_call?,
            ))
        })
        .collect();
    for row in &mut rows {
        let Some(mine) = row.cpu_us_per_call else {
            continue;
        };
        for reference in RATIO_REFERENCES {
            if let Some(&theirs) = refs.get(&(row.scenario.clone(), row.offered_rate, reference)) {
                if theirs > 0.0 {
                    row.ratios
                        .insert(reference.name().to_owned(), mine / theirs);
                }
            }
        }
    }
    Ok(rows)
}

/// One target's result in a ramp, over repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampRow {
    pub scenario: String,
    pub target: TargetKind,
    /// Highest clean rate of each repeat (0: not even the first step).
    pub highest_clean: Vec<u32>,
    pub highest_clean_median: Option<f64>,
    /// What ended each repeat.
    pub limits: Vec<Limit>,
    /// Per offered rate: median success rate (%), median p99 (ms), median CPU
    /// per call (µs).
    pub points: Vec<RampPoint>,
}

/// One offered rate of a ramp, medians over repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampPoint {
    pub offered_rate: u32,
    pub success_pct: f64,
    pub p99_ms: f64,
    pub cpu_us_per_call: Option<f64>,
    pub achieved_rate: Option<f64>,
    /// UDP drops of the run's sockets, by socket, summed over repeats: who
    /// fell behind (the target, or sipp).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
}

/// The highest clean rate of one ramp (steps in increasing rate) and what
/// ended it.
pub fn ramp_outcome(steps: &[&RunRecord], c: &Criteria) -> (u32, Limit) {
    let mut sorted: Vec<&&RunRecord> = steps.iter().collect();
    sorted.sort_by_key(|r| r.offered_rate);
    let mut best = 0;
    for r in sorted {
        match r.verdict(c) {
            None => best = r.offered_rate,
            Some(limit) => return (best, limit),
        }
    }
    (best, Limit::MaxRate)
}

/// Summarises ramp runs per (scenario, target).
pub fn ramp_rows(runs: &[RunRecord], c: &Criteria) -> Vec<RampRow> {
    let ramp: Vec<RunRecord> = runs
        .iter()
        .filter(|r| r.mode == Mode::Ramp)
        .cloned()
        .collect();
    let mut rows = Vec::new();
    for ((scenario, target), group) in group_by(&ramp, |r| (r.scenario.clone(), r.target)) {
        let mut highest_clean = Vec::new();
        let mut limits = Vec::new();
        for (_, steps) in group_by(
            &group.iter().map(|r| (*r).clone()).collect::<Vec<_>>(),
            |r| r.repeat,
        ) {
            let (best, limit) = ramp_outcome(&steps, c);
            highest_clean.push(best);
            limits.push(limit);
        }
        let mut points = Vec::new();
        for (rate, at) in group_by(
            &group.iter().map(|r| (*r).clone()).collect::<Vec<_>>(),
            |r| r.offered_rate,
        ) {
            let ok: Vec<&&RunRecord> = at.iter().filter(|r| r.error.is_none()).collect();
            let success: Vec<f64> = ok.iter().map(|r| 100.0 - r.calls.failed_pct()).collect();
            let p99: Vec<f64> = ok.iter().map(|r| r.latency.p99_ms).collect();
            let cpu: Vec<f64> = ok
                .iter()
                .filter_map(|r| r.target_usage.cpu_us_per_call)
                .collect();
            let achieved: Vec<f64> = ok.iter().filter_map(|r| r.achieved_rate).collect();
            let mut drops = BTreeMap::new();
            for r in &ok {
                for (k, v) in &r.udp_socket_drops {
                    *drops.entry(k.clone()).or_insert(0) += v;
                }
            }
            points.push(RampPoint {
                drops,
                offered_rate: rate,
                success_pct: stats::median(&success).unwrap_or(0.0),
                p99_ms: stats::median(&p99).unwrap_or(f64::NAN),
                cpu_us_per_call: stats::median(&cpu),
                achieved_rate: stats::median(&achieved),
            });
        }
        let as_f64: Vec<f64> = highest_clean.iter().map(|&r| f64::from(r)).collect();
        rows.push(RampRow {
            scenario,
            target,
            highest_clean_median: stats::median(&as_f64),
            highest_clean,
            limits,
            points,
        });
    }
    rows
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".to_owned(),
    }
}

/// The Markdown report of an invocation.
pub fn render_markdown(meta: &Meta, fixed: &[FixedRow], ramps: &[RampRow]) -> String {
    let mut s = String::new();
    let m = &meta.machine;
    let _ = writeln!(s, "# sipring-bench results ({})\n", meta.started);
    let _ = writeln!(s, "Command: `{}`\n", meta.command_line);
    let _ = writeln!(
        s,
        "Machine: {} cores ({}), Linux {}, {} MiB; 1-min load average at start {:.2}. \
         **sipp (caller and callee) runs on the same cores as the target**, so every \
         figure includes that contention; compare targets through the ratios, which \
         come from the same invocation with targets run in turn (A B A B ...).\n",
        m.cores, m.cpu_model, m.kernel, m.mem_total_mib, m.loadavg_at_start
    );
    let st = &meta.settings;
    let _ = writeln!(
        s,
        "Versions: {}; {}. Kamailio: {} UDP children, {} TCP children, shm {} MiB, pkg {} MiB. \
         relay-glommio: pinned to core {}, {} receive(s) outstanding per socket{}. \
         sipring: {} core(s).\n",
        meta.sipp_version,
        meta.kamailio_version,
        st.kamailio_children,
        st.kamailio_tcp_children,
        st.kamailio_shm_mb,
        st.kamailio_pkg_mb,
        st.relay_core.map_or("none".to_owned(), |c| c.to_string()),
        st.glommio_recv_depth,
        if st.glommio_spin_us > 0 {
            format!(", spin {} µs before park", st.glommio_spin_us)
        } else {
            String::new()
        } + &if st.glommio_recv_buffer == crate::relay::MAX_DATAGRAM {
            String::new()
        } else {
            format!(", {} B receive buffers", st.glommio_recv_buffer)
        },
        st.sipring_cores,
    );
    for n in &meta.notes {
        let _ = writeln!(s, "Note: {n}\n");
    }
    if !fixed.is_empty() {
        let _ = writeln!(s, "## Fixed rate\n");
        let _ = writeln!(
            s,
            "CPU = utime+stime of all the target's processes per successful call (median of \
             the runs, min–max in brackets); × = ratio of medians. Latency = sipp's response \
             times of all runs together, in steps of one kernel tick (sipp reads \
             CLOCK_MONOTONIC_COARSE: 4 ms at CONFIG_HZ=250; \"0\" is within one tick).\n"
        );
        let _ = writeln!(
            s,
            "| scenario | target | rate/s | runs | ok / attempted | failed % | retrans | UDP drops | CPU µs/call | × kamailio | × relay-std | × relay-glommio | sipp CPU µs/call | peak RSS MiB | p50 | p90 | p99 | p99.9 | max ms |"
        );
        let _ = writeln!(
            s,
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for r in fixed {
            let ratio = |name: &str| {
                r.ratios
                    .get(name)
                    .map_or("–".to_owned(), |x| format!("{x:.2}"))
            };
            let cpu = match (r.cpu_us_per_call, r.cpu_us_per_call_min_max) {
                (Some(c), Some((lo, hi))) => format!("{c:.0} ({lo:.0}–{hi:.0})"),
                _ => "–".to_owned(),
            };
            let l = &r.latency;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                r.scenario,
                r.target,
                r.offered_rate,
                r.runs,
                r.calls.successful,
                r.calls.attempted,
                r.calls.failed_pct(),
                r.retransmissions,
                r.udp_drops,
                cpu,
                ratio("kamailio"),
                ratio("relay-std"),
                ratio("relay-glommio"),
                opt(r.sipp_cpu_us_per_call, 0),
                opt(r.peak_rss_mib, 1),
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms
            );
        }
        for r in fixed.iter().filter(|r| !r.errors.is_empty()) {
            let _ = writeln!(
                s,
                "\n{} / {}: {} run(s) failed: {}",
                r.scenario,
                r.target,
                r.errors.len(),
                r.errors[0]
            );
        }
        let _ = writeln!(s);
    }
    if !ramps.is_empty() {
        let c = &meta.criteria;
        let _ = writeln!(s, "## Ramp\n");
        let _ = writeln!(
            s,
            "The rate rises step by step; a step is clean while failed calls ≤ {}%, p99 ≤ {} ms \
             and sipp starts at least {:.0}% of the offered calls. Highest clean rate = the last \
             clean step (median over repeats).\n",
            c.max_failed_pct,
            c.max_p99_ms,
            c.min_achieved_fraction * 100.0
        );
        let _ = writeln!(
            s,
            "| scenario | target | highest clean rate/s (median) | per repeat | ended by |"
        );
        let _ = writeln!(s, "|---|---|--:|---|---|");
        for r in ramps {
            let per: Vec<String> = r.highest_clean.iter().map(|x| x.to_string()).collect();
            let mut limits: Vec<&str> = r.limits.iter().map(|l| l.describe()).collect();
            limits.dedup();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.scenario,
                r.target,
                opt(r.highest_clean_median, 0),
                per.join(", "),
                limits.join(", ")
            );
        }
        let _ = writeln!(s, "\nPer step (medians over repeats):\n");
        let _ = writeln!(
            s,
            "| scenario | target | offered/s | achieved/s | success % | p99 ms | CPU µs/call | UDP drops by |"
        );
        let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|---|");
        for r in ramps {
            for p in &r.points {
                let drops: Vec<String> = p.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                    r.scenario,
                    r.target,
                    p.offered_rate,
                    opt(p.achieved_rate, 0),
                    p.success_pct,
                    opt(Some(p.p99_ms), 0),
                    opt(p.cpu_us_per_call, 0),
                    if drops.is_empty() {
                        "–".to_owned()
                    } else {
                        drops.join(", ")
                    }
                );
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "Files: `runs/*.json` (one per run), `summary.json`, and the plots \
         `latency_cdf_*.svg`, `cpu_per_call_*.svg`, `ramp_*.svg`; see bench/results/README.md."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(target: TargetKind, rate: u32, repeat: u32, cpu: f64) -> RunRecord {
        let mut h = stats::new_histogram();
        for ms in [0.0, 0.0, 0.0, 1.0] {
            stats::record_ms(&mut h, ms);
        }
        RunRecord {
            target,
            scenario: "invite".into(),
            transport: Transport::Udp,
            mode: Mode::Fixed,
            repeat,
            step: None,
            offered_rate: rate,
            achieved_rate: Some(f64::from(rate)),
            duration_s: 10.0,
            wall_s: 10.1,
            calls: Calls {
                attempted: 100,
                successful: 100,
                failed: 0,
            },
            failed_by_reason: BTreeMap::new(),
            retransmissions: Retransmissions { uac: 1, uas: 0 },
            udp_errors: UdpErrors::default(),
            udp_socket_drops: BTreeMap::new(),
            target_usage: Usage {
                processes: 1,
                cpu_s: cpu * 100.0 / 1e6,
                cpu_us_per_call: Some(cpu),
                peak_rss: RssSample {
                    sum_kib: 2048,
                    max_kib: 2048,
                    processes: 1,
                },
            },
            sipp_cpu_us_per_call: Some(200.0),
            latency: stats::summarize(&h),
            latency_by_rtd: BTreeMap::new(),
            latency_hist: stats::to_pairs(&h),
            sipp_exit_code: Some(0),
            loadavg_before: 0.1,
            target_command: String::new(),
            uac_command: String::new(),
            run_dir: String::new(),
            error: None,
        }
    }

    #[test]
    fn fixed_medians_and_ratios() {
        let mut runs = Vec::new();
        for (rep, (k, s, g)) in [
            (340.0, 40.0, 66.0),
            (350.0, 36.0, 60.0),
            (330.0, 42.0, 70.0),
        ]
        .into_iter()
        .enumerate()
        {
            runs.push(record(TargetKind::Kamailio, 2000, rep as u32, k));
            runs.push(record(TargetKind::RelayStd, 2000, rep as u32, s));
            runs.push(record(TargetKind::RelayGlommio, 2000, rep as u32, g));
        }
        let rows = fixed_rows(&runs).unwrap();
        assert_eq!(rows.len(), 3);
        let kam = rows
            .iter()
            .find(|r| r.target == TargetKind::Kamailio)
            .unwrap();
        let glo = rows
            .iter()
            .find(|r| r.target == TargetKind::RelayGlommio)
            .unwrap();
        assert_eq!(kam.cpu_us_per_call, Some(340.0));
        assert_eq!(kam.cpu_us_per_call_min_max, Some((330.0, 350.0)));
        assert_eq!(kam.calls.attempted, 300);
        assert_eq!(kam.retransmissions, 3);
        assert_eq!(kam.latency.samples, 12);
        assert!((kam.ratios["kamailio"] - 1.0).abs() < 1e-12);
        assert!((kam.ratios["relay-std"] - 340.0 / 40.0).abs() < 1e-9);
        assert!((glo.ratios["kamailio"] - 66.0 / 340.0).abs() < 1e-9);
        let md = render_markdown(&meta(), &rows, &[]);
        assert!(md.contains("| invite | kamailio | 2000 | 3 | 300 / 300 | 0.000 | 3 | 0 | 340 (330–350) | 1.00 | 8.50 | 5.15 |"), "{md}");
        assert!(md.contains("runs on the same cores as the target"));
    }

    #[test]
    fn failed_runs_are_reported_not_averaged() {
        let mut bad = record(TargetKind::Sipring, 2000, 0, 1.0);
        bad.error = Some("target sipring: no sipring binary".into());
        bad.target_usage.cpu_us_per_call = None;
        let rows = fixed_rows(&[bad, record(TargetKind::Kamailio, 2000, 0, 340.0)]).unwrap();
        let s = rows
            .iter()
            .find(|r| r.target == TargetKind::Sipring)
            .unwrap();
        assert_eq!(s.cpu_us_per_call, None);
        assert_eq!(s.calls.attempted, 0);
        assert!(s.ratios.is_empty());
        let md = render_markdown(&meta(), &rows, &[]);
        assert!(
            md.contains("invite / sipring: 1 run(s) failed: target sipring: no sipring binary")
        );
    }

    fn criteria() -> Criteria {
        Criteria {
            max_failed_pct: 0.1,
            max_p99_ms: 20.0,
            min_achieved_fraction: 0.9,
        }
    }

    #[test]
    fn verdicts() {
        let c = criteria();
        let ok = record(TargetKind::Kamailio, 1000, 0, 1.0);
        assert_eq!(ok.verdict(&c), None);
        let mut f = ok.clone();
        f.calls.failed = 1;
        f.calls.attempted = 999;
        assert_eq!(f.verdict(&c), Some(Limit::Failures), "0.1001% > 0.1%");
        let mut p = ok.clone();
        p.latency.p99_ms = 25.0;
        assert_eq!(p.verdict(&c), Some(Limit::P99));
        let mut g = ok.clone();
        g.achieved_rate = Some(850.0);
        assert_eq!(g.verdict(&c), Some(Limit::Generator));
        let mut z = ok;
        z.calls = Calls::default();
        assert_eq!(z.verdict(&c), Some(Limit::Failures));
    }

    #[test]
    fn ramp_highest_clean_rate() {
        let c = criteria();
        let mut runs = Vec::new();
        for repeat in 0..3u32 {
            for (step, rate) in [1000u32, 2000, 3000, 4000].into_iter().enumerate() {
                let mut r = record(TargetKind::Kamailio, rate, repeat, 300.0);
                r.mode = Mode::Ramp;
                r.step = Some(step as u32);
                // Repeat 1 fails at 3000, the others at 4000.
                if rate == 4000 || (repeat == 1 && rate == 3000) {
                    r.calls.failed = 5;
                }
                runs.push(r);
            }
        }
        let rows = ramp_rows(&runs, &c);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].highest_clean, vec![3000, 2000, 3000]);
        assert_eq!(rows[0].highest_clean_median, Some(3000.0));
        assert_eq!(rows[0].limits, vec![Limit::Failures; 3]);
        assert_eq!(rows[0].points.len(), 4);
        assert_eq!(rows[0].points[3].success_pct, 95.0);
        let md = render_markdown(&meta(), &[], &rows);
        assert!(
            md.contains("| invite | kamailio | 3000 | 3000, 2000, 3000 | failed calls |"),
            "{md}"
        );
        // A ramp clean to the end says so.
        let clean: Vec<&RunRecord> = runs.iter().filter(|r| r.offered_rate < 3000).collect();
        assert_eq!(ramp_outcome(&clean, &c), (2000, Limit::MaxRate));
    }

    fn meta() -> Meta {
        Meta {
            command_line: "sipring-bench run".into(),
            started: "2026-01-01T00:00:00Z".into(),
            machine: Machine {
                cores: 2,
                cpu_model: "test".into(),
                kernel: "6.18".into(),
                mem_total_mib: 24000,
                loadavg_at_start: 0.1,
            },
            sipp_version: "sipp 3.6.1".into(),
            kamailio_version: "kamailio 5.6.3".into(),
            settings: TargetSettings {
                kamailio_bin: "kamailio".into(),
                kamailio_children: 2,
                kamailio_tcp_children: 2,
                kamailio_shm_mb: 1024,
                kamailio_pkg_mb: 32,
                relay_exe: "x".into(),
                relay_core: Some(0),
                glommio_recv_depth: 1,
                glommio_spin_us: 0,
                glommio_recv_buffer: 65_535,
                sipring_bin: "sipring".into(),
                sipring_cores: 1,
                sipring_serve_args: vec![],
                sipring_user_args: vec![],
            },
            criteria: criteria(),
            notes: vec![],
        }
    }
}
