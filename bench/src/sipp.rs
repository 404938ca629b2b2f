//! sipp: the command lines the harness runs, and the parsers for what sipp
//! writes (the `-trace_stat` CSV and the `-trace_rtt` CSV).
//!
//! sipp 3.6.1 (Debian's `sip-tester`) stamps response times in whole
//! milliseconds from `CLOCK_MONOTONIC_COARSE`, which advances once per kernel
//! tick (4 ms on the dev machine, `CONFIG_HZ=250`): every `-trace_rtt` sample
//! is a multiple of the tick, and on loopback most requests complete within
//! one tick and read 0 ms. The percentiles are therefore exact only to the
//! tick and meaningful mostly in the tail.
//! The rtt file is written in batches of `-rtt_freq` samples and the last
//! partial batch is lost at exit, so the harness uses a small batch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::scenario::Transport;

/// `-buff_size`: socket buffers of sipp (its default, 64 KiB, drops
/// datagrams in bursts at a few thousand calls per second; the kernel caps
/// it at `net.core.rmem_max`).
pub const SOCKET_BUFFER: u32 = 4 << 20;

/// `-rtt_freq`: samples per batch written to the rtt file (the last partial
/// batch is lost when sipp exits).
pub const RTT_BATCH: u32 = 20;

/// The final counters of one sipp process, from the last row of its
/// `-trace_stat` CSV (cumulative `(C)` columns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SippStats {
    /// Calls created (uac) or received (uas).
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// Non-zero `Failed...(C)` counters by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    pub dead_call_msgs: u64,
    pub out_of_call_msgs: u64,
    pub fatal_errors: u64,
    /// sipp's cumulative call rate (calls created per second of the run).
    pub call_rate: f64,
    /// Data rows in the file (one per `-fd` period, plus the final one).
    pub rows: usize,
}

/// Parses a `-trace_stat` CSV: a header row of `;`-separated names, then one
/// row per dump period; the last row holds the final counters.
pub fn parse_stat_csv(text: &str) -> Result<SippStats> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("empty sipp stat file"))?
        .split(';')
        .collect();
    let rows: Vec<&str> = lines.collect();
    let last = rows
        .last()
        .ok_or_else(|| anyhow!("sipp stat file has a header but no data row"))?;
    let values: Vec<&str> = last.split(';').collect();
    let col = |name: &str| -> Option<&str> {
        let i = header.iter().position(|h| *h == name)?;
        values.get(i).map(|v| v.trim())
    };
    let num = |name: &str| -> Result<u64> {
        let v = col(name).ok_or_else(|| anyhow!("sipp stat file has no column {name}"))?;
        v.parse()
            .with_context(|| format!("sipp stat column {name} = {v:?}"))
    };
    let mut failed_by_reason = BTreeMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(reason) = h.strip_prefix("Failed").and_then(|r| r.strip_suffix("(C)")) {
            if reason == "Call" {
                continue;
            }
            let n: u64 = values
                .get(i)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if n > 0 {
                failed_by_reason.insert(reason.to_owned(), n);
            }
        }
    }
    Ok(SippStats {
        created: num("TotalCallCreated")?,
        successful: num("SuccessfulCall(C)")?,
        failed: num("FailedCall(C)")?,
        retransmissions: num("Retransmissions(C)")?,
        failed_by_reason,
        dead_call_msgs: num("DeadCallMsgs(C)").unwrap_or(0),
        out_of_call_msgs: num("OutOfCallMsgs(C)").unwrap_or(0),
        fatal_errors: num("FatalErrors(C)").unwrap_or(0),
        call_rate: col("CallRate(C)")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        rows: rows.len(),
    })
}

/// One response time from `-trace_rtt`.
#[derive(Debug, Clone, PartialEq)]
pub struct RttSample {
    /// When the response arrived, ms since sipp started.
    pub date_ms: f64,
    /// Request to response, ms.
    pub rtt_ms: f64,
    /// The scenario's rtd name (`invite`, `bye`, ...).
    pub rtd: String,
}

/// Parses a `-trace_rtt` CSV (`Date_ms;response_time_ms;rtd_no`).
pub fn parse_rtt_csv(text: &str) -> Result<Vec<RttSample>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("Date_ms") {
            continue;
        }
        let mut f = line.split(';');
        let (Some(date), Some(rtt), Some(rtd)) = (f.next(), f.next(), f.next()) else {
            bail!("rtt line {}: expected 3 fields: {line:?}", n + 1);
        };
        out.push(RttSample {
            date_ms: date
                .parse()
                .with_context(|| format!("rtt line {} date", n + 1))?,
            rtt_ms: rtt
                .parse()
                .with_context(|| format!("rtt line {} rtt", n + 1))?,
            rtd: rtd.to_owned(),
        });
    }
    Ok(out)
}

