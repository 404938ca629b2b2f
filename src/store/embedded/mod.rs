//! The embedded store: the single-node default backend of [`Store`], a
//! redb database in `<data_dir>/sipring.redb`.
//!
//! One storage thread (`sipring-store`) owns the database. Requests come
//! over a bounded channel (`try_send`: a full queue fails the request with
//! `Overloaded`, never blocks the caller) and are answered through
//! [`Pending`] futures.
//!
//! Crash safety: a write is answered only after the row changes of the
//! transaction holding it are in the write-ahead log ([`wal`]), so after
//! `kill -9` every acknowledged user and registration is found again (with
//! [`SyncMode::Disk`], after a power loss too). The database itself is made
//! durable by a checkpoint (a redb commit with fsync) every
//! [`EmbeddedOptions::checkpoint_every`], which empties the log. Group
//! commit: the thread takes every request already queued (up to
//! [`MAX_BATCH`]) and runs them in order in one transaction and one log
//! record. Reads in a batch with writes see the writes before them; a batch
//! of reads alone takes a read transaction (no commit).
//!
//! Expiry: bindings are also indexed by expiry time, so expired ones are
//! found with one range read from the start of the index (never a scan of
//! users or bindings) and removed once a second, at most [`SWEEP_LIMIT`] at
//! a time; reads never return an expired binding in the meantime.
//!
//! redb locks the file: a second process cannot open it while `sipring
//! serve` runs ([`OpenError::Locked`]).

mod codec;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use wal::Table;

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
/// A log longer than this is checkpointed at once.
const WAL_MAX: u64 = 64 << 20;

/// When an acknowledged write is safe, besides a killed process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The log is written before answering and left to the kernel: a
    /// killed or crashed sipring loses nothing it acknowledged; a power
    /// loss or kernel crash may lose the writes since the last checkpoint.
    #[default]
    Os,
    /// The log is also fsynced before answering (one fsync per group
    /// commit): a power loss loses nothing acknowledged.
    Disk,
}

