//! The Cassandra backend against a real single-node Cassandra (started by
//! scripts/test-all.sh): CRUD on every table, TTL expiry of bindings,
//! batched dialog writes, and a glommio shard awaiting the storage thread.

mod cassandra_support;

use std::time::Duration;

use futures_lite::future::block_on;
use sipring::store::cassandra::{
    Binding, DialogKey, DialogMutation, DialogPartition, DialogRecord, ProxyInfo, User,
};
use sipring::time::Instant;

use cassandra_support::{connect, now_ms, wait_until};

fn user(aor: &str, phone: Option<&str>) -> User {
    User {
        aor: aor.into(),
        realm: "example.com".into(),
        ha1_md5: "0123456789abcdef0123456789abcdef".into(),
        ha1_sha256: "ab".repeat(32),
        phone: phone.map(str::to_owned),
        enabled: true,
    }
}

fn binding(aor: &str, contact: &str, expires_in_s: i64) -> Binding {
    Binding {
        aor: aor.into(),
        contact: contact.into(),
        node: "node-a".into(),
        core: 1,
        path: vec!["<sip:edge1.example.com;lr>".into(), "<sip:edge2;lr>".into()],
        instance: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
        reg_id: Some(1),
        q_milli: 700,
        call_id: "reg-call-1".into(),
        cseq: 42,
        expires_at_ms: now_ms() + expires_in_s * 1000,
        source: Some("udp:127.0.0.1:5070".into()),
    }
}

/// The storage interface's contract (the suite the embedded store also
/// passes), on a fresh keyspace.
#[test]
fn the_store_contract_holds_on_cassandra() {
    let Some(store) = connect("suite") else {
        return;
    };
    sipring::store::suite::run_all(&store);
    store.shutdown(Duration::from_secs(5));
}

#[test]
fn users_crud_with_the_phone_index() {
    let Some(store) = connect("users") else {
        return;
    };
    let alice = user("alice@example.com", Some("+15551230001"));
    block_on(store.put_user(alice.clone())).unwrap();
    block_on(store.put_user(user("bob@example.com", None))).unwrap();

    assert_eq!(
        block_on(store.user("alice@example.com")).unwrap(),
        Some(alice.clone())
    );
    assert_eq!(block_on(store.user("nobody@example.com")).unwrap(), None);
    assert_eq!(
        block_on(store.user_by_phone("+15551230001")).unwrap(),
        Some(alice.clone())
    );
    assert_eq!(block_on(store.user_by_phone("+15550000000")).unwrap(), None);

    // A new phone replaces the old one in the index; disabling sticks.
    let mut alice2 = user("alice@example.com", Some("+15551230002"));
    alice2.enabled = false;
    block_on(store.put_user(alice2.clone())).unwrap();
    assert_eq!(block_on(store.user_by_phone("+15551230001")).unwrap(), None);
    assert_eq!(
        block_on(store.user_by_phone("+15551230002")).unwrap(),
        Some(alice2.clone())
    );

    let all = block_on(store.list_users()).unwrap();
    let aors: Vec<&str> = all.iter().map(|u| u.aor.as_str()).collect();
    assert_eq!(aors, vec!["alice@example.com", "bob@example.com"]);

    // Deleting a user removes its index entry and its bindings.
    block_on(store.put_binding(
        binding("alice@example.com", "<sip:alice@10.0.0.1>", 60),
        Duration::from_secs(60),
    ))
    .unwrap();
    assert!(block_on(store.delete_user("alice@example.com")).unwrap());
    assert!(!block_on(store.delete_user("alice@example.com")).unwrap());
    assert_eq!(block_on(store.user("alice@example.com")).unwrap(), None);
    assert_eq!(block_on(store.user_by_phone("+15551230002")).unwrap(), None);
    assert!(
        block_on(store.bindings("alice@example.com"))
            .unwrap()
            .is_empty()
    );
    store.shutdown(Duration::from_secs(5));
}

