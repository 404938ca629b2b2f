//! The systems under test. Each target is started fresh for every run, bound to
//! loopback, as the leader of its own process group (so all its processes are
//! measured and stopped together):
//!
//! - `kamailio`: Kamailio with `kamailio/proxy.cfg` (tm + rr, stateful) for the
//!   call scenarios and `kamailio/registrar.cfg` (registrar + usrloc + auth_db
//!   on db_text) for registrations;
//! - `kamailio-stateless`: Kamailio with `kamailio/stateless.cfg` (sl + rr),
//!   a reference point, call scenarios only;
//! - `relay-std`, `relay-glommio`: the blind relay of this crate
//!   (`sipring-bench relay`), with sipp playing the registrar behind it in the
//!   registration scenarios;
//! - `sipring`: `sipring serve --listen IP:PORT --cores N --forward-to HOST:PORT`;
//!   for registrations `sipring serve --listen IP:PORT --cores N` after
//!   `sipring user add AOR --password P` for every generated user;
//! - `sipring-relay`: `sipring serve --relay --listen IP:PORT --cores N
//!   --forward-to HOST:PORT`, the sipring shell with a blind relay engine (the
//!   shell's own cost, next to relay-glommio).
//!
//! Adding a target is: a variant of [`TargetKind`], its name, and its command
//! in [`plan`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::process::{self, ProcessGuard};
use crate::procfs::{self, SocketKind};
use crate::scenario::{Flow, Scenario, Transport};
use crate::users::{self, Users};

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TargetKind {
    #[serde(rename = "kamailio")]
    Kamailio,
    #[serde(rename = "kamailio-stateless")]
    KamailioStateless,
    #[serde(rename = "relay-std")]
    RelayStd,
    #[serde(rename = "relay-glommio")]
    RelayGlommio,
    #[serde(rename = "sipring")]
    Sipring,
    #[serde(rename = "sipring-relay")]
    SipringRelay,
}

impl TargetKind {
    pub const ALL: [TargetKind; 6] = [
        TargetKind::Sipring,
        TargetKind::SipringRelay,
        TargetKind::Kamailio,
        TargetKind::KamailioStateless,
        TargetKind::RelayStd,
        TargetKind::RelayGlommio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Kamailio => "kamailio",
            TargetKind::KamailioStateless => "kamailio-stateless",
            TargetKind::RelayStd => "relay-std",
            TargetKind::RelayGlommio => "relay-glommio",
            TargetKind::Sipring => "sipring",
            TargetKind::SipringRelay => "sipring-relay",
        }
    }

    /// Looks a target up by name.
    pub fn by_name(name: &str) -> Result<TargetKind> {
        match TargetKind::ALL.iter().find(|t| t.name() == name) {
            Some(t) => Ok(*t),
            None => {
                let names: Vec<&str> = TargetKind::ALL.iter().map(|t| t.name()).collect();
                bail!("unknown target {name:?}; known: {}", names.join(", "))
            }
        }
    }

    /// A blind relay (no SIP logic of its own).
    pub fn is_relay(self) -> bool {
        matches!(
            self,
            TargetKind::RelayStd | TargetKind::RelayGlommio | TargetKind::SipringRelay
        )
    }

    /// Runs the sipring binary.
    pub fn is_sipring(self) -> bool {
        matches!(self, TargetKind::Sipring | TargetKind::SipringRelay)
    }

    /// Whether the target can play `scenario`.
    pub fn supports(self, scenario: &Scenario) -> bool {
        !(self == TargetKind::KamailioStateless && scenario.flow == Flow::Register)
    }

    /// Whether a sipp callee (uas) runs behind the target: always for calls;
    /// for registrations only behind a relay (Kamailio and sipring are the
    /// registrar).
    pub fn needs_uas(self, scenario: &Scenario) -> bool {
        scenario.flow != Flow::Register || self.is_relay()
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of the targets, fixed for a whole invocation of the harness.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetSettings {
    pub kamailio_bin: PathBuf,
    /// UDP worker processes (`-n`).
    pub kamailio_children: u32,
    pub kamailio_tcp_children: u32,
    /// Shared memory, MiB (`-m`).
    pub kamailio_shm_mb: u32,
    /// Private memory per process, MiB (`-M`).
    pub kamailio_pkg_mb: u32,
    /// The `sipring-bench` executable that runs the relays.
    pub relay_exe: PathBuf,
    /// CPU the glommio relay is pinned to.
    pub relay_core: Option<usize>,
    /// Receives outstanding per socket in the glommio relay.
    pub glommio_recv_depth: usize,
    /// glommio: spin before parking, µs (0: never).
    pub glommio_spin_us: u64,
    /// glommio: bytes asked of each receive.
    #[serde(default = "default_recv_buffer")]
    pub glommio_recv_buffer: usize,
    pub sipring_bin: PathBuf,
    pub sipring_cores: u32,
    /// Extra arguments appended to `sipring serve`.
    pub sipring_serve_args: Vec<String>,
    /// Extra arguments appended to `sipring user add`.
    pub sipring_user_args: Vec<String>,
}

fn default_recv_buffer() -> usize {
    crate::relay::MAX_DATAGRAM
}

/// Where one run of a target happens.
#[derive(Debug, Clone)]
pub struct TargetEnv<'a> {
    pub scenario: &'a Scenario,
    /// The address sipp's caller sends to (proxy, or relay caller side).
    pub listen: SocketAddr,
    /// The relay's callee-facing socket.
    pub relay_upstream: SocketAddr,
    /// sipp's callee, if one runs behind the target.
    pub uas: Option<SocketAddr>,
    /// sipp's caller.
    pub client: SocketAddr,
    pub run_dir: &'a Path,
    pub users: Option<&'a Users>,
    /// The relay exits by itself after this long.
    pub lifetime: Duration,
}

