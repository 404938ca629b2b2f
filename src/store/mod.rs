//! Storage backends. `cassandra`: users, bindings, proxies and dialog state
//! in a Cassandra cluster (scylla driver on its own thread), for clusters.
//! The embedded default backend and the interface shared by both come with
//! the registrar (docs/storage.md).

pub mod cassandra;