#[test]
fn bindings_crud_and_ttl_expiry() {
    let Some(store) = connect("bindings") else {
        return;
    };
    let aor = "carol@example.com";
    let long = binding(aor, "<sip:carol@10.0.0.2:5060>", 60);
    let short = binding(aor, "<sip:carol@10.0.0.3:5060;transport=tcp>", 1);
    block_on(store.put_binding(long.clone(), Duration::from_secs(60))).unwrap();
    block_on(store.put_binding(short.clone(), Duration::from_secs(1))).unwrap();
    let mut got = block_on(store.bindings(aor)).unwrap();
    got.sort_by(|a, b| a.contact.cmp(&b.contact));
    assert_eq!(got, vec![long.clone(), short.clone()]);

    // The 1 s TTL removes the short one; the other stays.
    assert!(
        wait_until(Duration::from_secs(5), || {
            block_on(store.bindings(aor)).unwrap().len() == 1
        }),
        "the binding with a 1 s TTL did not expire"
    );
    assert_eq!(block_on(store.bindings(aor)).unwrap(), vec![long.clone()]);

    // A refresh rewrites the row (new CSeq).
    let mut refreshed = long.clone();
    refreshed.cseq = 43;
    block_on(store.put_binding(refreshed.clone(), Duration::from_secs(60))).unwrap();
    assert_eq!(block_on(store.bindings(aor)).unwrap(), vec![refreshed]);

    block_on(store.delete_binding(aor, &long.contact)).unwrap();
    assert!(block_on(store.bindings(aor)).unwrap().is_empty());

    block_on(store.put_binding(long.clone(), Duration::from_secs(60))).unwrap();
    block_on(store.put_binding(binding(aor, "<sip:c@h2>", 60), Duration::from_secs(60))).unwrap();
    block_on(store.delete_bindings(aor)).unwrap();
    assert!(block_on(store.bindings(aor)).unwrap().is_empty());
    store.shutdown(Duration::from_secs(5));
}

#[test]
fn proxies_crud_and_heartbeat() {
    let Some(store) = connect("proxies") else {
        return;
    };
    let p = ProxyInfo {
        node_id: "node-a".into(),
        addresses: vec!["udp:10.0.0.1:5060".into(), "tcp:10.0.0.1:5060".into()],
        cores: 2,
        ring_ids: vec![0, u64::MAX / 2 + 1, u64::MAX],
        started_at_ms: 1_700_000_000_000,
        heartbeat_ms: 1_700_000_000_000,
        load: 0.0,
    };
    block_on(store.put_proxy(p.clone())).unwrap();
    let q = ProxyInfo {
        node_id: "node-b".into(),
        ..p.clone()
    };
    block_on(store.put_proxy(q.clone())).unwrap();
    assert_eq!(
        block_on(store.proxies()).unwrap(),
        vec![p.clone(), q.clone()]
    );

    block_on(store.heartbeat("node-a", 1_700_000_005_000, 123.5)).unwrap();
    let got = block_on(store.proxies()).unwrap();
    assert_eq!(got[0].heartbeat_ms, 1_700_000_005_000);
    assert_eq!(got[0].load, 123.5);
    assert_eq!(got[0].ring_ids, p.ring_ids, "u64 ring ids survive bigint");

    block_on(store.delete_proxy("node-b")).unwrap();
    assert_eq!(block_on(store.proxies()).unwrap().len(), 1);
    store.shutdown(Duration::from_secs(5));
}

fn dialog(p: &DialogPartition, i: u32) -> DialogRecord {
    DialogRecord {
        key: DialogKey {
            partition: p.clone(),
            call_id: format!("call-{i}@example.com"),
            from_tag: format!("from{i}"),
            to_tag: format!("to{i}"),
        },
        state: format!("state of dialog {i}").into_bytes(),
        updated_at_ms: now_ms(),
    }
}

#[test]
fn dialog_mutations_are_batched_written_and_deleted() {
    let Some(store) = connect("dialogs") else {
        return;
    };
    let c = store.config().clone();
    let now = now_ms();
    let p0 = DialogPartition::new("node-a", 0, now, c.bucket_ms());
    let p1 = DialogPartition::new("node-a", 0, now - c.bucket_ms(), c.bucket_ms());
    let mut w = store.dialog_writer(0);
    let t = Instant::from_nanos(0);
    let n = 300u32;
    for i in 0..n {
        let p = if i % 3 == 0 { &p1 } else { &p0 };
        w.push(t, DialogMutation::Upsert(dialog(p, i)));
    }
    w.handle_timeout(t + Duration::from_secs(1));
    assert_eq!(w.held(), 0);
    let stats = store.stats().clone();
    assert!(wait_until(Duration::from_secs(20), || stats
        .snapshot()
        .persisted
        >= u64::from(n)));

    let recent = DialogPartition::recent(
        "node-a",
        0,
        now,
        i64::from(c.dialog_ttl_secs) * 1000,
        c.bucket_ms(),
    );
    assert!(recent.contains(&p0) && recent.contains(&p1));
    let mut rows = block_on(store.dialogs(recent.clone())).unwrap();
    assert_eq!(rows.len(), n as usize);
    rows.sort_by_key(|r| r.key.call_id.clone());
    let want = dialog(&p1, 0);
    let got = rows.iter().find(|r| r.key == want.key).unwrap();
    assert_eq!(got.state, want.state);

    // An update then the deletes (BYE).
    let mut upd = dialog(&p0, 1);
    upd.state = b"confirmed".to_vec();
    w.push(t, DialogMutation::Upsert(upd.clone()));
    w.flush();
    assert!(wait_until(Duration::from_secs(10), || stats
        .snapshot()
        .persisted
        > u64::from(n)));
    let rows = block_on(store.dialogs(vec![p0.clone()])).unwrap();
    assert_eq!(
        rows.iter().find(|r| r.key == upd.key).unwrap().state,
        b"confirmed"
    );

    for i in 0..n {
        let p = if i % 3 == 0 { &p1 } else { &p0 };
        w.push(t, DialogMutation::Delete(dialog(p, i).key));
    }
    w.flush();
    assert!(wait_until(Duration::from_secs(20), || stats
        .snapshot()
        .persisted
        > u64::from(2 * n)));
    assert!(block_on(store.dialogs(recent)).unwrap().is_empty());

    let s = stats.snapshot();
    assert_eq!((s.dropped, s.failed), (0, 0), "{s:?}");
    assert!(!s.degraded);
    // 64 mutations of (at most) 2 partitions per flush: far fewer requests
    // than mutations.
    assert!(s.requests * 10 < s.persisted, "{s:?}");
    drop(w);
    store.shutdown(Duration::from_secs(5));
}

