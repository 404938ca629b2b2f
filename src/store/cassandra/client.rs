//! The Cassandra operations, as async functions on one scylla `Session`
//! with prepared statements. Everything here runs on the storage thread's
//! tokio runtime, never on a shard.
//!
//! Prepared statements carry their partition key, so the driver's default
//! policy routes each request to a replica of its partition (token-aware).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::serialize::row::SerializeRow;
use scylla::statement::Consistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::StoreError;
use super::config::{BatchMode, CassandraConfig};
use super::model::{
    Binding, DialogKey, DialogMutation, DialogPartition, DialogRecord, ProxyInfo, User,
};
use super::schema;

/// One connected session and its prepared statements.
pub(crate) struct Client {
    session: Session,
    ps: Statements,
    batch_mode: BatchMode,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

struct Statements {
    get_user: PreparedStatement,
    put_user: PreparedStatement,
    del_user: PreparedStatement,
    list_users: PreparedStatement,
    put_phone: PreparedStatement,
    del_phone: PreparedStatement,
    get_phone: PreparedStatement,
    get_bindings: PreparedStatement,
    put_binding: PreparedStatement,
    del_binding: PreparedStatement,
    del_bindings: PreparedStatement,
    put_proxy: PreparedStatement,
    heartbeat: PreparedStatement,
    get_proxies: PreparedStatement,
    del_proxy: PreparedStatement,
    put_dialog: PreparedStatement,
    del_dialog: PreparedStatement,
    get_dialogs: PreparedStatement,
}

/// A row of `users`, as selected.
type UserRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
);
/// A row of `bindings`, as selected.
type BindingRow = (
    String,
    String,
    Option<String>,
    Option<i32>,
    Option<Vec<String>>,
    Option<String>,
    Option<i32>,
    Option<i32>,
    Option<String>,
    Option<i64>,
    Option<CqlTimestamp>,
    Option<String>,
);
/// A row of `proxies`, as selected.
type ProxyRow = (
    String,
    Option<Vec<String>>,
    Option<i32>,
    Option<Vec<i64>>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<f64>,
);

const USER_COLS: &str = "aor, realm, ha1_md5, ha1_sha256, phone, enabled";
const BINDING_COLS: &str =
    "aor, contact, node, core, path, instance, reg_id, q_milli, call_id, cseq, expires_at, source";
const PROXY_COLS: &str = "node_id, addresses, cores, ring_ids, started_at, heartbeat, load";

