//! The embedded store: the single-node default backend of [`Store`], a
//! redb database in `<data_dir>/sipring.redb`.
//!
//! One storage thread (`sipring-store`) owns the database. Requests come
//! over a bounded channel (`try_send`: a full queue fails the request with
//! `Overloaded`, never blocks the caller) and are answered through
//! [`Pending`] futures.
//!
//! Crash safety: a write is answered only after the transaction holding it
//! committed with redb's `Durability::Immediate` (fsync), so after `kill -9`
//! every acknowledged user and registration is in the file. Group commit:
//! the thread takes every request already queued (up to [`MAX_BATCH`]) and
//! runs them in order in one transaction: one fsync for the whole batch,
//! which is what lets thousands of registrations per second each wait for
//! a durable commit. Reads in a batch with writes see the writes before
//! them; a batch of reads alone takes a read transaction (no commit).
//!
//! Expiry: bindings are also indexed by expiry time, so expired ones are
//! found with one range read from the start of the index (never a scan of
//! users or bindings) and removed once a second, at most [`SWEEP_LIMIT`] at
//! a time; reads never return an expired binding in the meantime.
//!
//! redb locks the file: a second process cannot open it while `sipring
//! serve` runs ([`OpenError::Locked`]).

mod codec;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::{
    Answer, Binding, BindingSet, BindingUpdate, DialogMutation, DialogPartition, DialogRecord,
    Epochs, Pending, ProxyInfo, Store, StoreError, User, wall_ms,
};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "sipring.redb";
/// Most requests run in one transaction.
pub const MAX_BATCH: usize = 512;
/// Most expired bindings removed per sweep.
pub const SWEEP_LIMIT: usize = 4096;
/// Requests that may wait for the storage thread.
const QUEUE: usize = 65_536;
/// How often expired bindings are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Bytes = &'static [u8];
const USERS: TableDefinition<&str, Bytes> = TableDefinition::new("users");
const PHONES: TableDefinition<&str, &str> = TableDefinition::new("users_by_phone");
const BINDINGS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bindings");
const EXPIRY: TableDefinition<Bytes, ()> = TableDefinition::new("binding_expiry");
const PROXIES: TableDefinition<&str, Bytes> = TableDefinition::new("proxies");
const DIALOGS: TableDefinition<Bytes, Bytes> = TableDefinition::new("dialogs");