/// A glommio shard awaits the storage thread's answers and drives a dialog
/// writer with glommio's timer: no tokio runtime on the shard, and the
/// storage thread wakes the shard's task.
#[test]
fn a_glommio_shard_awaits_the_store_without_tokio() {
    let Some(store) = connect("glommio") else {
        return;
    };
    block_on(store.put_user(user("dave@example.com", None))).unwrap();
    let shard_store = store.clone();
    let ex = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "no tokio on a shard"
            );
            let u = shard_store.user("dave@example.com").await.unwrap();
            assert_eq!(u.map(|u| u.aor), Some("dave@example.com".to_owned()));
            // Many requests in flight at once, each awaited.
            let pending: Vec<_> = (0..50)
                .map(|_| shard_store.user("dave@example.com"))
                .collect();
            for p in pending {
                assert!(p.await.unwrap().is_some());
            }
            let mut w = shard_store.dialog_writer(3);
            let p = DialogPartition::new("node-g", 3, now_ms(), shard_store.config().bucket_ms());
            let start = std::time::Instant::now();
            let at = |s: std::time::Instant| Instant::from_nanos(s.elapsed().as_nanos() as u64);
            w.push(at(start), DialogMutation::Upsert(dialog(&p, 7)));
            // The core's timer fires at the writer's deadline.
            let due = w.poll_timeout().unwrap();
            glommio::timer::sleep(due.saturating_duration_since(at(start))).await;
            w.handle_timeout(at(start));
            assert_eq!(w.held(), 0);
            let rows = loop {
                let rows = shard_store.dialogs(vec![p.clone()]).await.unwrap();
                if !rows.is_empty() || start.elapsed() > Duration::from_secs(10) {
                    break rows;
                }
                glommio::timer::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(rows.len(), 1);
        })
        .unwrap();
    ex.join().unwrap();
    store.shutdown(Duration::from_secs(5));
}

/// Kills the child by pid when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sipring serve --store cassandra://...` connects, creates the schema,
/// announces itself in `proxies` and retracts itself on SIGTERM.
#[test]
fn serve_with_store_cassandra_announces_the_node() {
    let Some(c) = cassandra_support::config("serve") else {
        return;
    };
    let url = format!("cassandra://{}/{}", c.hosts[0], c.keyspace);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sipring"))
        .args([
            "serve",
            "--store",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
        ])
        .args([
            "--forward-to",
            "127.0.0.1:9",
            "--relay",
            "--metrics",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    // Serving (signal handlers installed) once it logs its addresses.
    let stderr = proc.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("sipring: {line}");
            if let Some(i) = line.find("addr=")
                && line.contains("metrics endpoint")
            {
                let rest = &line[i + 5..];
                let end = rest.find(' ').unwrap_or(rest.len());
                let _ = tx.send(Some(rest[..end].to_owned()));
            }
            if line.contains("listening") {
                let _ = tx.send(None);
            }
        }
    });
    let metrics = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("sipring logs its metrics address")
        .expect("metrics address first");
    rx.recv_timeout(Duration::from_secs(30))
        .expect("sipring serves");
    let store = sipring::store::cassandra::CassandraStore::connect(c).unwrap();
    let mut proxies = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            proxies = block_on(store.proxies()).unwrap_or_default();
            !proxies.is_empty()
        }),
        "sipring did not announce itself"
    );
    let p = &proxies[0];
    assert_eq!(p.cores, 1);
    assert_eq!(p.addresses.len(), 2, "{p:?}");
    assert!(p.addresses[0].starts_with("udp:127.0.0.1:"), "{p:?}");

    // The store's families are on the metrics endpoint.
    let text = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(text.contains("sipring_store_degraded 0"), "{text}");
    assert!(
        text.contains("sipring_store_dialog_mutations_dropped_total 0"),
        "{text}"
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(proc.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        proc.0.try_wait().unwrap().is_some()
    }));
    assert!(proc.0.try_wait().unwrap().unwrap().success());
    assert!(
        block_on(store.proxies()).unwrap().is_empty(),
        "not retracted"
    );
    store.shutdown(Duration::from_secs(5));
}