impl Client {
    /// Connects, creates the schema if absent, prepares every statement.
    pub(crate) async fn connect(c: &CassandraConfig) -> Result<Client, StoreError> {
        let profile = ExecutionProfile::builder()
            .request_timeout(Some(Duration::from_millis(c.request_timeout_ms)))
            .consistency(Consistency::LocalQuorum)
            .build();
        let session = SessionBuilder::new()
            .known_nodes(c.contact_points())
            .connection_timeout(Duration::from_millis(c.connect_timeout_ms))
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(|e| StoreError::Unavailable(format!("connect {:?}: {e}", c.hosts)))?;
        for st in schema::statements(c) {
            session
                .query_unpaged(st.as_str(), ())
                .await
                .map_err(|e| StoreError::Backend(format!("schema: {e}")))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| StoreError::Backend(format!("schema agreement: {e}")))?;
        let ks = &c.keyspace;
        let ttl = c.dialog_ttl_secs;
        let p = |cql: String| {
            let session = &session;
            async move {
                session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|e| StoreError::Backend(format!("prepare {cql}: {e}")))
            }
        };
        let ps = Statements {
            get_user: p(format!("SELECT {USER_COLS} FROM {ks}.users WHERE aor = ?")).await?,
            put_user: p(format!(
                "INSERT INTO {ks}.users ({USER_COLS}) VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            del_user: p(format!("DELETE FROM {ks}.users WHERE aor = ?")).await?,
            list_users: p(format!("SELECT {USER_COLS} FROM {ks}.users")).await?,
            put_phone: p(format!(
                "INSERT INTO {ks}.users_by_phone (phone, aor) VALUES (?, ?)"
            ))
            .await?,
            del_phone: p(format!("DELETE FROM {ks}.users_by_phone WHERE phone = ?")).await?,
            get_phone: p(format!(
                "SELECT aor FROM {ks}.users_by_phone WHERE phone = ?"
            ))
            .await?,
            get_bindings: p(format!(
                "SELECT {BINDING_COLS} FROM {ks}.bindings WHERE aor = ?"
            ))
            .await?,
            put_binding: p(format!(
                "INSERT INTO {ks}.bindings ({BINDING_COLS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            del_binding: p(format!(
                "DELETE FROM {ks}.bindings WHERE aor = ? AND contact = ?"
            ))
            .await?,
            del_bindings: p(format!("DELETE FROM {ks}.bindings WHERE aor = ?")).await?,
            put_proxy: p(format!(
                "INSERT INTO {ks}.proxies ({PROXY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            heartbeat: p(format!(
                "UPDATE {ks}.proxies SET heartbeat = ?, load = ? WHERE node_id = ?"
            ))
            .await?,
            get_proxies: p(format!("SELECT {PROXY_COLS} FROM {ks}.proxies")).await?,
            del_proxy: p(format!("DELETE FROM {ks}.proxies WHERE node_id = ?")).await?,
            put_dialog: p(format!(
                "INSERT INTO {ks}.dialogs (owner_node, slice, bucket, call_id, from_tag, to_tag, \
                 state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL {ttl}"
            ))
            .await?,
            del_dialog: p(format!(
                "DELETE FROM {ks}.dialogs WHERE owner_node = ? AND slice = ? AND bucket = ? \
                 AND call_id = ? AND from_tag = ? AND to_tag = ?"
            ))
            .await?,
            get_dialogs: p(format!(
                "SELECT call_id, from_tag, to_tag, state, updated_at FROM {ks}.dialogs \
                 WHERE owner_node = ? AND slice = ? AND bucket = ?"
            ))
            .await?,
        };
        Ok(Client {
            session,
            ps,
            batch_mode: c.batch_mode,
        })
    }

    // ---- users -------------------------------------------------------

    pub(crate) async fn get_user(&self, aor: &str) -> Result<Option<User>, StoreError> {
        let r = self
            .session
            .execute_unpaged(&self.ps.get_user, (aor,))
            .await?;
        let rows = r.into_rows_result().map_err(backend)?;
        Ok(rows
            .maybe_first_row::<UserRow>()
            .map_err(backend)?
            .map(user_of))
    }

    pub(crate) async fn user_by_phone(&self, phone: &str) -> Result<Option<User>, StoreError> {
        let r = self
            .session
            .execute_unpaged(&self.ps.get_phone, (phone,))
            .await?;
        let aor = r
            .into_rows_result()
            .map_err(backend)?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(backend)?
            .and_then(|(a,)| a);
        match aor {
            // The index may lag a concurrent change: trust the user row.
            Some(aor) => Ok(self
                .get_user(&aor)
                .await?
                .filter(|u| u.phone.as_deref() == Some(phone))),
            None => Ok(None),
        }
    }

    /// Writes the user and its phone index in one logged batch (both or
    /// neither), removing the index entry of a phone it no longer has.
    pub(crate) async fn put_user(&self, u: &User) -> Result<(), StoreError> {
        let old_phone = self.get_user(&u.aor).await?.and_then(|o| o.phone);
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<Box<dyn SerializeRow + Send + Sync>> = Vec::new();
        batch.append_statement(self.ps.put_user.clone());
        values.push(Box::new((
            u.aor.clone(),
            u.realm.clone(),
            u.ha1_md5.clone(),
            u.ha1_sha256.clone(),
            u.phone.clone(),
            u.enabled,
        )));
        if let Some(old) = old_phone.filter(|o| Some(o) != u.phone.as_ref()) {
            batch.append_statement(self.ps.del_phone.clone());
            values.push(Box::new((old,)));
        }
        if let Some(phone) = &u.phone {
            batch.append_statement(self.ps.put_phone.clone());
            values.push(Box::new((phone.clone(), u.aor.clone())));
        }
        self.session.batch(&batch, values).await?;
        Ok(())
    }

    /// Deletes the user, its phone index entry and its bindings. Returns
    /// whether it existed.
    pub(crate) async fn delete_user(&self, aor: &str) -> Result<bool, StoreError> {
        let Some(old) = self.get_user(aor).await? else {
            return Ok(false);
        };
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<Box<dyn SerializeRow + Send + Sync>> = Vec::new();
        batch.append_statement(self.ps.del_user.clone());
        values.push(Box::new((aor.to_owned(),)));
        batch.append_statement(self.ps.del_bindings.clone());
        values.push(Box::new((aor.to_owned(),)));
        if let Some(phone) = old.phone {
            batch.append_statement(self.ps.del_phone.clone());
            values.push(Box::new((phone,)));
        }
        self.session.batch(&batch, values).await?;
        Ok(true)
    }

    /// Every user (a full scan, paged: for `sipring user list`).
    pub(crate) async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        use futures_lite::StreamExt;
        let mut it = self
            .session
            .execute_iter(self.ps.list_users.clone(), ())
            .await
            .map_err(backend)?
            .rows_stream::<UserRow>()
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = it.next().await {
            out.push(user_of(row.map_err(backend)?));
        }
        out.sort_by(|a, b| a.aor.cmp(&b.aor));
        Ok(out)
    }

