//! One short end-to-end run of the harness: `sipring-bench run` against the
//! std relay at a low rate for a few seconds, with real sipp. It proves the
//! pipeline (processes, sipp files, /proc, report, plots) works; it asserts
//! that calls succeeded and a report was written, never a speed.
//!
//! Needs sipp (Debian `sip-tester`): skipped when it is missing, a failure
//! when SIPRING_REQUIRE_SIPP=1 (as scripts/test-all.sh sets).

use std::process::{Command, Stdio};
use std::time::Duration;

use sipring_bench::install::which;
use sipring_bench::process::ProcessGuard;

fn sipp_or_skip() -> bool {
    if which("sipp").is_some() {
        return true;
    }
    assert!(
        std::env::var("SIPRING_REQUIRE_SIPP").as_deref() != Ok("1"),
        "sipp is not installed and SIPRING_REQUIRE_SIPP=1: install sip-tester (scripts/install-deps.sh)"
    );
    eprintln!(
        "smoke test skipped: sipp is not installed (SIPRING_REQUIRE_SIPP=1 makes this a failure)"
    );
    false
}

#[test]
fn smoke_run_through_the_std_relay() {
    if !sipp_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let log = std::fs::File::create(dir.path().join("harness.log")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipring-bench"));
    c.args(["run", "--targets", "relay-std", "--scenarios", "invite"])
        .args([
            "--rate",
            "20",
            "--duration",
            "3",
            "--repeats",
            "1",
            "--no-install",
        ])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut harness = ProcessGuard::spawn("sipring-bench", c).unwrap();
    let status = harness.wait_timeout(Duration::from_secs(90)).unwrap();
    let log = std::fs::read_to_string(dir.path().join("harness.log")).unwrap();
    let status = status.unwrap_or_else(|| panic!("harness still running after 90 s:\n{log}"));
    assert!(status.success(), "harness failed ({status}):\n{log}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let row = &summary["fixed"][0];
    assert_eq!(row["target"], "relay-std", "{summary}");
    let calls = &row["calls"];
    assert_eq!(calls["attempted"], 60, "{log}");
    assert_eq!(calls["successful"], 60, "{log}");
    assert_eq!(calls["failed"], 0, "{log}");
    assert!(row["latency"]["samples"].as_u64().unwrap() > 0, "{summary}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("| invite | relay-std | 20 | 1 | 60 / 60 |"),
        "{md}"
    );
    for f in [
        "latency_cdf_invite.svg",
        "cpu_per_call_invite.svg",
        "meta.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let runs: Vec<_> = std::fs::read_dir(out.join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
}
