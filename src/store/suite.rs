//! The backend-generic test suite: the contract of [`Store`], checked
//! against any backend. The embedded store runs it in its unit tests; the
//! Cassandra backend runs it against a real node (tests/store_cassandra.rs).
//!
//! Call [`run_all`] with a backend over an empty store (a fresh data
//! directory, a fresh keyspace). It blocks the calling thread (a test
//! thread, never a shard) and panics with a message on the first broken
//! rule. One check waits ~2 s of real time for a binding to expire.

use std::time::{Duration, Instant};

use futures_lite::future::block_on;

use super::{
    Binding, BindingUpdate, DialogKey, DialogMutation, DialogPartition, DialogRecord, ProxyInfo,
    Store, StoreError, User, wall_ms,
};

/// Every check, in turn.
pub fn run_all(store: &dyn Store) {
    users_and_the_phone_index(store);
    bindings_add_refresh_remove(store);
    bindings_expire(store);
    deleting_a_user_removes_its_bindings(store);
    proxies_and_heartbeats(store);
    dialogs_by_partition(store);
    concurrent_requests_are_all_answered(store);
}

/// A user of `example.com` with made-up digests.
pub fn user(aor: &str, phone: Option<&str>) -> User {
    User {
        aor: aor.into(),
        realm: "example.com".into(),
        ha1_md5: "0123456789abcdef0123456789abcdef".into(),
        ha1_sha256: "ab".repeat(32),
        phone: phone.map(str::to_owned),
        enabled: true,
    }
}

/// A binding of `aor` at `contact` expiring `expires_in_ms` from now.
pub fn binding(aor: &str, contact: &str, expires_in_ms: i64) -> Binding {
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
        expires_at_ms: wall_ms() + expires_in_ms,
        source: Some("udp:127.0.0.1:5070".into()),
    }
}

fn put(bindings: Vec<Binding>) -> BindingUpdate {
    BindingUpdate {
        put: bindings,
        ..BindingUpdate::default()
    }
}

fn sorted(mut v: Vec<Binding>) -> Vec<Binding> {
    v.sort_by(|a, b| a.contact.cmp(&b.contact));
    v
}

/// Users: create, read by AOR and by phone, replace (the old phone leaves
/// the index), list in AOR order, delete.
pub fn users_and_the_phone_index(store: &dyn Store) {
    let epochs = store.epochs();
    let e0 = epochs.users();
    let alice = user("alice@example.com", Some("+15551230001"));
    block_on(store.put_user(alice.clone())).unwrap();
    block_on(store.put_user(user("bob@example.com", None))).unwrap();
    assert!(
        epochs.users() >= e0 + 2,
        "user writes bump the users' epoch"
    );
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

    assert!(block_on(store.delete_user("alice@example.com")).unwrap());
    assert!(!block_on(store.delete_user("alice@example.com")).unwrap());
    assert!(block_on(store.delete_user("bob@example.com")).unwrap());
    assert_eq!(block_on(store.user("alice@example.com")).unwrap(), None);
    assert_eq!(block_on(store.user_by_phone("+15551230002")).unwrap(), None);
    assert!(block_on(store.list_users()).unwrap().is_empty());
}