/// The rate at which calls were really started, from the arrival dates of the
/// scenario's first response time (one per call): calls over the span between
/// the first and the last. `None` with fewer than two samples.
pub fn achieved_rate(samples: &[RttSample], first_rtd: &str) -> Option<f64> {
    let dates: Vec<f64> = samples
        .iter()
        .filter(|s| s.rtd == first_rtd)
        .map(|s| s.date_ms)
        .collect();
    if dates.len() < 2 {
        return None;
    }
    let lo = dates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = dates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (hi > lo).then(|| (dates.len() - 1) as f64 * 1000.0 / (hi - lo))
}

/// What a sipp exit code means (sipp -h, "Exit codes").
pub fn exit_code_meaning(code: i32) -> &'static str {
    match code {
        0 => "all calls were successful",
        1 => "at least one call failed",
        97 => "exit on internal command",
        99 => "normal exit without calls processed",
        255 | -1 => "fatal error",
        254 | -2 => "fatal error binding a socket",
        _ => "unknown exit code",
    }
}

fn transport_flag(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "u1",
        Transport::Tcp => "t1",
    }
}

/// The caller side of a run.
#[derive(Debug, Clone)]
pub struct UacArgs<'a> {
    /// Where sipp sends every request: the proxy (or the relay's caller side).
    pub target: SocketAddr,
    pub scenario: &'a Path,
    pub local: SocketAddr,
    pub transport: Transport,
    /// Calls per second.
    pub rate: u32,
    /// Calls to make before exiting (`-m`).
    pub calls: u64,
    /// Call hold time between ACK and BYE, ms (`-d`).
    pub hold_ms: u64,
    /// Injection file (registrations: users and credentials).
    pub inf: Option<&'a Path>,
    pub stat_file: &'a Path,
    /// sipp's own global timeout, a backstop to the harness's.
    pub timeout_s: u64,
}

/// The sipp arguments for the caller side: fixed rate, bounded call count,
/// statistics every second, every response time traced.
pub fn uac_args(a: &UacArgs<'_>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        a.target.to_string(),
        "-sf".into(),
        a.scenario.display().to_string(),
        "-i".into(),
        a.local.ip().to_string(),
        "-p".into(),
        a.local.port().to_string(),
        "-t".into(),
        transport_flag(a.transport).into(),
        "-r".into(),
        a.rate.to_string(),
        "-rp".into(),
        "1000".into(),
        "-m".into(),
        a.calls.to_string(),
        // Concurrent calls: far above what a healthy target needs (calls last
        // milliseconds), low enough to bound sipp's memory when one stalls.
        "-l".into(),
        (u64::from(a.rate) * 10 + 100).to_string(),
        "-d".into(),
        a.hold_ms.to_string(),
        // A call that waits 5 s for a message has failed.
        "-recv_timeout".into(),
        "5000".into(),
        "-timeout".into(),
        format!("{}s", a.timeout_s),
        "-timeout_error".into(),
        "-nostdin".into(),
        "-trace_stat".into(),
        "-stf".into(),
        a.stat_file.display().to_string(),
        "-fd".into(),
        "1".into(),
        "-trace_rtt".into(),
        "-rtt_freq".into(),
        RTT_BATCH.to_string(),
        "-trace_err".into(),
        "-buff_size".into(),
        SOCKET_BUFFER.to_string(),
    ];
    if let Some(inf) = a.inf {
        v.push("-inf".into());
        v.push(inf.display().to_string());
    }
    v
}