/// Why the store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (a running `sipring serve`) holds the database.
    Locked(PathBuf),
    /// The directory or file could not be created or read.
    Io(PathBuf, std::io::Error),
    /// redb refused the file (damaged, or another format).
    Database(PathBuf, String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Locked(p) => write!(f, "{}: in use by another process", p.display()),
            OpenError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            OpenError::Database(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for OpenError {}

/// A handle to the embedded store (cheap to clone, `Send`).
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: Sender<Op>,
    epochs: Arc<Epochs>,
    path: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (creating when absent) the store in `data_dir` and starts its
    /// thread.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|e| OpenError::Io(data_dir.to_owned(), e))?;
        let path = data_dir.join(FILE_NAME);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(OpenError::Locked(path)),
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))) => {
                return Err(OpenError::Io(path, e));
            }
            Err(e) => return Err(OpenError::Database(path, e.to_string())),
        };
        // Create every table, so that reads never find one missing.
        let created = (|| -> Result<(), StoreError> {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(USERS).map_err(db_err)?;
            txn.open_table(PHONES).map_err(db_err)?;
            txn.open_table(BINDINGS).map_err(db_err)?;
            txn.open_table(EXPIRY).map_err(db_err)?;
            txn.open_table(PROXIES).map_err(db_err)?;
            txn.open_table(DIALOGS).map_err(db_err)?;
            txn.commit().map_err(db_err)
        })();
        created.map_err(|e| OpenError::Database(path.clone(), e.to_string()))?;
        let (tx, rx) = channel::bounded(QUEUE);
        let epochs = Arc::new(Epochs::default());
        let worker = Worker {
            db,
            epochs: epochs.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sipring-store".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| OpenError::Io(path.clone(), e))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                tx,
                epochs,
                path,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the storage thread once this is the last handle: it answers
    /// what is queued, then the file is closed. With other handles alive
    /// this only drops this one.
    pub fn close(self) {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            return;
        };
        let thread = inner.thread.lock().ok().and_then(|mut t| t.take());
        drop(inner.tx);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    fn send<T>(&self, make: impl FnOnce(Answer<T>) -> Op) -> Pending<T> {
        let (answer, pending) = Pending::channel();
        match self.inner.tx.try_send(make(answer)) {
            Ok(()) => pending,
            Err(TrySendError::Full(_)) => Pending::failed(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Pending::failed(super::pending::stopped()),
        }
    }
}

impl Store for EmbeddedStore {
    fn user(&self, aor: &str) -> Pending<Option<User>> {
        let aor = aor.to_owned();
        self.send(|a| Op::User(aor, a))
    }

    fn user_by_phone(&self, phone: &str) -> Pending<Option<User>> {
        let phone = phone.to_owned();
        self.send(|a| Op::UserByPhone(phone, a))
    }

    fn put_user(&self, user: User) -> Pending<()> {
        self.send(|a| Op::PutUser(user, a))
    }

    fn delete_user(&self, aor: &str) -> Pending<bool> {
        let aor = aor.to_owned();
        self.send(|a| Op::DeleteUser(aor, a))
    }

    fn list_users(&self) -> Pending<Vec<User>> {
        self.send(Op::ListUsers)
    }

    fn bindings(&self, aor: &str) -> Pending<Vec<Binding>> {
        let aor = aor.to_owned();
        self.send(|a| Op::Bindings(aor, a))
    }

    fn update_bindings(&self, aor: &str, update: BindingUpdate) -> Pending<BindingSet> {
        let aor = aor.to_owned();
        self.send(|a| Op::UpdateBindings(aor, update, a))
    }

    fn put_proxy(&self, proxy: ProxyInfo) -> Pending<()> {
        self.send(|a| Op::PutProxy(proxy, a))
    }

    fn heartbeat(&self, node_id: &str, at_ms: i64, load: f64) -> Pending<()> {
        let node_id = node_id.to_owned();
        self.send(|a| Op::Heartbeat(node_id, at_ms, load, a))
    }

    fn proxies(&self) -> Pending<Vec<ProxyInfo>> {
        self.send(Op::Proxies)
    }

    fn delete_proxy(&self, node_id: &str) -> Pending<()> {
        let node_id = node_id.to_owned();
        self.send(|a| Op::DeleteProxy(node_id, a))
    }

    fn write_dialogs(&self, mutations: Vec<DialogMutation>) -> Pending<()> {
        self.send(|a| Op::WriteDialogs(mutations, a))
    }

    fn dialogs(&self, partitions: Vec<DialogPartition>) -> Pending<Vec<DialogRecord>> {
        self.send(|a| Op::Dialogs(partitions, a))
    }

    fn epochs(&self) -> Arc<Epochs> {
        self.inner.epochs.clone()
    }
}

/// One request to the storage thread, with where its answer goes.
#[derive(Debug)]
enum Op {
    User(String, Answer<Option<User>>),
    UserByPhone(String, Answer<Option<User>>),
    PutUser(User, Answer<()>),
    DeleteUser(String, Answer<bool>),
    ListUsers(Answer<Vec<User>>),
    Bindings(String, Answer<Vec<Binding>>),
    UpdateBindings(String, BindingUpdate, Answer<BindingSet>),
    PutProxy(ProxyInfo, Answer<()>),
    Heartbeat(String, i64, f64, Answer<()>),
    Proxies(Answer<Vec<ProxyInfo>>),
    DeleteProxy(String, Answer<()>),
    WriteDialogs(Vec<DialogMutation>, Answer<()>),
    Dialogs(Vec<DialogPartition>, Answer<Vec<DialogRecord>>),
}

impl Op {
    fn is_read(&self) -> bool {
        matches!(
            self,
            Op::User(..)
                | Op::UserByPhone(..)
                | Op::ListUsers(..)
                | Op::Bindings(..)
                | Op::Proxies(..)
                | Op::Dialogs(..)
        )
    }
}

type Res<T> = Result<T, StoreError>;

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("undecodable {what} record"))
}

