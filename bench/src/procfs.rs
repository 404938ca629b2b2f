//! What the harness reads from /proc: the CPU time and peak RSS of every process
//! of a target (Kamailio forks workers, so a target is a process group), whether
//! a port is bound yet, and a description of the machine.
//!
//! CPU time is utime + stime from `/proc/PID/stat` (clock ticks, all threads of
//! the process included), sampled before and after a run; the difference over
//! the calls completed is the CPU per call. Peak RSS is `VmHWM` from
//! `/proc/PID/status`. The parsers take text so that tests feed them recorded
//! files.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub ppid: i32,
    pub pgrp: i32,
    /// User time, clock ticks.
    pub utime: u64,
    /// System time, clock ticks.
    pub stime: u64,
}

/// Parses one `/proc/PID/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<ProcStat> {
    let open = text.find('(').ok_or_else(|| anyhow!("no '(' in stat"))?;
    let close = text.rfind(')').ok_or_else(|| anyhow!("no ')' in stat"))?;
    let pid = text[..open].trim().parse().context("stat pid")?;
    let comm = text[open + 1..close].to_owned();
    // After ")": state(3) ppid(4) pgrp(5) session(6) tty(7) tpgid(8) flags(9)
    // minflt(10) cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<&str> {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| anyhow!("stat has no field {n}"))
    };
    Ok(ProcStat {
        pid,
        comm,
        ppid: field(4)?.parse().context("stat ppid")?,
        pgrp: field(5)?.parse().context("stat pgrp")?,
        utime: field(14)?.parse().context("stat utime")?,
        stime: field(15)?.parse().context("stat stime")?,
    })
}

/// A `kB` line of `/proc/PID/status`, such as `VmHWM` or `VmRSS`, in KiB.
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Clock ticks per second (`CLK_TCK`), the unit of utime and stime.
pub fn clock_ticks_per_second() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).ok()
}

fn all_stats() -> Result<Vec<ProcStat>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read.
        if let Some(st) = read_stat(pid) {
            out.push(st);
        }
    }
    Ok(out)
}

/// The pids whose process group is `pgid`.
pub fn group_pids(pgid: i32) -> Result<Vec<i32>> {
    Ok(all_stats()?
        .into_iter()
        .filter(|s| s.pgrp == pgid)
        .map(|s| s.pid)
        .collect())
}

/// CPU ticks (utime + stime) per process of a group at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSample {
    pub ticks: BTreeMap<i32, u64>,
}

impl CpuSample {
    /// Samples every process of group `pgid`.
    pub fn of_group(pgid: i32) -> Result<Self> {
        let ticks = all_stats()?
            .into_iter()
            .filter(|s| s.pgrp == pgid)
            .map(|s| (s.pid, s.utime + s.stime))
            .collect();
        Ok(Self { ticks })
    }

    /// Ticks spent between `before` and `self`, summed over processes. A
    /// process that appeared in between counts from zero; one that exited in
    /// between is lost (Kamailio does not fork during a run).
    pub fn ticks_since(&self, before: &CpuSample) -> u64 {
        self.ticks
            .iter()
            .map(|(pid, &t)| t.saturating_sub(before.ticks.get(pid).copied().unwrap_or(0)))
            .sum()
    }

    /// Number of processes sampled.
    pub fn processes(&self) -> usize {
        self.ticks.len()
    }
}

/// Peak resident set sizes of a group's processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RssSample {
    /// Sum of VmHWM over the processes (shared memory counted in each).
    pub sum_kib: u64,
    /// Largest VmHWM of one process.
    pub max_kib: u64,
    pub processes: usize,
}

impl RssSample {
    /// Reads VmHWM of every process of group `pgid`.
    pub fn of_group(pgid: i32) -> Result<Self> {
        let mut s = RssSample::default();
        for pid in group_pids(pgid)? {
            let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            if let Some(kib) = parse_status_kib(&text, "VmHWM") {
                s.sum_kib += kib;
                s.max_kib = s.max_kib.max(kib);
                s.processes += 1;
            }
        }
        Ok(s)
    }
}

