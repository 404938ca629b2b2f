//! Storage backends. `cassandra`: users, bindings, proxies and dialog state
//! in a Cassandra cluster (scylla driver on its own thread), for clusters.
//! The embedded default backend and the interface shared by both come with
//! the registrar (docs/storage.md).
//!
//! [`StoreSelection`] is the choice the configuration makes: `[store] url`
//! or `--store`, `embedded` (the default) or `cassandra://...`.

pub mod cassandra;
pub mod dialog;

use std::path::PathBuf;

use cassandra::CassandraConfig;

/// Which backend `sipring serve` uses.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreSelection {
    /// The embedded store in this directory (single node).
    Embedded(PathBuf),
    /// A Cassandra cluster (`[cassandra]` overridden by the URL).
    Cassandra(CassandraConfig),
}

impl StoreSelection {
    /// The selection for `url` (`embedded`, or `cassandra://...` applied
    /// over `cassandra`), with `data_dir` for the embedded store.
    pub fn from_url(
        url: &str,
        data_dir: PathBuf,
        cassandra: &CassandraConfig,
    ) -> Result<StoreSelection, String> {
        if url.is_empty() || url == "embedded" {
            return Ok(StoreSelection::Embedded(data_dir));
        }
        if url.starts_with("cassandra://") {
            let mut c = cassandra.clone();
            c.apply_url(url).map_err(|e| e.to_string())?;
            return Ok(StoreSelection::Cassandra(c));
        }
        Err(format!(
            "store {url:?}: expected \"embedded\" or cassandra://host1,host2/keyspace"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend() {
        let base = CassandraConfig {
            batch_max: 8,
            ..CassandraConfig::default()
        };
        let d = PathBuf::from("/d");
        assert_eq!(
            StoreSelection::from_url("embedded", d.clone(), &base),
            Ok(StoreSelection::Embedded(d.clone()))
        );
        let Ok(StoreSelection::Cassandra(c)) =
            StoreSelection::from_url("cassandra://h1,h2/ks?rf=3", d.clone(), &base)
        else {
            panic!("not cassandra");
        };
        assert_eq!(
            (c.hosts.len(), c.keyspace.as_str(), c.batch_max),
            (2, "ks", 8)
        );
        assert!(StoreSelection::from_url("redis://x", d, &base).is_err());
    }
}