/// How the embedded store makes writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// See [`SyncMode`].
    pub sync: SyncMode,
    /// How often the database is made durable on disk and the log emptied.
    pub checkpoint_every: Duration,
    /// How long a write waits for others to join its transaction.
    pub group_window: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            sync: SyncMode::Os,
            checkpoint_every: Duration::from_secs(1),
            group_window: Duration::from_millis(2),
        }
    }
}

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
    /// Opens (creating when absent) the store in `data_dir` with the
    /// default [`EmbeddedOptions`] and starts its thread.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, OpenError> {
        EmbeddedStore::open_with(data_dir, EmbeddedOptions::default())
    }

    /// Opens (creating when absent) the store in `data_dir`, replays what a
    /// crash left in its log, and starts its thread.
    pub fn open_with(data_dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore, OpenError> {
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
        let wal_path = data_dir.join(wal::FILE_NAME);
        let (mut log, left) = wal::Wal::open(&wal_path, opts.sync == SyncMode::Disk)
            .map_err(|e| OpenError::Io(wal_path.clone(), e))?;
        if !left.is_empty() {
            let n = recover(&db, &left)
                .map_err(|e| OpenError::Database(wal_path.clone(), e.to_string()))?;
            log.truncate()
                .map_err(|e| OpenError::Io(wal_path.clone(), e))?;
            tracing::info!(records = n, "embedded store: replayed the write-ahead log");
        }
        let (tx, rx) = channel::bounded(QUEUE);
        let epochs = Arc::new(Epochs::default());
        let worker = Worker {
            db,
            epochs: epochs.clone(),
            log,
            changes: wal::Batch::default(),
            checkpoint_every: opts.checkpoint_every,
            group_window: opts.group_window,
            unsynced_sweep: false,
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
    log: wal::Wal,
    /// The row changes of the batch being applied.
    changes: wal::Batch,
    checkpoint_every: Duration,
    group_window: Duration,
    /// A sweep committed since the last checkpoint.
    unsynced_sweep: bool,
}

impl Worker {
    fn run(mut self, rx: Receiver<Op>) {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut next_checkpoint = Instant::now() + self.checkpoint_every;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let wait = next_sweep
                .min(next_checkpoint)
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // A write waits up to `group_window` for others to share its
            // commit: redb's cost is mostly per transaction.
            let close = Instant::now() + self.group_window;
            let mut writes = batch.iter().any(|op| !op.is_read());
            while batch.len() < MAX_BATCH {
                let next = match rx.try_recv() {
                    Ok(op) => op,
                    Err(_) if writes => match rx.recv_deadline(close) {
                        Ok(op) => op,
                        Err(_) => break,
                    },
                    Err(_) => break,
                };
                writes |= !next.is_read();
                batch.push(next);
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
            if Instant::now() >= next_checkpoint || self.log.len() > WAL_MAX {
                self.checkpoint();
                next_checkpoint = Instant::now() + self.checkpoint_every;
            }
        }
        self.checkpoint();
        tracing::debug!("embedded store: thread stopped");
    }

    /// Makes every commit so far durable in the database file, then empties
    /// the log. A failure leaves the log as it is (it still holds every
    /// acknowledged write) for the next try.
    fn checkpoint(&mut self) {
        if self.log.is_empty() && !self.unsynced_sweep {
            return;
        }
        let r = (|| -> Result<(), StoreError> {
            let mut txn = self.db.begin_write().map_err(db_err)?;
            txn.set_durability(Durability::Immediate);
            txn.commit().map_err(db_err)
        })();
        match r {
            Ok(()) => {
                self.unsynced_sweep = false;
                if let Err(e) = self.log.truncate() {
                    tracing::warn!(
                        "embedded store: emptying {}: {e}",
                        self.log.path().display()
                    );
                }
            }
            Err(e) => tracing::warn!("embedded store: checkpoint failed: {e}"),
        }
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

    fn write_batch(&mut self, batch: &mut Vec<Op>) {
        let mut done: Vec<Done> = Vec::with_capacity(batch.len());
        let mut ops = batch.drain(..);
        self.changes.clear();
        let changes = &mut self.changes;
        let log = &mut self.log;
        let result = (|| -> Result<(), StoreError> {
            let mut txn = self.db.begin_write().map_err(db_err)?;
            // Durable through the log; the checkpoint makes the file so.
            txn.set_durability(Durability::None);
            {
                let mut t = Tables {
                    log: changes,
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
            // Logged before the commit, so that nothing the commit makes
            // visible can be lost; a failed commit leaves a record of
            // writes that were refused, which a replay then applies.
            log.append(changes)
                .map_err(|e| StoreError::Backend(format!("write-ahead log: {e}")))?;
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
    /// `SWEEP_LIMIT`. Not logged: a sweep lost in a crash is redone.
    fn sweep(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(Durability::None);
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
            self.unsynced_sweep = true;
            tracing::debug!("embedded store: removed {n} expired bindings");
        }
        Ok(n)
    }
}

/// Applies the whole records of a log left by a crash to the database and
/// makes the result durable; returns how many records it applied.
fn recover(db: &Database, log: &[u8]) -> Result<usize, StoreError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate);
    let n = {
        let mut users = txn.open_table(USERS).map_err(db_err)?;
        let mut phones = txn.open_table(PHONES).map_err(db_err)?;
        let mut bindings = txn.open_table(BINDINGS).map_err(db_err)?;
        let mut expiry = txn.open_table(EXPIRY).map_err(db_err)?;
        let mut proxies = txn.open_table(PROXIES).map_err(db_err)?;
        let mut dialogs = txn.open_table(DIALOGS).map_err(db_err)?;
        fn text(b: &[u8]) -> Result<&str, StoreError> {
            std::str::from_utf8(b).map_err(|_| corrupt("write-ahead log"))
        }
        wal::replay(log, |c| -> Result<(), StoreError> {
            match c {
                wal::Change::Put(t, k, v) => match t {
                    Table::Users => users.insert(text(k)?, v).map(drop),
                    Table::Phones => phones.insert(text(k)?, text(v)?).map(drop),
                    Table::Bindings => bindings.insert(k, v).map(drop),
                    Table::Expiry => expiry.insert(k, ()).map(drop),
                    Table::Proxies => proxies.insert(text(k)?, v).map(drop),
                    Table::Dialogs => dialogs.insert(k, v).map(drop),
                },
                wal::Change::Remove(t, k) => match t {
                    Table::Users => users.remove(text(k)?).map(drop),
                    Table::Phones => phones.remove(text(k)?).map(drop),
                    Table::Bindings => bindings.remove(k).map(drop),
                    Table::Expiry => expiry.remove(k).map(drop),
                    Table::Proxies => proxies.remove(text(k)?).map(drop),
                    Table::Dialogs => dialogs.remove(k).map(drop),
                },
            }
            .map_err(db_err)
        })?
    };
    txn.commit().map_err(db_err)?;
    Ok(n)
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
    /// Every row change, for the write-ahead log.
    log: &'txn mut wal::Batch,
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
            Op::PutProxy(p, a) => match self.put_proxy(&p.node_id, &codec::proxy(&p)) {
                Err(e) => bail(a, e),
                Ok(()) => ok(a, ()),
            },
            Op::Heartbeat(node, at_ms, load, a) => match self.heartbeat(&node, at_ms, load) {
                Err(e) => bail(a, e),
                Ok(()) => ok(a, ()),
            },
            Op::DeleteProxy(node, a) => match self.proxies.remove(node.as_str()) {
                Err(e) => bail(a, db_err(e)),
                Ok(_) => {
                    self.log.remove(Table::Proxies, node.as_bytes());
                    ok(a, ())
                }
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
            self.put_proxy(node, &codec::proxy(&p))?;
        }
        Ok(())
    }

    fn put_proxy(&mut self, node: &str, v: &[u8]) -> Res<()> {
        self.proxies.insert(node, v).map_err(db_err)?;
        self.log.put(Table::Proxies, node.as_bytes(), v);
        Ok(())
    }

    fn write_dialogs(&mut self, muts: &[DialogMutation]) -> Res<()> {
        for m in muts {
            match m {
                DialogMutation::Upsert(r) => {
                    let v = codec::dialog_value(r.updated_at_ms, &r.state);
                    let k = codec::dialog_key(&r.key);
                    self.dialogs.insert(&k[..], &v[..]).map_err(db_err)?;
                    self.log.put(Table::Dialogs, &k, &v);
                }
                DialogMutation::Delete(k) => {
                    let k = codec::dialog_key(k);
                    self.dialogs.remove(&k[..]).map_err(db_err)?;
                    self.log.remove(Table::Dialogs, &k);
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
        let v = codec::user(u);
        self.users.insert(u.aor.as_str(), &v[..]).map_err(db_err)?;
        self.log.put(Table::Users, u.aor.as_bytes(), &v);
        if let Some(p) = &u.phone {
            self.phones
                .insert(p.as_str(), u.aor.as_str())
                .map_err(db_err)?;
            self.log.put(Table::Phones, p.as_bytes(), u.aor.as_bytes());
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
            self.log.remove(Table::Phones, phone.as_bytes());
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
        self.log.remove(Table::Users, aor.as_bytes());
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
            self.log.remove(Table::Bindings, &k);
            if let Ok(b) = codec::binding_from(&k, &v) {
                let ek = codec::expiry_key(b.expires_at_ms, &k);
                self.expiry.remove(&ek[..]).map_err(db_err)?;
                self.log.remove(Table::Expiry, &ek);
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
        if let Some(old) = old {
            self.log.remove(Table::Bindings, key);
            if let Ok(b) = old {
                let ek = codec::expiry_key(b.expires_at_ms, key);
                self.expiry.remove(&ek[..]).map_err(db_err)?;
                self.log.remove(Table::Expiry, &ek);
            }
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
            let v = codec::binding(b);
            self.bindings.insert(&key[..], &v[..]).map_err(db_err)?;
            self.log.put(Table::Bindings, &key, &v);
            let ek = codec::expiry_key(b.expires_at_ms, &key);
            self.expiry.insert(&ek[..], ()).map_err(db_err)?;
            self.log.put(Table::Expiry, &ek, &[]);
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
        let (log, left) = wal::Wal::open(&dir.join(wal::FILE_NAME), false).unwrap();
        assert!(left.is_empty(), "a clean close empties the log");
        let mut w = Worker {
            db,
            epochs: Arc::new(Epochs::default()),
            log,
            changes: wal::Batch::default(),
            checkpoint_every: Duration::from_secs(1),
            group_window: Duration::ZERO,
            unsynced_sweep: false,
        };
        assert_eq!(w.sweep(now).unwrap(), 1);
        assert_eq!(w.sweep(now).unwrap(), 0);
        assert_eq!(w.sweep(now + 120_000).unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