/// What to do once the batch's transaction has committed (or failed):
/// bump change counters, then answer.
type Done = Box<dyn FnOnce(Option<&StoreError>)>;

fn answer_after<T: 'static>(a: Answer<T>, r: Res<T>) -> Done {
    Box::new(move |failed| {
        a.send(match failed {
            Some(e) => Err(e.clone()),
            None => r,
        })
    })
}

struct Worker {
    db: Database,
    epochs: Arc<Epochs>,
}

impl Worker {
    fn run(self, rx: Receiver<Op>) {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                if batch.iter().all(Op::is_read) {
                    self.read_batch(&mut batch);
                } else {
                    self.write_batch(&mut batch);
                }
            }
            if Instant::now() >= next_sweep {
                if let Err(e) = self.sweep(wall_ms()) {
                    tracing::warn!("embedded store: removing expired bindings: {e}");
                }
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
        }
        tracing::debug!("embedded store: thread stopped");
    }

    fn read_batch(&self, batch: &mut Vec<Op>) {
        let txn = match self.db.begin_read() {
            Ok(t) => t,
            Err(e) => {
                let e = db_err(e);
                for op in batch.drain(..) {
                    fail(op, &e);
                }
                return;
            }
        };
        let now = wall_ms();
        let tables = (|| -> Result<_, StoreError> {
            Ok((
                txn.open_table(USERS).map_err(db_err)?,
                txn.open_table(PHONES).map_err(db_err)?,
                txn.open_table(BINDINGS).map_err(db_err)?,
                txn.open_table(PROXIES).map_err(db_err)?,
                txn.open_table(DIALOGS).map_err(db_err)?,
            ))
        })();
        let (users, phones, bindings, proxies, dialogs) = match tables {
            Ok(t) => t,
            Err(e) => {
                for op in batch.drain(..) {
                    fail(op, &e);
                }
                return;
            }
        };
        for op in batch.drain(..) {
            match op {
                Op::User(aor, a) => a.send(get_user(&users, &aor)),
                Op::UserByPhone(p, a) => a.send(get_user_by_phone(&users, &phones, &p)),
                Op::ListUsers(a) => a.send(list_users(&users)),
                Op::Bindings(aor, a) => a.send(live_bindings(&bindings, &aor, now)),
                Op::Proxies(a) => a.send(list_proxies(&proxies)),
                Op::Dialogs(parts, a) => a.send(read_dialogs(&dialogs, &parts)),
                other => fail(other, &StoreError::Backend("write in a read batch".into())),
            }
        }
    }

    fn write_batch(&self, batch: &mut Vec<Op>) {
        let mut done: Vec<Done> = Vec::with_capacity(batch.len());
        let mut ops = batch.drain(..);
        let result = (|| -> Result<(), StoreError> {
            let mut txn = self.db.begin_write().map_err(db_err)?;
            txn.set_durability(Durability::Immediate);
            {
                let mut t = Tables {
                    users: txn.open_table(USERS).map_err(db_err)?,
                    phones: txn.open_table(PHONES).map_err(db_err)?,
                    bindings: txn.open_table(BINDINGS).map_err(db_err)?,
                    expiry: txn.open_table(EXPIRY).map_err(db_err)?,
                    proxies: txn.open_table(PROXIES).map_err(db_err)?,
                    dialogs: txn.open_table(DIALOGS).map_err(db_err)?,
                };
                let now = wall_ms();
                for op in ops.by_ref() {
                    let (d, r) = t.apply(op, now, &self.epochs);
                    done.push(d);
                    r?;
                }
            }
            txn.commit().map_err(db_err)
        })();
        match result {
            Ok(()) => done.into_iter().for_each(|d| d(None)),
            Err(e) => {
                tracing::warn!("embedded store: write failed: {e}");
                done.into_iter().for_each(|d| d(Some(&e)));
                for op in ops {
                    fail(op, &e);
                }
            }
        }
    }

    /// Removes bindings expired at `now_ms`, oldest first, at most
    /// `SWEEP_LIMIT`. Not fsynced: a sweep lost in a crash is redone.
    fn sweep(&self, now_ms: i64) -> Result<usize, StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(Durability::Eventual);
        let n = {
            let mut expiry = txn.open_table(EXPIRY).map_err(db_err)?;
            let mut bindings = txn.open_table(BINDINGS).map_err(db_err)?;
            let bound = codec::expiry_bound(now_ms);
            let mut keys = Vec::new();
            for item in expiry.range::<&[u8]>(..&bound[..]).map_err(db_err)? {
                let (k, _) = item.map_err(db_err)?;
                keys.push(k.value().to_vec());
                if keys.len() >= SWEEP_LIMIT {
                    break;
                }
            }
            for k in &keys {
                expiry.remove(&k[..]).map_err(db_err)?;
                if let Some(bk) = codec::binding_key_of_expiry(k) {
                    bindings.remove(bk).map_err(db_err)?;
                }
            }
            keys.len()
        };
        if n == 0 {
            txn.abort().map_err(db_err)?;
        } else {
            txn.commit().map_err(db_err)?;
            tracing::debug!("embedded store: removed {n} expired bindings");
        }
        Ok(n)
    }
}