/// Transport of a socket looked up in /proc/net.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Udp,
    TcpListen,
}

/// True if a `/proc/net/{udp,tcp}[6]` table holds a socket on local `port`
/// (for TCP, in LISTEN state).
pub fn net_table_has_port(table: &str, port: u16, kind: SocketKind) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        let Some((_, lport)) = local.rsplit_once(':') else {
            return false;
        };
        lport == want && (kind == SocketKind::Udp || state == "0A")
    })
}

/// Datagrams dropped (receive buffer full) by the UDP sockets bound to local
/// `port`, from the last column of a `/proc/net/udp[6]` table.
pub fn udp_table_drops(table: &str, port: u16) -> u64 {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1)?.ends_with(&want)).then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// Datagrams dropped so far by the UDP sockets on local `port`.
pub fn udp_socket_drops(port: u16) -> u64 {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .map(|f| {
            fs::read_to_string(f)
                .map(|t| udp_table_drops(&t, port))
                .unwrap_or(0)
        })
        .sum()
}

/// True once some process has bound `port` (UDP) or listens on it (TCP).
pub fn port_bound(port: u16, kind: SocketKind) -> bool {
    let files: &[&str] = match kind {
        SocketKind::Udp => &["/proc/net/udp", "/proc/net/udp6"],
        SocketKind::TcpListen => &["/proc/net/tcp", "/proc/net/tcp6"],
    };
    files.iter().any(|f| {
        fs::read_to_string(f)
            .map(|t| net_table_has_port(&t, port, kind))
            .unwrap_or(false)
    })
}

/// Machine-wide UDP error counters from `/proc/net/snmp`: datagrams the
/// kernel dropped because a socket's receive buffer was full, and other
/// receive errors. A run with drops explains its retransmissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpErrors {
    pub in_errors: u64,
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

impl UdpErrors {
    /// Parses the two `Udp:` lines (names, then values) of /proc/net/snmp.
    pub fn parse(snmp: &str) -> Option<Self> {
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let names: Vec<&str> = lines.next()?.split_whitespace().collect();
        let values: Vec<&str> = lines.next()?.split_whitespace().collect();
        let get = |n: &str| -> Option<u64> {
            let i = names.iter().position(|x| *x == n)?;
            values.get(i)?.parse().ok()
        };
        Some(UdpErrors {
            in_errors: get("InErrors")?,
            rcvbuf_errors: get("RcvbufErrors")?,
            sndbuf_errors: get("SndbufErrors")?,
        })
    }

    /// The current counters (zero if unreadable).
    pub fn now() -> Self {
        fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|t| Self::parse(&t))
            .unwrap_or_default()
    }

    /// Counts since `before`.
    pub fn since(&self, before: &UdpErrors) -> UdpErrors {
        UdpErrors {
            in_errors: self.in_errors.saturating_sub(before.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(before.sndbuf_errors),
        }
    }
}

/// The machine a run happened on, stated in every report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_mib: u64,
    /// 1-minute load average when the harness started.
    pub loadavg_at_start: f64,
}