/// The engine-facing sink: a dialog established by a 2xx is written to its
/// core's partition; its BYE (from either side) deletes it; a re-INVITE's
/// 2xx updates it in place.
#[test]
fn the_dialog_sink_writes_on_2xx_and_deletes_on_bye() {
    use sipring::store::cassandra::CassandraDialogs;
    use sipring::store::dialog::{DialogEvent, DialogSink};
    let Some(store) = connect("sink") else { return };
    let mut sink = CassandraDialogs::new(&store, "node-s", 1);
    let t = Instant::from_nanos(1);
    let ev = |call: &'static [u8], state: &'static [u8]| DialogEvent {
        call_id: call,
        from_tag: b"caller",
        to_tag: b"callee",
        state,
    };
    sink.established(t, ev(b"d1@example.com", b"SIP/2.0 200 OK\r\n"));
    sink.established(t, ev(b"d2@example.com", b"SIP/2.0 200 OK\r\n"));
    sink.handle_timeout(t + Duration::from_secs(1));
    let c = store.config().clone();
    let recent = DialogPartition::recent("node-s", 1, now_ms(), 600_000, c.bucket_ms());
    let rows = |store: &sipring::store::cassandra::CassandraStore| {
        let mut r = block_on(store.dialogs(recent.clone())).unwrap();
        r.sort_by(|a, b| a.key.call_id.cmp(&b.key.call_id));
        r
    };
    assert!(wait_until(Duration::from_secs(10), || rows(&store).len() == 2));
    let r = rows(&store);
    assert_eq!(
        (r[0].key.from_tag.as_str(), r[0].key.to_tag.as_str()),
        ("caller", "callee")
    );

    // re-INVITE: same row, new state.
    sink.established(t, ev(b"d1@example.com", b"SIP/2.0 200 OK\r\nX: 2\r\n"));
    // BYE from the callee (tags reversed) and from the caller.
    sink.ended(t, b"d2@example.com", b"callee", b"caller");
    sink.handle_timeout(t + Duration::from_secs(2));
    assert!(wait_until(Duration::from_secs(10), || {
        let r = rows(&store);
        r.len() == 1 && r[0].state.ends_with(b"X: 2\r\n")
    }));
    sink.ended(t, b"d1@example.com", b"caller", b"callee");
    sink.ended(t, b"never@example.com", b"x", b"y");
    sink.handle_timeout(t + Duration::from_secs(3));
    assert!(wait_until(Duration::from_secs(10), || rows(&store).is_empty()));
    assert_eq!((sink.live(), sink.unknown_ends()), (0, 1));
    drop(sink);
    store.shutdown(Duration::from_secs(5));
}

/// A REGISTER's change is one batch on the AOR's partition; a contact both
/// removed and put is put (the batch's deletion would otherwise win its
/// timestamp tie), and `*` with new contacts leaves only those.
#[test]
fn update_bindings_is_one_batch_with_the_ties_resolved() {
    use sipring::store::{BindingUpdate, Store};
    let Some(store) = connect("update") else {
        return;
    };
    let aor = "erin@example.com";
    let (a, b) = (binding(aor, "<sip:a@h>", 60), binding(aor, "<sip:b@h>", 60));
    let set = block_on(Store::update_bindings(
        &store,
        aor,
        BindingUpdate {
            put: vec![a.clone(), b.clone()],
            ..BindingUpdate::default()
        },
    ))
    .unwrap();
    assert_eq!(set.bindings.len(), 2);
    let mut a2 = a.clone();
    a2.cseq = 99;
    let set = block_on(Store::update_bindings(
        &store,
        aor,
        BindingUpdate {
            remove: vec![a.contact.clone(), b.contact.clone()],
            put: vec![a2.clone()],
            ..BindingUpdate::default()
        },
    ))
    .unwrap();
    assert_eq!(set.bindings, vec![a2.clone()], "removed and put: put");
    let c = binding(aor, "<sip:c@h>", 60);
    let set = block_on(Store::update_bindings(
        &store,
        aor,
        BindingUpdate {
            remove_all: true,
            put: vec![c.clone()],
            ..BindingUpdate::default()
        },
    ))
    .unwrap();
    assert_eq!(set.bindings, vec![c], "* then a new contact");
    let set = block_on(Store::update_bindings(
        &store,
        aor,
        BindingUpdate {
            remove_all: true,
            ..BindingUpdate::default()
        },
    ))
    .unwrap();
    assert!(set.bindings.is_empty());
    store.shutdown(Duration::from_secs(5));
}