    // ---- bindings ----------------------------------------------------

    pub(crate) async fn bindings(&self, aor: &str) -> Result<Vec<Binding>, StoreError> {
        let r = self
            .session
            .execute_unpaged(&self.ps.get_bindings, (aor,))
            .await?;
        let rows = r.into_rows_result().map_err(backend)?;
        let mut out = Vec::new();
        for row in rows.rows::<BindingRow>().map_err(backend)? {
            out.push(binding_of(row.map_err(backend)?));
        }
        Ok(out)
    }

    /// Writes a binding that Cassandra removes after `ttl_secs` (>= 1).
    pub(crate) async fn put_binding(&self, b: &Binding, ttl_secs: u32) -> Result<(), StoreError> {
        let ttl = i32::try_from(ttl_secs.max(1)).unwrap_or(i32::MAX);
        let values = (
            b.aor.as_str(),
            b.contact.as_str(),
            b.node.as_str(),
            i32::from(b.core),
            &b.path,
            b.instance.as_deref(),
            b.reg_id.map(|r| i32::try_from(r).unwrap_or(i32::MAX)),
            i32::from(b.q_milli),
            b.call_id.as_str(),
            i64::from(b.cseq),
            CqlTimestamp(b.expires_at_ms),
            b.source.as_deref(),
            ttl,
        );
        self.session
            .execute_unpaged(&self.ps.put_binding, values)
            .await?;
        Ok(())
    }

    /// Applies one REGISTER's change to an AOR's bindings as one batch on
    /// the AOR's partition, which Cassandra applies atomically and in
    /// isolation: the removals (`remove_all`: the partition), then the puts
    /// with their TTLs. The statements of a batch share one timestamp, where
    /// a deletion wins over a write: so a contact both removed and put is
    /// only put, and `remove_all` with puts deletes the other rows one by
    /// one (RFC 3261 forbids `Contact: *` with other contacts anyway).
    pub(crate) async fn update_bindings(
        &self,
        aor: &str,
        remove_all: bool,
        remove: &[String],
        put: &[(Binding, u32)],
    ) -> Result<(), StoreError> {
        let is_put = |c: &str| put.iter().any(|(b, _)| b.contact == c);
        let mut removals: Vec<String> = remove.iter().filter(|c| !is_put(c)).cloned().collect();
        let whole = remove_all && put.is_empty();
        if remove_all && !whole {
            for b in self.bindings(aor).await? {
                if !is_put(&b.contact) && !removals.contains(&b.contact) {
                    removals.push(b.contact);
                }
            }
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<Box<dyn SerializeRow + Send + Sync>> = Vec::new();
        if whole {
            batch.append_statement(self.ps.del_bindings.clone());
            values.push(Box::new((aor.to_owned(),)));
        }
        for c in removals {
            batch.append_statement(self.ps.del_binding.clone());
            values.push(Box::new((aor.to_owned(), c)));
        }
        for (b, ttl_secs) in put {
            batch.append_statement(self.ps.put_binding.clone());
            values.push(Box::new((
                b.aor.clone(),
                b.contact.clone(),
                b.node.clone(),
                i32::from(b.core),
                b.path.clone(),
                b.instance.clone(),
                b.reg_id.map(|r| i32::try_from(r).unwrap_or(i32::MAX)),
                i32::from(b.q_milli),
                b.call_id.clone(),
                i64::from(b.cseq),
                CqlTimestamp(b.expires_at_ms),
                b.source.clone(),
                i32::try_from((*ttl_secs).max(1)).unwrap_or(i32::MAX),
            )));
        }
        if values.is_empty() {
            return Ok(());
        }
        self.session.batch(&batch, values).await?;
        Ok(())
    }

    pub(crate) async fn delete_binding(&self, aor: &str, contact: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.ps.del_binding, (aor, contact))
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_bindings(&self, aor: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.ps.del_bindings, (aor,))
            .await?;
        Ok(())
    }