/// Answers a request that could not run.
fn fail(op: Op, e: &StoreError) {
    let e = e.clone();
    match op {
        Op::User(_, a) | Op::UserByPhone(_, a) => a.send(Err(e)),
        Op::PutUser(_, a)
        | Op::PutProxy(_, a)
        | Op::Heartbeat(_, _, _, a)
        | Op::DeleteProxy(_, a)
        | Op::WriteDialogs(_, a) => a.send(Err(e)),
        Op::DeleteUser(_, a) => a.send(Err(e)),
        Op::ListUsers(a) => a.send(Err(e)),
        Op::Bindings(_, a) => a.send(Err(e)),
        Op::UpdateBindings(_, _, a) => a.send(Err(e)),
        Op::Proxies(a) => a.send(Err(e)),
        Op::Dialogs(_, a) => a.send(Err(e)),
    }
}

struct Tables<'txn> {
    users: redb::Table<'txn, &'static str, Bytes>,
    phones: redb::Table<'txn, &'static str, &'static str>,
    bindings: redb::Table<'txn, Bytes, Bytes>,
    expiry: redb::Table<'txn, Bytes, ()>,
    proxies: redb::Table<'txn, &'static str, Bytes>,
    dialogs: redb::Table<'txn, Bytes, Bytes>,
}