/// The first `model name` of /proc/cpuinfo.
pub fn parse_cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The 1-minute load average of a /proc/loadavg text.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The current 1-minute load average.
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t))
        .unwrap_or(f64::NAN)
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Self {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: parse_cpu_model(&read("/proc/cpuinfo")),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            mem_total_mib: parse_status_kib(&read("/proc/meminfo"), "MemTotal").unwrap_or(0) / 1024,
            loadavg_at_start: loadavg(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_KAMAILIO: &str = include_str!("../tests/fixtures/proc_stat_kamailio.txt");
    const STAT_ODD_COMM: &str = include_str!("../tests/fixtures/proc_stat_odd_comm.txt");
    const STATUS: &str = include_str!("../tests/fixtures/proc_status_kamailio.txt");
    const NET_UDP: &str = include_str!("../tests/fixtures/proc_net_udp.txt");
    const NET_TCP: &str = include_str!("../tests/fixtures/proc_net_tcp.txt");

    #[test]
    fn parses_a_recorded_stat_line() {
        let s = parse_stat(STAT_KAMAILIO).unwrap();
        assert_eq!(s.comm, "kamailio");
        assert_eq!((s.pid, s.ppid, s.pgrp), (13119, 13113, 13113));
        assert_eq!((s.utime, s.stime), (212, 97));
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let s = parse_stat(STAT_ODD_COMM).unwrap();
        assert_eq!(s.comm, "a b) (c");
        assert_eq!((s.utime, s.stime), (5, 7));
        assert_eq!(s.pgrp, 4242);
    }

    #[test]
    fn stat_rejects_truncated_lines() {
        assert!(parse_stat("12 (x) S 1 2").is_err());
        assert!(parse_stat("garbage").is_err());
    }

    #[test]
    fn status_peak_rss() {
        assert_eq!(parse_status_kib(STATUS, "VmHWM"), Some(23508));
        assert_eq!(parse_status_kib(STATUS, "VmRSS"), Some(21764));
        assert_eq!(parse_status_kib(STATUS, "VmNope"), None);
    }

    #[test]
    fn cpu_delta_over_processes() {
        let before = CpuSample {
            ticks: [(1, 100), (2, 50)].into_iter().collect(),
        };
        let after = CpuSample {
            ticks: [(1, 130), (2, 55), (3, 7)].into_iter().collect(),
        };
        assert_eq!(after.ticks_since(&before), 30 + 5 + 7);
        assert_eq!(after.processes(), 3);
    }

    #[test]
    fn finds_bound_ports_in_proc_net() {
        // 0x3AF4 = 15092 bound on UDP; 0x3AF5 = 15093 listening on TCP,
        // 0x3AF6 = 15094 only as an established connection.
        assert!(net_table_has_port(NET_UDP, 15092, SocketKind::Udp));
        assert!(!net_table_has_port(NET_UDP, 15093, SocketKind::Udp));
        assert!(net_table_has_port(NET_TCP, 15093, SocketKind::TcpListen));
        assert!(!net_table_has_port(NET_TCP, 15094, SocketKind::TcpListen));
        // 0x3E80 = 16000 dropped 17 datagrams.
        assert_eq!(udp_table_drops(NET_UDP, 16000), 17);
        assert_eq!(udp_table_drops(NET_UDP, 15092), 0);
        assert_eq!(udp_table_drops(NET_UDP, 1), 0);
    }

    #[test]
    fn udp_error_counters() {
        let snmp = include_str!("../tests/fixtures/proc_net_snmp.txt");
        let e = UdpErrors::parse(snmp).unwrap();
        assert_eq!(
            (e.in_errors, e.rcvbuf_errors, e.sndbuf_errors),
            (3933, 3933, 0)
        );
        let later = UdpErrors {
            in_errors: 4000,
            rcvbuf_errors: 3950,
            sndbuf_errors: 1,
        };
        assert_eq!(later.since(&e).rcvbuf_errors, 17);
        assert_eq!(UdpErrors::parse("Ip: 1\n"), None);
    }

    #[test]
    fn machine_texts() {
        assert_eq!(
            parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"),
            "AMD EPYC 7B13"
        );
        assert_eq!(parse_loadavg("0.19 0.12 0.06 1/234 5678\n"), Some(0.19));
    }

    #[test]
    fn samples_this_process_group() {
        // The test runner is some group's member: sampling must not fail.
        let me = read_stat(std::process::id() as i32).unwrap();
        let s = CpuSample::of_group(me.pgrp).unwrap();
        assert!(s.processes() >= 1);
        assert!(RssSample::of_group(me.pgrp).unwrap().max_kib > 0);
    }
}