    // ---- proxies -----------------------------------------------------

    pub(crate) async fn put_proxy(&self, p: &ProxyInfo) -> Result<(), StoreError> {
        let ring: Vec<i64> = p.ring_ids.iter().map(|&id| id as i64).collect();
        self.session
            .execute_unpaged(
                &self.ps.put_proxy,
                (
                    p.node_id.as_str(),
                    &p.addresses,
                    i32::from(p.cores),
                    ring,
                    CqlTimestamp(p.started_at_ms),
                    CqlTimestamp(p.heartbeat_ms),
                    p.load,
                ),
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn heartbeat(
        &self,
        node_id: &str,
        at_ms: i64,
        load: f64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.ps.heartbeat, (CqlTimestamp(at_ms), load, node_id))
            .await?;
        Ok(())
    }

    pub(crate) async fn proxies(&self) -> Result<Vec<ProxyInfo>, StoreError> {
        let r = self
            .session
            .execute_unpaged(&self.ps.get_proxies, ())
            .await?;
        let rows = r.into_rows_result().map_err(backend)?;
        let mut out = Vec::new();
        for row in rows.rows::<ProxyRow>().map_err(backend)? {
            let (node_id, addresses, cores, ring, started, heartbeat, load) =
                row.map_err(backend)?;
            out.push(ProxyInfo {
                node_id,
                addresses: addresses.unwrap_or_default(),
                cores: u16::try_from(cores.unwrap_or(0)).unwrap_or(0),
                ring_ids: ring
                    .unwrap_or_default()
                    .into_iter()
                    .map(|id| id as u64)
                    .collect(),
                started_at_ms: started.map_or(0, |t| t.0),
                heartbeat_ms: heartbeat.map_or(0, |t| t.0),
                load: load.unwrap_or(0.0),
            });
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(out)
    }

    pub(crate) async fn delete_proxy(&self, node_id: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.ps.del_proxy, (node_id,))
            .await?;
        Ok(())
    }

    // ---- dialogs -----------------------------------------------------

    /// The dialogs of one partition (a failed owner's slice and bucket).
    pub(crate) async fn dialogs(
        &self,
        p: &DialogPartition,
    ) -> Result<Vec<DialogRecord>, StoreError> {
        use futures_lite::StreamExt;
        let slice = i32::try_from(p.slice).unwrap_or(i32::MAX);
        let mut it = self
            .session
            .execute_iter(
                self.ps.get_dialogs.clone(),
                (&*p.owner_node, slice, p.bucket),
            )
            .await
            .map_err(backend)?
            .rows_stream::<(
                String,
                String,
                String,
                Option<Vec<u8>>,
                Option<CqlTimestamp>,
            )>()
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = it.next().await {
            let (call_id, from_tag, to_tag, state, updated) = row.map_err(backend)?;
            out.push(DialogRecord {
                key: DialogKey {
                    partition: p.clone(),
                    call_id,
                    from_tag,
                    to_tag,
                },
                state: state.unwrap_or_default(),
                updated_at_ms: updated.map_or(0, |t| t.0),
            });
        }
        Ok(out)
    }

    /// Writes one partition's mutations: one UNLOGGED BATCH, or one
    /// statement each, concurrently (`batch_mode`). Returns the number of
    /// Cassandra requests made.
    pub(crate) async fn write_partition(
        &self,
        muts: &[&DialogMutation],
    ) -> Result<u64, StoreError> {
        let rows: Vec<DialogRow<'_>> = muts.iter().map(|m| DialogRow(m)).collect();
        match self.batch_mode {
            BatchMode::Unlogged if rows.len() > 1 => {
                let mut batch = Batch::new(BatchType::Unlogged);
                for r in &rows {
                    batch.append_statement(self.statement_of(r.0).clone());
                }
                self.session.batch(&batch, &rows).await?;
                Ok(1)
            }
            _ => {
                let futs = rows
                    .iter()
                    .map(|r| self.session.execute_unpaged(self.statement_of(r.0), r));
                let results = join_all(futs).await;
                let n = results.len() as u64;
                for r in results {
                    r?;
                }
                Ok(n)
            }
        }
    }

    fn statement_of(&self, m: &DialogMutation) -> &PreparedStatement {
        match m {
            DialogMutation::Upsert(_) => &self.ps.put_dialog,
            DialogMutation::Delete(_) => &self.ps.del_dialog,
        }
    }
}

/// Groups mutations by partition, keeping their order within each.
pub(crate) fn by_partition(
    muts: &[DialogMutation],
) -> BTreeMap<&DialogPartition, Vec<&DialogMutation>> {
    let mut map: BTreeMap<&DialogPartition, Vec<&DialogMutation>> = BTreeMap::new();
    for m in muts {
        map.entry(&m.key().partition).or_default().push(m);
    }
    map
}

/// Waits for all futures, polled concurrently, results in order.
pub(crate) async fn join_all<F: std::future::Future>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futs.map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, res) in pending.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *res = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The bound values of one dialog statement (an upsert's 8 or a delete's 6).
struct DialogRow<'a>(&'a DialogMutation);

