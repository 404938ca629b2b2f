//! The embedded store is crash-safe: a child process writes users and
//! bindings from several threads and reports each write the store
//! acknowledged; the test kills it with SIGKILL mid-stream, reopens the
//! database and finds every acknowledged write. The child checkpoints every
//! 20 ms, so the kill finds a database file made durable several times,
//! an emptied write-ahead log and the writes logged since; it runs once
//! with each `sync` mode.
//!
//! The child is this test binary run again with `SIPRING_CRASH_CHILD` set
//! (only the `crash_child` test then does anything).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sipring::store::embedded::{EmbeddedOptions, EmbeddedStore, SyncMode};
use sipring::store::suite::{binding, user};
use sipring::store::{BindingUpdate, Store};

const THREADS: usize = 4;

/// Kills the child by its pid when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sipring-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One acknowledgement line to the parent, flushed at once.
fn ack(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child: writes until killed (or for 30 s), printing `user N`,
/// `binding N` after each acknowledged write.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("SIPRING_CRASH_CHILD") else {
        return;
    };
    let sync = match std::env::var("SIPRING_CRASH_SYNC").as_deref() {
        Ok("disk") => SyncMode::Disk,
        _ => SyncMode::Os,
    };
    let opts = EmbeddedOptions {
        sync,
        checkpoint_every: Duration::from_millis(20),
        ..EmbeddedOptions::default()
    };
    let store =
        EmbeddedStore::open_with(std::path::Path::new(&dir), opts).expect("child opens the store");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                let mut i = 0u64;
                while t0.elapsed() < Duration::from_secs(30) {
                    let aor = format!("u{t}x{i}@example.com");
                    block_on(store.put_user(user(&aor, None))).expect("user write");
                    ack(&format!("user {aor}"));
                    let update = BindingUpdate {
                        put: vec![binding(&aor, "<sip:c@10.0.0.1>", 3_600_000)],
                        ..BindingUpdate::default()
                    };
                    block_on(store.update_bindings(&aor, update)).expect("binding write");
                    ack(&format!("binding {aor}"));
                    i += 1;
                }
            });
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    killed_child_loses_nothing("os");
}

#[test]
fn acknowledged_writes_survive_sigkill_with_disk_sync() {
    killed_child_loses_nothing("disk");
}

fn killed_child_loses_nothing(sync: &str) {
    let dir = temp_dir(&format!("crash-{sync}"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SIPRING_CRASH_CHILD", &dir)
        .env("SIPRING_CRASH_SYNC", sync)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let mut child = Guard(child);
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let mut users = Vec::new();
    let mut bindings = Vec::new();
    let t0 = Instant::now();
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(aor) = line.strip_prefix("user ") {
            users.push(aor.to_owned());
        } else if let Some(aor) = line.strip_prefix("binding ") {
            bindings.push(aor.to_owned());
        }
        if bindings.len() >= 400 || t0.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    // SIGKILL while the child still writes.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.0.wait();
    drop(child);
    assert!(
        bindings.len() >= 100,
        "the child acknowledged only {} bindings",
        bindings.len()
    );

    let store = EmbeddedStore::open(&dir).expect("reopens after the crash");
    for aor in &users {
        assert!(
            block_on(store.user(aor)).unwrap().is_some(),
            "acknowledged user {aor} lost"
        );
    }
    for aor in &bindings {
        assert_eq!(
            block_on(store.bindings(aor)).unwrap().len(),
            1,
            "acknowledged binding of {aor} lost"
        );
    }
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}