/// The sipp arguments for the callee side (or the registrar behind a relay).
pub fn uas_args(
    scenario: &Path,
    local: SocketAddr,
    transport: Transport,
    stat_file: &Path,
) -> Vec<String> {
    vec![
        "-sf".into(),
        scenario.display().to_string(),
        "-i".into(),
        local.ip().to_string(),
        "-p".into(),
        local.port().to_string(),
        "-t".into(),
        transport_flag(transport).into(),
        "-nostdin".into(),
        "-trace_stat".into(),
        "-stf".into(),
        stat_file.display().to_string(),
        "-fd".into(),
        "1".into(),
        "-trace_err".into(),
        "-buff_size".into(),
        SOCKET_BUFFER.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const UAC_STAT: &str = include_str!("../tests/fixtures/sipp_uac_stat.csv");
    const UAS_STAT: &str = include_str!("../tests/fixtures/sipp_uas_stat.csv");
    const UAC_FAIL_STAT: &str = include_str!("../tests/fixtures/sipp_uac_fail_stat.csv");
    const UAC_RTT: &str = include_str!("../tests/fixtures/sipp_uac_rtt.csv");

    #[test]
    fn parses_recorded_uac_stats() {
        // 600 calls at 300 calls/s through Kamailio (tm + rr), all successful.
        let s = parse_stat_csv(UAC_STAT).unwrap();
        assert_eq!(s.created, 600);
        assert_eq!(s.successful, 600);
        assert_eq!(s.failed, 0);
        assert_eq!(s.retransmissions, 0);
        assert!(s.failed_by_reason.is_empty());
        assert!(s.rows >= 3);
        assert!(s.call_rate > 100.0, "{}", s.call_rate);
    }

    #[test]
    fn parses_recorded_uas_stats() {
        // The callee was stopped while its calls sat in <timewait>: they count
        // as created, not yet successful. The harness only takes its
        // retransmissions.
        let s = parse_stat_csv(UAS_STAT).unwrap();
        assert_eq!(s.created, 600);
        assert_eq!((s.successful, s.failed, s.retransmissions), (0, 0, 0));
    }

    #[test]
    fn parses_failures_by_reason() {
        // 10 calls to a port nobody listens on, -max_retrans 1.
        let s = parse_stat_csv(UAC_FAIL_STAT).unwrap();
        assert_eq!((s.created, s.successful, s.failed), (10, 0, 10));
        assert_eq!(s.retransmissions, 10);
        assert_eq!(s.failed_by_reason.get("MaxUDPRetrans"), Some(&1));
        assert_eq!(s.failed_by_reason.get("TimeoutOnRecv"), Some(&9));
        assert_eq!(s.failed_by_reason.values().sum::<u64>(), 10);
    }

    #[test]
    fn stat_file_errors_are_clear() {
        assert!(parse_stat_csv("").is_err());
        let only_header = UAC_STAT.lines().next().unwrap();
        let e = parse_stat_csv(only_header).unwrap_err().to_string();
        assert!(e.contains("no data row"), "{e}");
        let e = parse_stat_csv("A;B\n1;2\n").unwrap_err().to_string();
        assert!(e.contains("TotalCallCreated"), "{e}");
    }

    #[test]
    fn parses_recorded_rtt_samples() {
        let s = parse_rtt_csv(UAC_RTT).unwrap();
        assert_eq!(s.len(), 1200);
        assert_eq!(s.iter().filter(|x| x.rtd == "invite").count(), 600);
        assert_eq!(s.iter().filter(|x| x.rtd == "bye").count(), 600);
        // sipp 3.6.1: whole milliseconds.
        assert!(s.iter().all(|x| x.rtt_ms.fract() == 0.0));
        let rate = achieved_rate(&s, "invite").unwrap();
        assert!((250.0..350.0).contains(&rate), "{rate}");
    }

    #[test]
    fn rtt_errors_are_clear() {
        assert!(parse_rtt_csv("Date_ms;response_time_ms;rtd_no\n1;2\n").is_err());
        assert!(parse_rtt_csv("x;2;invite\n").is_err());
        assert!(parse_rtt_csv("").unwrap().is_empty());
        assert_eq!(achieved_rate(&[], "invite"), None);
    }

    #[test]
    fn uac_command_line() {
        let a = UacArgs {
            target: "127.0.0.1:5060".parse().unwrap(),
            scenario: Path::new("/s/invite_uac.xml"),
            local: "127.0.0.1:6000".parse().unwrap(),
            transport: Transport::Tcp,
            rate: 2000,
            calls: 20000,
            hold_ms: 0,
            inf: Some(Path::new("/r/users.inf")),
            stat_file: Path::new("/r/uac_stat.csv"),
            timeout_s: 60,
        };
        let v = uac_args(&a).join(" ");
        assert!(v.starts_with("127.0.0.1:5060 -sf /s/invite_uac.xml -i 127.0.0.1 -p 6000 -t t1"));
        assert!(v.contains("-r 2000 -rp 1000 -m 20000 -l 20100"));
        assert!(v.contains("-trace_rtt -rtt_freq 20"));
        assert!(v.ends_with("-inf /r/users.inf"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code_meaning(0), "all calls were successful");
        assert_eq!(exit_code_meaning(254), "fatal error binding a socket");
    }
}