impl SerializeRow for DialogRow<'_> {
    fn serialize(
        &self,
        ctx: &scylla::serialize::row::RowSerializationContext<'_>,
        writer: &mut scylla::serialize::writers::RowWriter<'_>,
    ) -> Result<(), scylla::serialize::SerializationError> {
        match self.0 {
            DialogMutation::Upsert(r) => {
                let k = &r.key;
                (
                    &*k.partition.owner_node,
                    i32::try_from(k.partition.slice).unwrap_or(i32::MAX),
                    k.partition.bucket,
                    k.call_id.as_str(),
                    k.from_tag.as_str(),
                    k.to_tag.as_str(),
                    r.state.as_slice(),
                    CqlTimestamp(r.updated_at_ms),
                )
                    .serialize(ctx, writer)
            }
            DialogMutation::Delete(k) => (
                &*k.partition.owner_node,
                i32::try_from(k.partition.slice).unwrap_or(i32::MAX),
                k.partition.bucket,
                k.call_id.as_str(),
                k.from_tag.as_str(),
                k.to_tag.as_str(),
            )
                .serialize(ctx, writer),
        }
    }

    fn is_empty(&self) -> bool {
        false
    }
}

fn user_of(r: UserRow) -> User {
    let (aor, realm, md5, sha, phone, enabled) = r;
    User {
        aor,
        realm: realm.unwrap_or_default(),
        ha1_md5: md5.unwrap_or_default(),
        ha1_sha256: sha.unwrap_or_default(),
        phone,
        enabled: enabled.unwrap_or(true),
    }
}

fn binding_of(r: BindingRow) -> Binding {
    let (aor, contact, node, core, path, instance, reg_id, q, call_id, cseq, expires, source) = r;
    Binding {
        aor,
        contact,
        node: node.unwrap_or_default(),
        core: u16::try_from(core.unwrap_or(0)).unwrap_or(0),
        path: path.unwrap_or_default(),
        instance,
        reg_id: reg_id.and_then(|r| u32::try_from(r).ok()),
        q_milli: u16::try_from(q.unwrap_or(1000)).unwrap_or(1000),
        call_id: call_id.unwrap_or_default(),
        cseq: u32::try_from(cseq.unwrap_or(0)).unwrap_or(0),
        expires_at_ms: expires.map_or(0, |t| t.0),
        source,
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<ExecutionError> for StoreError {
    fn from(e: ExecutionError) -> Self {
        if is_permanent(&e) {
            StoreError::Backend(e.to_string())
        } else {
            StoreError::Unavailable(e.to_string())
        }
    }
}

/// Whether retrying the same request can never succeed (a bad statement or
/// value, a schema or permission problem), as opposed to a node being slow,
/// down or unreachable.
fn is_permanent(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::AlreadyExists { .. }
                | DbError::FunctionFailure { .. }
                | DbError::AuthenticationError
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::ProtocolError
        ),
        ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(_)) => true,
        _ => false,
    }
}

/// Shared ownership of the client by the storage thread's tasks.
pub(crate) type SharedClient = Arc<Client>;
