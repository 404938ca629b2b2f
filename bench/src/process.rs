//! The processes the harness starts (sipp, Kamailio, the relays, sipring), and
//! how they are stopped.
//!
//! Every process is spawned as the leader of its own process group, so that the
//! children Kamailio forks are reached through the group id, which is the pid of
//! the process the harness started. A [`ProcessGuard`] stops its group when it
//! drops: SIGTERM, a bounded wait, then SIGKILL. SIGINT and SIGTERM sent to the
//! harness only raise a flag ([`interrupted`]); every wait loop polls it and
//! returns an error, so the guards drop and stop their groups. A panic hook
//! stops the groups still registered, because the release profile aborts on
//! panic and no destructor would run.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How often wait loops poll their condition and the interrupt flag.
pub const POLL: Duration = Duration::from_millis(10);

/// How long a stopped group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Process groups started and not yet stopped (for the panic hook).
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn interrupt_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Routes SIGINT and SIGTERM to the interrupt flag and installs the panic hook
/// that stops every live process group. Call once, early in `main`.
pub fn install_signal_handlers() -> io::Result<()> {
    let flag = interrupt_flag();
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(flag))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(flag))?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        stop_all_live_groups();
        previous(info);
    }));
    Ok(())
}

/// True once SIGINT or SIGTERM reached the harness.
pub fn interrupted() -> bool {
    interrupt_flag().load(Ordering::Relaxed)
}

/// Fails with a clear error once the harness was interrupted.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted by a signal: stopping every process started");
    }
    Ok(())
}

/// Sleeps `d` in small steps, returning early with an error on interrupt.
pub fn sleep_interruptible(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(POLL));
    }
}

/// Polls `cond` until it holds, for at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<bool> {
    let end = Instant::now() + limit;
    loop {
        check_interrupted()?;
        if cond()? {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

fn stop_all_live_groups() {
    let groups = match LIVE_GROUPS.lock() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

fn register_group(pgid: i32) {
    if let Ok(mut g) = LIVE_GROUPS.lock() {
        g.push(pgid);
    }
}

fn unregister_group(pgid: i32) {
    if let Ok(mut g) = LIVE_GROUPS.lock() {
        g.retain(|&p| p != pgid);
    }
}

/// A started process (and its process group) that is stopped when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stopped: bool,
}

impl ProcessGuard {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        check_interrupted()?;
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        register_group(child.id() as i32);
        Ok(Self {
            name: name.to_owned(),
            child,
            status: None,
            stopped: false,
        })
    }

    /// The pid of the started process, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the process has exited (non-blocking).
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.name))?;
        }
        Ok(self.status)
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still
    /// running then. Returns an error on interrupt.
    pub fn wait_timeout(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let mut status = None;
        wait_until(limit, || {
            status = self.try_status()?;
            Ok(status.is_some())
        })?;
        Ok(status)
    }

    /// Sends `sig` to the process group.
    pub fn signal(&self, sig: Signal) {
        let _ = killpg(Pid::from_raw(self.pid()), sig);
    }

    /// Stops the group: SIGTERM, up to 3 s for the leader to exit, then
    /// SIGKILL to whatever is left of the group. Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.stopped {
            return self.status;
        }
        self.stopped = true;
        let pgid = self.pid();
        if self.status.is_none() {
            self.signal(Signal::SIGTERM);
            let end = Instant::now() + TERM_GRACE;
            while Instant::now() < end {
                if let Ok(Some(s)) = self.child.try_wait() {
                    self.status = Some(s);
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        // Children of the leader (Kamailio's workers) may outlive it briefly.
        self.signal(Signal::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        unregister_group(pgid);
        self.status
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_stops_a_process_group_on_drop() {
        // A shell that starts a child in its group and waits: both must go.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & wait"]);
        let guard = ProcessGuard::spawn("sleeper", cmd).unwrap();
        let pgid = guard.pid();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!crate::procfs::group_pids(pgid).unwrap().is_empty());
        drop(guard);
        let gone = wait_until(Duration::from_secs(5), || {
            Ok(crate::procfs::group_pids(pgid)?.is_empty())
        })
        .unwrap();
        assert!(gone, "process group {pgid} survived its guard");
    }

    #[test]
    fn wait_timeout_returns_exit_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut guard = ProcessGuard::spawn("exit3", cmd).unwrap();
        let status = guard.wait_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
    }
}