/// Bindings: an update answers with the AOR's live set and bumps its
/// epoch; a put replaces the row of its contact; removal by contact and
/// of all (`*`); an update naming another AOR is refused.
pub fn bindings_add_refresh_remove(store: &dyn Store) {
    let aor = "carol@example.com";
    let epochs = store.epochs();
    let e0 = epochs.bindings(aor);
    let a = binding(aor, "<sip:carol@10.0.0.2:5060>", 60_000);
    let b = binding(aor, "<sip:carol@10.0.0.3:5060;transport=tcp>", 60_000);
    let set = block_on(store.update_bindings(aor, put(vec![a.clone(), b.clone()]))).unwrap();
    assert_eq!(sorted(set.bindings), vec![a.clone(), b.clone()]);
    assert!(set.epoch > e0, "an update bumps the AOR's epoch");
    assert_eq!(epochs.bindings(aor), set.epoch);
    assert_eq!(
        sorted(block_on(store.bindings(aor)).unwrap()),
        vec![a.clone(), b.clone()]
    );
    assert!(
        block_on(store.bindings("nobody@example.com"))
            .unwrap()
            .is_empty()
    );

    // A refresh (same contact, new CSeq and expiry) replaces the row.
    let mut a2 = a.clone();
    a2.cseq = 43;
    a2.expires_at_ms += 30_000;
    let set = block_on(store.update_bindings(aor, put(vec![a2.clone()]))).unwrap();
    assert_eq!(sorted(set.bindings), vec![a2.clone(), b.clone()]);

    // Removal of one contact, in the same update as a put.
    let c = binding(aor, "<sip:carol@10.0.0.4>", 60_000);
    let update = BindingUpdate {
        remove: vec![a2.contact.clone()],
        put: vec![c.clone()],
        ..BindingUpdate::default()
    };
    let set = block_on(store.update_bindings(aor, update)).unwrap();
    assert_eq!(sorted(set.bindings), vec![b.clone(), c.clone()]);

    // `*`: everything goes, and a put in the same update stays.
    let d = binding(aor, "<sip:carol@10.0.0.5>", 60_000);
    let update = BindingUpdate {
        remove_all: true,
        put: vec![d.clone()],
        ..BindingUpdate::default()
    };
    let set = block_on(store.update_bindings(aor, update)).unwrap();
    assert_eq!(set.bindings, vec![d.clone()]);
    let update = BindingUpdate {
        remove_all: true,
        ..BindingUpdate::default()
    };
    assert!(
        block_on(store.update_bindings(aor, update))
            .unwrap()
            .bindings
            .is_empty()
    );
    assert!(block_on(store.bindings(aor)).unwrap().is_empty());

    let foreign = binding("dave@example.com", "<sip:d@h>", 60_000);
    assert!(matches!(
        block_on(store.update_bindings(aor, put(vec![foreign]))),
        Err(StoreError::Backend(_))
    ));
    assert!(
        block_on(store.bindings("dave@example.com"))
            .unwrap()
            .is_empty()
    );
}

