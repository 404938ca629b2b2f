//! The load scenarios: which sipp XML files play the caller and the callee,
//! over which transport, and what one "call" of the scenario is.
//!
//! The XML files live in `bench/scenarios/` (see the comments in each file).
//! Every scenario runs over UDP and, with the same files and `-t t1`, over TCP.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The transport sipp and the target speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// As written in a SIP URI `transport=` parameter.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        })
    }
}

/// What the scenario exercises in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// INVITE/100/180/200/ACK/BYE/200 through a Record-Routing proxy.
    Call,
    /// INVITE/100/180/CANCEL/200/487/ACK.
    Cancel,
    /// REGISTER/401/REGISTER/200 against a registrar with digest auth.
    Register,
}

/// One scenario of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub flow: Flow,
    pub transport: Transport,
    /// The caller side (sipp uac) file in `bench/scenarios/`.
    pub uac_file: &'static str,
    /// The callee side (sipp uas) file.
    pub uas_file: &'static str,
    /// SIP messages one call moves through the target (caller and callee
    /// sides together, as a relay sees them).
    pub messages_per_call: u32,
    /// The scenario's rtd names; the first is timed once per call.
    pub rtds: &'static [&'static str],
    /// What one call is called in reports.
    pub unit: &'static str,
}

const CALL_RTDS: &[&str] = &["invite", "bye"];
const CANCEL_RTDS: &[&str] = &["invite", "cancel"];
const REGISTER_RTDS: &[&str] = &["challenge", "register"];

const fn scenario(name: &'static str, flow: Flow, transport: Transport) -> Scenario {
    let (uac_file, uas_file, messages_per_call, rtds, unit) = match flow {
        Flow::Call => ("invite_uac.xml", "invite_uas.xml", 7, CALL_RTDS, "call"),
        Flow::Cancel => ("cancel_uac.xml", "cancel_uas.xml", 7, CANCEL_RTDS, "call"),
        Flow::Register => (
            "register_uac.xml",
            "register_uas.xml",
            4,
            REGISTER_RTDS,
            "registration",
        ),
    };
    Scenario {
        name,
        flow,
        transport,
        uac_file,
        uas_file,
        messages_per_call,
        rtds,
        unit,
    }
}

/// Every scenario, by name.
pub const ALL: &[Scenario] = &[
    scenario("invite", Flow::Call, Transport::Udp),
    scenario("invite-tcp", Flow::Call, Transport::Tcp),
    scenario("cancel", Flow::Cancel, Transport::Udp),
    scenario("cancel-tcp", Flow::Cancel, Transport::Tcp),
    scenario("register", Flow::Register, Transport::Udp),
    scenario("register-tcp", Flow::Register, Transport::Tcp),
];

impl Scenario {
    /// Looks a scenario up by name.
    pub fn by_name(name: &str) -> Result<Scenario> {
        match ALL.iter().find(|s| s.name == name) {
            Some(s) => Ok(*s),
            None => {
                let names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
                bail!("unknown scenario {name:?}; known: {}", names.join(", "))
            }
        }
    }

    /// The caller-side XML file.
    pub fn uac_path(&self, bench_dir: &Path) -> PathBuf {
        bench_dir.join("scenarios").join(self.uac_file)
    }

    /// The callee-side XML file.
    pub fn uas_path(&self, bench_dir: &Path) -> PathBuf {
        bench_dir.join("scenarios").join(self.uas_file)
    }
}

/// The `bench/` directory of this crate (scenarios, Kamailio configs,
/// results); `SIPRING_BENCH_DIR` overrides it.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("SIPRING_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_files_exist() {
        let dir = bench_dir();
        for (i, s) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|o| o.name != s.name));
            assert!(s.uac_path(&dir).is_file(), "{}", s.uac_file);
            assert!(s.uas_path(&dir).is_file(), "{}", s.uas_file);
            // Every rtd the harness expects is timed by the uac file.
            let xml = std::fs::read_to_string(s.uac_path(&dir)).unwrap();
            for rtd in s.rtds {
                assert!(xml.contains(&format!("start_rtd=\"{rtd}\"")), "{rtd}");
                assert!(xml.contains(&format!("rtd=\"{rtd}\"")), "{rtd}");
            }
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(
            Scenario::by_name("invite-tcp").unwrap().transport,
            Transport::Tcp
        );
        let e = Scenario::by_name("nope").unwrap_err().to_string();
        assert!(e.contains("invite, invite-tcp"), "{e}");
    }
}