/// A command to start, with what to run before it.
#[derive(Debug)]
pub struct Plan {
    /// Commands run to completion first (sipring's `user add`).
    pub setup: Vec<Command>,
    pub main: Command,
    /// The command line, for the report.
    pub display: String,
}

fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains([' ', '"', '\'', ';']) {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

fn uas_uri(env: &TargetEnv<'_>) -> Result<String> {
    let uas = env
        .uas
        .context("this scenario needs a callee (uas) behind the target")?;
    Ok(format!(
        "sip:{uas};transport={}",
        env.scenario.transport.uri_param()
    ))
}

/// Builds the command that starts `kind` for `env` (nothing is started).
pub fn plan(kind: TargetKind, env: &TargetEnv<'_>, s: &TargetSettings) -> Result<Plan> {
    let bench_dir = crate::scenario::bench_dir();
    let mut setup = Vec::new();
    let main = match kind {
        TargetKind::Kamailio | TargetKind::KamailioStateless => {
            let (cfg, define) = match (kind, env.scenario.flow) {
                (TargetKind::Kamailio, Flow::Register) => {
                    let users = env.users.context("registrations need generated users")?;
                    (
                        "registrar.cfg",
                        format!("DBURL=\"text://{}\"", users.dbtext_dir.display()),
                    )
                }
                (TargetKind::Kamailio, _) => {
                    ("proxy.cfg", format!("UAS_URI=\"{}\"", uas_uri(env)?))
                }
                (_, Flow::Register) => bail!("kamailio-stateless has no registrar"),
                _ => ("stateless.cfg", format!("UAS_URI=\"{}\"", uas_uri(env)?)),
            };
            let rundir = env.run_dir.join("kamailio-run");
            std::fs::create_dir_all(&rundir)?;
            let mut c = Command::new(&s.kamailio_bin);
            c.arg("-f")
                .arg(bench_dir.join("kamailio").join(cfg))
                .args(["-DD", "-E"])
                .args(["-m", &s.kamailio_shm_mb.to_string()])
                .args(["-M", &s.kamailio_pkg_mb.to_string()])
                .args(["-n", &s.kamailio_children.to_string()])
                .arg("-Y")
                .arg(&rundir)
                .args(["-l", &format!("udp:{}", env.listen)])
                .args(["-l", &format!("tcp:{}", env.listen)])
                .args(["-A", &format!("TCP_CHILDREN={}", s.kamailio_tcp_children)])
                .args(["-A", &define]);
            c
        }
        TargetKind::RelayStd | TargetKind::RelayGlommio => {
            let runtime = if kind == TargetKind::RelayStd {
                "std"
            } else {
                "glommio"
            };
            let uas = env.uas.context("a relay needs a callee behind it")?;
            let mut c = Command::new(&s.relay_exe);
            c.args(["relay", "--runtime", runtime])
                .args(["--transport", env.scenario.transport.uri_param()])
                .args(["--listen", &env.listen.to_string()])
                .args(["--upstream-bind", &env.relay_upstream.to_string()])
                .args(["--forward-to", &uas.to_string()])
                .args(["--client", &env.client.to_string()])
                .args(["--lifetime-s", &env.lifetime.as_secs().max(1).to_string()]);
            if kind == TargetKind::RelayGlommio {
                if let Some(core) = s.relay_core {
                    c.args(["--core", &core.to_string()]);
                }
                c.args(["--recv-depth", &s.glommio_recv_depth.to_string()]);
                if s.glommio_spin_us > 0 {
                    c.args(["--spin-us", &s.glommio_spin_us.to_string()]);
                }
                if s.glommio_recv_buffer != crate::relay::MAX_DATAGRAM {
                    c.args(["--recv-buffer", &s.glommio_recv_buffer.to_string()]);
                }
            }
            c
        }
        TargetKind::Sipring => {
            if env.scenario.flow == Flow::Register {
                let users = env.users.context("registrations need generated users")?;
                for i in 1..=users.count {
                    let (user, password) = users::user(i);
                    let mut c = Command::new(&s.sipring_bin);
                    c.args(["user", "add", &format!("sip:{user}@{}", users::DOMAIN)])
                        .args(["--password", &password])
                        .args(&s.sipring_user_args)
                        .current_dir(env.run_dir);
                    setup.push(c);
                }
            }
            let mut c = Command::new(&s.sipring_bin);
            c.args(["serve", "--listen", &env.listen.to_string()])
                .args(["--cores", &s.sipring_cores.to_string()]);
            if env.scenario.flow != Flow::Register {
                let uas = env.uas.context("calls need a callee behind sipring")?;
                c.args(["--forward-to", &uas.to_string()]);
            }
            c.args(&s.sipring_serve_args);
            c
        }
        TargetKind::SipringRelay => {
            let uas = env.uas.context("a relay needs a callee behind it")?;
            let mut c = Command::new(&s.sipring_bin);
            c.args(["serve", "--relay", "--listen", &env.listen.to_string()])
                .args(["--cores", &s.sipring_cores.to_string()])
                .args(["--forward-to", &uas.to_string()])
                .args(&s.sipring_serve_args);
            c
        }
    };
    let mut main = main;
    main.current_dir(env.run_dir);
    let display = display(&main);
    Ok(Plan {
        setup,
        main,
        display,
    })
}

/// A started target.
#[derive(Debug)]
pub struct RunningTarget {
    pub kind: TargetKind,
    pub guard: ProcessGuard,
    pub command: String,
    pub log: PathBuf,
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts `kind` and waits until it listens on `env.listen` (UDP bound, or
/// TCP listening), at most 20 s.
pub fn start(kind: TargetKind, env: &TargetEnv<'_>, s: &TargetSettings) -> Result<RunningTarget> {
    if kind.is_sipring() && !s.sipring_bin.is_file() {
        bail!(
            "target sipring: no sipring binary at {} (build the proxy with \
             `cargo build --release -p sipring`, or pass --sipring-bin PATH)",
            s.sipring_bin.display()
        );
    }
    let plan = plan(kind, env, s)?;
    for mut c in plan.setup {
        process::check_interrupted()?;
        let out = c
            .output()
            .with_context(|| format!("{kind}: cannot run {}", display(&c)))?;
        if !out.status.success() {
            bail!(
                "{kind}: setup command failed ({}): {}\n{}",
                out.status,
                display(&c),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let log = env.run_dir.join(format!("{kind}.log"));
    let file = std::fs::File::create(&log)?;
    let mut main = plan.main;
    main.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let mut guard = ProcessGuard::spawn(kind.name(), main)?;
    let kind_of_socket = match env.scenario.transport {
        Transport::Udp => SocketKind::Udp,
        Transport::Tcp => SocketKind::TcpListen,
    };
    let mut exited = None;
    let ready = process::wait_until(Duration::from_secs(20), || {
        if let Some(st) = guard.try_status()? {
            exited = Some(st);
            return Ok(true);
        }
        Ok(procfs::port_bound(env.listen.port(), kind_of_socket))
    })?;
    if let Some(st) = exited {
        bail!(
            "target {kind} exited during startup ({st}); command: {}\nlast lines of {}:\n{}",
            plan.display,
            log.display(),
            log_tail(&log)
        );
    }
    if !ready {
        bail!(
            "target {kind} did not listen on {} ({}) within 20 s; command: {}\nlast lines of {}:\n{}",
            env.listen,
            env.scenario.transport,
            plan.display,
            log.display(),
            log_tail(&log)
        );
    }
    // Kamailio binds before it forks its workers: give them a moment.
    if matches!(kind, TargetKind::Kamailio | TargetKind::KamailioStateless) {
        process::sleep_interruptible(Duration::from_millis(500))?;
        if let Some(st) = guard.try_status()? {
            bail!(
                "target {kind} exited after startup ({st}):\n{}",
                log_tail(&log)
            );
        }
    }
    Ok(RunningTarget {
        kind,
        guard,
        command: plan.display,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TargetSettings {
        TargetSettings {
            kamailio_bin: "kamailio".into(),
            kamailio_children: 2,
            kamailio_tcp_children: 2,
            kamailio_shm_mb: 1024,
            kamailio_pkg_mb: 32,
            relay_exe: "/x/sipring-bench".into(),
            relay_core: Some(0),
            glommio_recv_depth: 2,
            glommio_spin_us: 0,
            glommio_recv_buffer: 65_535,
            sipring_bin: "/x/sipring".into(),
            sipring_cores: 1,
            sipring_serve_args: vec![],
            sipring_user_args: vec![],
        }
    }

    fn env<'a>(scenario: &'a Scenario, dir: &'a Path, users: Option<&'a Users>) -> TargetEnv<'a> {
        TargetEnv {
            scenario,
            listen: "127.0.0.1:5060".parse().unwrap(),
            relay_upstream: "127.0.0.1:5061".parse().unwrap(),
            uas: Some("127.0.0.1:5070".parse().unwrap()),
            client: "127.0.0.1:5080".parse().unwrap(),
            run_dir: dir,
            users,
            lifetime: Duration::from_secs(30),
        }
    }

    #[test]
    fn names_round_trip() {
        for t in TargetKind::ALL {
            assert_eq!(TargetKind::by_name(t.name()).unwrap(), t);
        }
        assert!(TargetKind::by_name("asterisk").is_err());
    }

    #[test]
    fn sipring_commands() {
        let dir = tempfile::tempdir().unwrap();
        let call = Scenario::by_name("invite").unwrap();
        let p = plan(
            TargetKind::Sipring,
            &env(&call, dir.path(), None),
            &settings(),
        )
        .unwrap();
        assert_eq!(
            p.display,
            "/x/sipring serve --listen 127.0.0.1:5060 --cores 1 --forward-to 127.0.0.1:5070"
        );
        assert!(p.setup.is_empty());

        let users = users::generate(dir.path(), 2).unwrap();
        let reg = Scenario::by_name("register").unwrap();
        let p = plan(
            TargetKind::Sipring,
            &env(&reg, dir.path(), Some(&users)),
            &settings(),
        )
        .unwrap();
        assert_eq!(
            p.display,
            "/x/sipring serve --listen 127.0.0.1:5060 --cores 1"
        );
        assert_eq!(p.setup.len(), 2);
        let (u, pw) = users::user(2);
        assert_eq!(
            display(&p.setup[1]),
            format!("/x/sipring user add sip:{u}@127.0.0.1 --password {pw}")
        );
    }

    #[test]
    fn kamailio_and_relay_commands() {
        let dir = tempfile::tempdir().unwrap();
        let call = Scenario::by_name("invite-tcp").unwrap();
        let e = env(&call, dir.path(), None);
        let p = plan(TargetKind::Kamailio, &e, &settings()).unwrap().display;
        assert!(
            p.contains("kamailio/proxy.cfg -DD -E -m 1024 -M 32 -n 2"),
            "{p}"
        );
        assert!(
            p.contains("-l udp:127.0.0.1:5060 -l tcp:127.0.0.1:5060"),
            "{p}"
        );
        assert!(
            p.ends_with("-A 'UAS_URI=\"sip:127.0.0.1:5070;transport=tcp\"'"),
            "{p}"
        );
        let p = plan(TargetKind::RelayGlommio, &e, &settings())
            .unwrap()
            .display;
        assert_eq!(
            p,
            "/x/sipring-bench relay --runtime glommio --transport tcp --listen 127.0.0.1:5060 \
             --upstream-bind 127.0.0.1:5061 --forward-to 127.0.0.1:5070 --client 127.0.0.1:5080 \
             --lifetime-s 30 --core 0 --recv-depth 2"
        );
        let reg = Scenario::by_name("register").unwrap();
        assert!(!TargetKind::KamailioStateless.supports(&reg));
        assert!(TargetKind::RelayStd.needs_uas(&reg));
        assert!(!TargetKind::Kamailio.needs_uas(&reg));
    }

    #[test]
    fn missing_sipring_binary_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let call = Scenario::by_name("invite").unwrap();
        let mut s = settings();
        s.sipring_bin = dir.path().join("no-such-sipring");
        let e = start(TargetKind::Sipring, &env(&call, dir.path(), None), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no sipring binary"), "{e}");
    }
}