impl Tables<'_> {
    /// Runs one request inside the batch's transaction: what to do after
    /// the commit, and a storage failure that aborts the whole batch.
    fn apply(&mut self, op: Op, now: i64, epochs: &Arc<Epochs>) -> (Done, Res<()>) {
        fn bail<T: 'static>(a: Answer<T>, e: StoreError) -> (Done, Res<()>) {
            (answer_after(a, Err(e.clone())), Err(e))
        }
        fn ok<T: 'static>(a: Answer<T>, v: T) -> (Done, Res<()>) {
            (answer_after(a, Ok(v)), Ok(()))
        }
        match op {
            Op::User(aor, a) => (answer_after(a, get_user(&self.users, &aor)), Ok(())),
            Op::UserByPhone(p, a) => (
                answer_after(a, get_user_by_phone(&self.users, &self.phones, &p)),
                Ok(()),
            ),
            Op::ListUsers(a) => (answer_after(a, list_users(&self.users)), Ok(())),
            Op::Bindings(aor, a) => (
                answer_after(a, live_bindings(&self.bindings, &aor, now)),
                Ok(()),
            ),
            Op::Proxies(a) => (answer_after(a, list_proxies(&self.proxies)), Ok(())),
            Op::Dialogs(parts, a) => (answer_after(a, read_dialogs(&self.dialogs, &parts)), Ok(())),
            Op::PutUser(user, a) => match self.put_user(&user) {
                Err(e) => bail(a, e),
                Ok(()) => {
                    let epochs = epochs.clone();
                    let d: Done = Box::new(move |failed| {
                        if failed.is_none() {
                            epochs.bump_users();
                        }
                        a.send(failed.map_or(Ok(()), |e| Err(e.clone())));
                    });
                    (d, Ok(()))
                }
            },
            Op::DeleteUser(aor, a) => match self.delete_user(&aor) {
                Err(e) => bail(a, e),
                Ok(existed) => {
                    let epochs = epochs.clone();
                    let d: Done = Box::new(move |failed| {
                        if failed.is_none() {
                            epochs.bump_users();
                            epochs.bump_bindings(&aor);
                        }
                        a.send(failed.map_or(Ok(existed), |e| Err(e.clone())));
                    });
                    (d, Ok(()))
                }
            },
            Op::UpdateBindings(aor, update, a) => {
                if let Some(b) = update.put.iter().find(|b| b.aor != aor) {
                    let e =
                        StoreError::Backend(format!("binding of {} in an update of {aor}", b.aor));
                    // A refused request, not a storage failure: the batch goes on.
                    return (answer_after(a, Err(e)), Ok(()));
                }
                let live = self
                    .update_bindings(&aor, &update)
                    .and_then(|()| live_bindings(&self.bindings, &aor, now));
                match live {
                    Err(e) => bail(a, e),
                    Ok(live) => {
                        let epochs = epochs.clone();
                        let d: Done = Box::new(move |failed| match failed {
                            Some(e) => a.send(Err(e.clone())),
                            None => {
                                let epoch = epochs.bump_bindings(&aor);
                                a.send(Ok(BindingSet {
                                    bindings: live,
                                    epoch,
                                }))
                            }
                        });
                        (d, Ok(()))
                    }
                }
            }
            Op::PutProxy(p, a) => match self
                .proxies
                .insert(p.node_id.as_str(), &codec::proxy(&p)[..])
            {
                Err(e) => bail(a, db_err(e)),
                Ok(_) => ok(a, ()),
            },
            Op::Heartbeat(node, at_ms, load, a) => match self.heartbeat(&node, at_ms, load) {
                Err(e) => bail(a, e),
                Ok(()) => ok(a, ()),
            },
            Op::DeleteProxy(node, a) => match self.proxies.remove(node.as_str()) {
                Err(e) => bail(a, db_err(e)),
                Ok(_) => ok(a, ()),
            },
            Op::WriteDialogs(muts, a) => match self.write_dialogs(&muts) {
                Err(e) => bail(a, e),
                Ok(()) => ok(a, ()),
            },
        }
    }

    fn heartbeat(&mut self, node: &str, at_ms: i64, load: f64) -> Res<()> {
        let old = self
            .proxies
            .get(node)
            .map_err(db_err)?
            .map(|v| codec::proxy_from(node, v.value()));
        if let Some(Ok(mut p)) = old {
            p.heartbeat_ms = at_ms;
            p.load = load;
            self.proxies
                .insert(node, &codec::proxy(&p)[..])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn write_dialogs(&mut self, muts: &[DialogMutation]) -> Res<()> {
        for m in muts {
            match m {
                DialogMutation::Upsert(r) => {
                    let v = codec::dialog_value(r.updated_at_ms, &r.state);
                    self.dialogs
                        .insert(&codec::dialog_key(&r.key)[..], &v[..])
                        .map_err(db_err)?;
                }
                DialogMutation::Delete(k) => {
                    self.dialogs
                        .remove(&codec::dialog_key(k)[..])
                        .map_err(db_err)?;
                }
            }
        }
        Ok(())
    }

    fn put_user(&mut self, u: &User) -> Result<(), StoreError> {
        let old_phone = match self.users.get(u.aor.as_str()).map_err(db_err)? {
            Some(v) => codec::user_from(&u.aor, v.value())
                .ok()
                .and_then(|o| o.phone),
            None => None,
        };
        if let Some(old) = old_phone.filter(|p| Some(p) != u.phone.as_ref()) {
            self.remove_phone(&old, &u.aor)?;
        }
        self.users
            .insert(u.aor.as_str(), &codec::user(u)[..])
            .map_err(db_err)?;
        if let Some(p) = &u.phone {
            self.phones
                .insert(p.as_str(), u.aor.as_str())
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Removes the index entry `phone` if it names `aor`.
    fn remove_phone(&mut self, phone: &str, aor: &str) -> Result<(), StoreError> {
        let mine = self
            .phones
            .get(phone)
            .map_err(db_err)?
            .is_some_and(|v| v.value() == aor);
        if mine {
            self.phones.remove(phone).map_err(db_err)?;
        }
        Ok(())
    }

    fn delete_user(&mut self, aor: &str) -> Result<bool, StoreError> {
        let old = self
            .users
            .remove(aor)
            .map_err(db_err)?
            .map(|v| codec::user_from(aor, v.value()));
        let Some(old) = old else {
            return Ok(false);
        };
        if let Some(p) = old.ok().and_then(|u| u.phone) {
            self.remove_phone(&p, aor)?;
        }
        self.remove_all_bindings(aor)?;
        Ok(true)
    }

    fn remove_all_bindings(&mut self, aor: &str) -> Result<(), StoreError> {
        let prefix = codec::aor_prefix(aor);
        let mut rows = Vec::new();
        for item in self
            .bindings
            .range::<&[u8]>(&prefix[..]..)
            .map_err(db_err)?
        {
            let (k, v) = item.map_err(db_err)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        for (k, v) in rows {
            self.bindings.remove(&k[..]).map_err(db_err)?;
            if let Ok(b) = codec::binding_from(&k, &v) {
                let ek = codec::expiry_key(b.expires_at_ms, &k);
                self.expiry.remove(&ek[..]).map_err(db_err)?;
            }
        }
        Ok(())
    }

    fn remove_binding(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let old = self
            .bindings
            .remove(key)
            .map_err(db_err)?
            .map(|v| codec::binding_from(key, v.value()));
        if let Some(Ok(b)) = old {
            let ek = codec::expiry_key(b.expires_at_ms, key);
            self.expiry.remove(&ek[..]).map_err(db_err)?;
        }
        Ok(())
    }

    fn update_bindings(&mut self, aor: &str, u: &BindingUpdate) -> Result<(), StoreError> {
        if u.remove_all {
            self.remove_all_bindings(aor)?;
        }
        for c in &u.remove {
            self.remove_binding(&codec::binding_key(aor, c))?;
        }
        for b in &u.put {
            let key = codec::binding_key(aor, &b.contact);
            self.remove_binding(&key)?;
            self.bindings
                .insert(&key[..], &codec::binding(b)[..])
                .map_err(db_err)?;
            let ek = codec::expiry_key(b.expires_at_ms, &key);
            self.expiry.insert(&ek[..], ()).map_err(db_err)?;
        }
        Ok(())
    }
}

fn get_user(t: &impl ReadableTable<&'static str, Bytes>, aor: &str) -> Res<Option<User>> {
    match t.get(aor).map_err(db_err)? {
        Some(v) => codec::user_from(aor, v.value())
            .map(Some)
            .map_err(|_| corrupt("user")),
        None => Ok(None),
    }
}

fn get_user_by_phone(
    users: &impl ReadableTable<&'static str, Bytes>,
    phones: &impl ReadableTable<&'static str, &'static str>,
    phone: &str,
) -> Res<Option<User>> {
    let Some(aor) = phones
        .get(phone)
        .map_err(db_err)?
        .map(|v| v.value().to_owned())
    else {
        return Ok(None);
    };
    // A stale index entry (the user's phone changed) finds nobody.
    Ok(get_user(users, &aor)?.filter(|u| u.phone.as_deref() == Some(phone)))
}

fn list_users(t: &impl ReadableTable<&'static str, Bytes>) -> Res<Vec<User>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        out.push(codec::user_from(k.value(), v.value()).map_err(|_| corrupt("user"))?);
    }
    Ok(out)
}

fn live_bindings(t: &impl ReadableTable<Bytes, Bytes>, aor: &str, now: i64) -> Res<Vec<Binding>> {
    let prefix = codec::aor_prefix(aor);
    let mut out = Vec::new();
    for item in t.range::<&[u8]>(&prefix[..]..).map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        let b = codec::binding_from(k.value(), v.value()).map_err(|_| corrupt("binding"))?;
        if b.expires_at_ms > now {
            out.push(b);
        }
    }
    Ok(out)
}

fn list_proxies(t: &impl ReadableTable<&'static str, Bytes>) -> Res<Vec<ProxyInfo>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        out.push(codec::proxy_from(k.value(), v.value()).map_err(|_| corrupt("proxy"))?);
    }
    Ok(out)
}

fn read_dialogs(
    t: &impl ReadableTable<Bytes, Bytes>,
    parts: &[DialogPartition],
) -> Res<Vec<DialogRecord>> {
    let mut out = Vec::new();
    for p in parts {
        let prefix = codec::partition_prefix(p);
        for item in t.range::<&[u8]>(&prefix[..]..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            let key = codec::dialog_key_from(p, k.value()).map_err(|_| corrupt("dialog"))?;
            let (updated_at_ms, state) =
                codec::dialog_value_from(v.value()).map_err(|_| corrupt("dialog"))?;
            out.push(DialogRecord {
                key,
                state,
                updated_at_ms,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sipring-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_store_contract_holds() {
        let dir = temp_dir("embedded-suite");
        let store = EmbeddedStore::open(&dir).unwrap();
        crate::store::suite::run_all(&store);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_runs() {
        let dir = temp_dir("embedded-lock");
        let store = EmbeddedStore::open(&dir).unwrap();
        assert!(matches!(
            EmbeddedStore::open(&dir),
            Err(OpenError::Locked(_))
        ));
        store.close();
        let again = EmbeddedStore::open(&dir).unwrap();
        again.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_sweep_removes_expired_rows_from_the_index() {
        let dir = temp_dir("embedded-sweep");
        let store = EmbeddedStore::open(&dir).unwrap();
        let now = wall_ms();
        let mk = |c: &str, exp: i64| Binding {
            aor: "s@x".into(),
            contact: c.into(),
            node: "n".into(),
            core: 0,
            path: vec![],
            instance: None,
            reg_id: None,
            q_milli: 1000,
            call_id: "c".into(),
            cseq: 1,
            expires_at_ms: exp,
            source: None,
        };
        let update = BindingUpdate {
            put: vec![mk("<sip:a@h>", now - 1), mk("<sip:b@h>", now + 60_000)],
            ..BindingUpdate::default()
        };
        let set = futures_lite::future::block_on(store.update_bindings("s@x", update)).unwrap();
        assert_eq!(set.bindings.len(), 1, "an expired binding is never read");
        let inner = &store.inner;
        let _ = inner;
        store.close();
        // Reopen the file directly and sweep.
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let w = Worker {
            db,
            epochs: Arc::new(Epochs::default()),
        };
        assert_eq!(w.sweep(now).unwrap(), 1);
        assert_eq!(w.sweep(now).unwrap(), 0);
        assert_eq!(w.sweep(now + 120_000).unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