/// A binding is not returned once its expiry has passed; the others stay.
pub fn bindings_expire(store: &dyn Store) {
    let aor = "erin@example.com";
    let long = binding(aor, "<sip:erin@10.0.0.2>", 60_000);
    let short = binding(aor, "<sip:erin@10.0.0.3>", 1_000);
    block_on(store.update_bindings(aor, put(vec![long.clone(), short.clone()]))).unwrap();
    assert_eq!(block_on(store.bindings(aor)).unwrap().len(), 2);
    let t0 = Instant::now();
    loop {
        let got = block_on(store.bindings(aor)).unwrap();
        if got == vec![long.clone()] {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a binding expiring after 1 s is still read: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // An update after the expiry answers without the expired binding.
    let other = binding(aor, "<sip:erin@10.0.0.4>", 60_000);
    let set = block_on(store.update_bindings(aor, put(vec![other.clone()]))).unwrap();
    assert_eq!(sorted(set.bindings), vec![long, other]);
    let all = BindingUpdate {
        remove_all: true,
        ..BindingUpdate::default()
    };
    block_on(store.update_bindings(aor, all)).unwrap();
}

/// `delete_user` takes the user's bindings with it.
pub fn deleting_a_user_removes_its_bindings(store: &dyn Store) {
    let aor = "frank@example.com";
    block_on(store.put_user(user(aor, Some("+15551239999")))).unwrap();
    let b = binding(aor, "<sip:frank@10.0.0.9>", 60_000);
    block_on(store.update_bindings(aor, put(vec![b]))).unwrap();
    let e = store.epochs().bindings(aor);
    assert!(block_on(store.delete_user(aor)).unwrap());
    assert!(block_on(store.bindings(aor)).unwrap().is_empty());
    assert!(store.epochs().bindings(aor) > e, "the AOR's epoch moves");
    assert_eq!(block_on(store.user_by_phone("+15551239999")).unwrap(), None);
}

/// Proxies: put, heartbeat, list in id order, delete.
pub fn proxies_and_heartbeats(store: &dyn Store) {
    let now = wall_ms();
    let p = |id: &str| ProxyInfo {
        node_id: id.into(),
        addresses: vec!["udp:10.0.0.1:5060".into(), "tcp:10.0.0.1:5060".into()],
        cores: 2,
        ring_ids: vec![1, 1 << 62],
        started_at_ms: now,
        heartbeat_ms: now,
        load: 0.0,
    };
    block_on(store.put_proxy(p("node-b"))).unwrap();
    block_on(store.put_proxy(p("node-a"))).unwrap();
    block_on(store.heartbeat("node-a", now + 5_000, 12.5)).unwrap();
    let all = block_on(store.proxies()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].node_id, "node-a");
    assert_eq!((all[0].heartbeat_ms, all[0].load), (now + 5_000, 12.5));
    assert_eq!(all[1], p("node-b"));
    block_on(store.delete_proxy("node-a")).unwrap();
    block_on(store.delete_proxy("node-b")).unwrap();
    assert!(block_on(store.proxies()).unwrap().is_empty());
}

/// Dialogs: upserts and deletes in order, read back by partition.
pub fn dialogs_by_partition(store: &dyn Store) {
    let now = wall_ms();
    let p1 = DialogPartition::new("node-a", 0, now, 300_000);
    let p2 = DialogPartition::new("node-a", 1, now, 300_000);
    let rec = |p: &DialogPartition, i: u32| DialogRecord {
        key: DialogKey {
            partition: p.clone(),
            call_id: format!("call-{i}"),
            from_tag: format!("f{i}"),
            to_tag: format!("t{i}"),
        },
        state: format!("SIP/2.0 200 OK\r\nCSeq: {i} INVITE\r\n").into_bytes(),
        updated_at_ms: now,
    };
    let muts = vec![
        DialogMutation::Upsert(rec(&p1, 1)),
        DialogMutation::Upsert(rec(&p1, 2)),
        DialogMutation::Upsert(rec(&p2, 3)),
        DialogMutation::Delete(rec(&p1, 2).key),
    ];
    block_on(store.write_dialogs(muts)).unwrap();
    let got = block_on(store.dialogs(vec![p1.clone()])).unwrap();
    assert_eq!(got, vec![rec(&p1, 1)]);
    let mut both = block_on(store.dialogs(vec![p1.clone(), p2.clone()])).unwrap();
    both.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(both, vec![rec(&p1, 1), rec(&p2, 3)]);
    let del = vec![
        DialogMutation::Delete(rec(&p1, 1).key),
        DialogMutation::Delete(rec(&p2, 3).key),
    ];
    block_on(store.write_dialogs(del)).unwrap();
    assert!(block_on(store.dialogs(vec![p1, p2])).unwrap().is_empty());
}

/// Several threads with requests in flight at once: every request is
/// answered and every write is there afterwards.
pub fn concurrent_requests_are_all_answered(store: &dyn Store) {
    const THREADS: usize = 4;
    const EACH: usize = 50;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                // Send all, then wait for all: many requests queued at once.
                let pending: Vec<_> = (0..EACH)
                    .map(|i| {
                        let aor = format!("c{t}x{i}@example.com");
                        let b = binding(&aor, "<sip:c@10.0.0.1>", 60_000);
                        store.update_bindings(&aor, put(vec![b]))
                    })
                    .collect();
                for p in pending {
                    assert_eq!(block_on(p).unwrap().bindings.len(), 1);
                }
            });
        }
    });
    for t in 0..THREADS {
        for i in 0..EACH {
            let aor = format!("c{t}x{i}@example.com");
            assert_eq!(block_on(store.bindings(&aor)).unwrap().len(), 1, "{aor}");
            let all = BindingUpdate {
                remove_all: true,
                ..BindingUpdate::default()
            };
            block_on(store.update_bindings(&aor, all)).unwrap();
        }
    }
}
