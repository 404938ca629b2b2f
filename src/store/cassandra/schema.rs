//! The CQL schema, created idempotently (`IF NOT EXISTS`) when sipring
//! connects. docs/storage.md explains each table's keys.

use super::config::CassandraConfig;

/// The statements that create the keyspace and the tables, in order.
pub(crate) fn statements(c: &CassandraConfig) -> Vec<String> {
    let ks = &c.keyspace;
    let ttl = c.dialog_ttl_secs;
    // Dialog rows are deleted at the end of every call: purge their
    // tombstones soon (gc_grace = one bucket), compacting often.
    let gc = c.dialog_bucket_secs.max(600);
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true",
            c.replication.cql()
        ),
        // Users by AOR: the digest lookup of every REGISTER and INVITE.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.users (
                aor text PRIMARY KEY,
                realm text,
                ha1_md5 text,
                ha1_sha256 text,
                phone text,
                enabled boolean)"
        ),
        // The phone index: a table keyed by the E.164 alias, written with
        // the user in one logged batch (a single-partition read, where a
        // secondary index would ask every node).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.users_by_phone (
                phone text PRIMARY KEY,
                aor text)"
        ),
        // The deployed proxies: one small partition each.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.proxies (
                node_id text PRIMARY KEY,
                addresses list<text>,
                cores int,
                ring_ids list<bigint>,
                started_at timestamp,
                heartbeat timestamp,
                load double)"
        ),
        // Bindings: one partition per AOR (all its contacts in one read),
        // one row per contact; each row carries the TTL of its expiry.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.bindings (
                aor text,
                contact text,
                node text,
                core int,
                path list<text>,
                instance text,
                reg_id int,
                q_milli int,
                call_id text,
                cseq bigint,
                expires_at timestamp,
                source text,
                PRIMARY KEY (aor, contact))"
        ),
        // Dialogs: partitioned by their owner (node, ring slice) and the
        // time bucket of their creation, so that a successor reads a failed
        // owner's slice in a bounded number of single-partition reads, and a
        // core's flush falls mostly in one partition (one request).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.dialogs (
                owner_node text,
                slice int,
                bucket bigint,
                call_id text,
                from_tag text,
                to_tag text,
                state blob,
                updated_at timestamp,
                PRIMARY KEY ((owner_node, slice, bucket), call_id, from_tag, to_tag))
             WITH default_time_to_live = {ttl}
              AND gc_grace_seconds = {gc}
              AND compaction = {{'class': 'SizeTieredCompactionStrategy',
                                 'unchecked_tombstone_compaction': 'true',
                                 'tombstone_compaction_interval': '{gc}'}}"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_idempotent_and_qualified() {
        let c = CassandraConfig {
            keyspace: "ks1".into(),
            ..CassandraConfig::default()
        };
        let s = statements(&c);
        assert_eq!(s.len(), 6);
        for st in &s {
            assert!(st.contains("IF NOT EXISTS ks1"), "{st}");
        }
        assert!(s[5].contains("default_time_to_live = 14400"));
    }
}
