//! The embedded store's write-ahead log: what makes a group commit durable
//! against a killed process without an fsync per commit.
//!
//! redb makes a commit survive a crash only by fsyncing it (on Linux its
//! `Eventual` durability fsyncs too), and at thousands of registrations per
//! second that fsync was most of the store thread's CPU. So each batch is
//! committed to redb without durability (`Durability::None`: in memory,
//! and lost if the process dies) and its row changes are appended to this
//! log with one `write` before any request of the batch is answered. Once
//! the bytes are in the kernel's page cache they survive `kill -9`, a panic
//! or the OOM killer. Every [`super::EmbeddedOptions::checkpoint_every`] a
//! durable redb commit (fsync) makes the database whole on disk and the log
//! is emptied. Opening the store replays a log left behind by a crash over
//! the last checkpoint.
//!
//! With [`super::SyncMode::Disk`] each append is also `fdatasync`ed, so a power
//! loss or kernel crash loses nothing acknowledged either; with the default
//! [`super::SyncMode::Os`] such a failure loses at most the writes since the
//! last checkpoint, as the kernel may not have written the log yet.
//!
//! Records are whole batches: `[len: u32 LE][xxh3-64 of the payload: u64
//! LE][payload]`, the payload a sequence of row changes
//! `[table: u8][kind: u8][key len: u32 LE][key][value len: u32 LE][value]`
//! (no value for a removal). Replay stops at the first record that is torn
//! or fails its checksum: the write that was cut off was never answered.
//! Row changes are replayed in order, so replaying a batch that the last
//! checkpoint already holds writes the same final values again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The log file inside the data directory.
pub const FILE_NAME: &str = "sipring.wal";

const HEADER: usize = 12;
const PUT: u8 = 0;
const REMOVE: u8 = 1;

/// The tables a row change names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Table {
    Users = 0,
    Phones = 1,
    Bindings = 2,
    Expiry = 3,
    Proxies = 4,
    Dialogs = 5,
}

impl Table {
    fn from_u8(b: u8) -> Option<Table> {
        Some(match b {
            0 => Table::Users,
            1 => Table::Phones,
            2 => Table::Bindings,
            3 => Table::Expiry,
            4 => Table::Proxies,
            5 => Table::Dialogs,
            _ => return None,
        })
    }
}

/// One row change read back from the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Put(Table, &'a [u8], &'a [u8]),
    Remove(Table, &'a [u8]),
}

/// The row changes of the batch being applied, to be appended as one record.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
}

impl Batch {
    /// Records that `key` of `table` now holds `value`.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.change(table, PUT, key);
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
    }

    /// Records that `key` of `table` was removed.
    pub fn remove(&mut self, table: Table, key: &[u8]) {
        self.change(table, REMOVE, key);
    }

    fn change(&mut self, table: Table, kind: u8, key: &[u8]) {
        if self.buf.is_empty() {
            self.buf.resize(HEADER, 0);
        }
        self.buf.push(table as u8);
        self.buf.push(kind);
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets what was recorded, keeping the buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The framed record (header filled in); empty when nothing changed.
    pub fn framed(&mut self) -> &[u8] {
        if self.buf.is_empty() {
            return &self.buf;
        }
        let payload = &self.buf[HEADER..];
        let len = payload.len() as u32;
        let sum = xxhash_rust::xxh3::xxh3_64(payload);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..HEADER].copy_from_slice(&sum.to_le_bytes());
        &self.buf
    }
}

/// The open log.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    sync: bool,
    len: u64,
}

impl Wal {
    /// Opens (creating when absent) the log at `path` and returns it with
    /// what a previous process left in it.
    pub fn open(path: &Path, sync: bool) -> std::io::Result<(Wal, Vec<u8>)> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut left = Vec::new();
        file.read_to_end(&mut left)?;
        let len = left.len() as u64;
        Ok((
            Wal {
                file,
                path: path.to_owned(),
                sync,
                len,
            },
            left,
        ))
    }

    /// Appends the batch as one record (nothing when it is empty); with
    /// `sync`, returns once the record is on the disk.
    pub fn append(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        let record = batch.framed();
        if record.is_empty() {
            return Ok(());
        }
        self.file.write_all(record)?;
        if self.sync {
            self.file.sync_data()?;
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Bytes in the log since it was last emptied.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the log: call only once the database holds every record
    /// durably.
    pub fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Calls `apply` for every row change of every whole record in `log`, in
/// order; returns how many records were whole. A torn or damaged record
/// and everything after it are ignored.
pub fn replay<E>(
    log: &[u8],
    mut apply: impl FnMut(Change<'_>) -> Result<(), E>,
) -> Result<usize, E> {
    let mut records = 0;
    let mut rest = log;
    while rest.len() >= HEADER {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let sum = u64::from_le_bytes(rest[4..HEADER].try_into().unwrap());
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            break;
        };
        if xxhash_rust::xxh3::xxh3_64(payload) != sum {
            break;
        }
        let Some(changes) = decode(payload) else {
            break;
        };
        for c in changes {
            apply(c)?;
        }
        records += 1;
        rest = &rest[HEADER + len..];
    }
    Ok(records)
}

/// The row changes of one payload, or `None` when it does not decode.
fn decode(mut p: &[u8]) -> Option<Vec<Change<'_>>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = p.split_at_checked(n)?;
        *p = tail;
        Some(head)
    }
    fn sized<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize;
        take(p, n)
    }
    let mut out = Vec::new();
    while !p.is_empty() {
        let head = take(&mut p, 2)?;
        let table = Table::from_u8(head[0])?;
        let key = sized(&mut p)?;
        out.push(match head[1] {
            PUT => Change::Put(table, key, sized(&mut p)?),
            REMOVE => Change::Remove(table, key),
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sipring-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join(FILE_NAME)
    }

    fn read_back(log: &[u8]) -> (usize, Vec<String>) {
        let mut seen = Vec::new();
        let n = replay::<()>(log, |c| {
            seen.push(match c {
                Change::Put(t, k, v) => format!(
                    "put {t:?} {} {}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                Change::Remove(t, k) => format!("del {t:?} {}", String::from_utf8_lossy(k)),
            });
            Ok(())
        })
        .unwrap();
        (n, seen)
    }

    #[test]
    fn records_come_back_in_order_after_reopening() {
        let path = temp("order");
        {
            let (mut wal, left) = Wal::open(&path, false).unwrap();
            assert!(left.is_empty());
            let mut b = Batch::default();
            b.put(Table::Users, b"alice", b"u1");
            b.put(Table::Bindings, b"alice/c", b"b1");
            wal.append(&mut b).unwrap();
            b.clear();
            wal.append(&mut b).unwrap(); // an empty batch writes nothing
            b.remove(Table::Bindings, b"alice/c");
            b.put(Table::Expiry, b"e", b"");
            wal.append(&mut b).unwrap();
            assert!(!wal.is_empty());
        }
        let (_, left) = Wal::open(&path, true).unwrap();
        let (n, seen) = read_back(&left);
        assert_eq!(n, 2);
        assert_eq!(
            seen,
            [
                "put Users alice u1",
                "put Bindings alice/c b1",
                "del Bindings alice/c",
                "put Expiry e ",
            ]
        );
    }

    #[test]
    fn a_torn_or_damaged_tail_is_ignored() {
        let path = temp("torn");
        let (mut wal, _) = Wal::open(&path, false).unwrap();
        let mut b = Batch::default();
        b.put(Table::Users, b"a", b"1");
        wal.append(&mut b).unwrap();
        b.clear();
        b.put(Table::Users, b"b", b"2");
        wal.append(&mut b).unwrap();
        drop(wal);
        let whole = std::fs::read(&path).unwrap();
        let first = whole.len() / 2;
        for cut in 0..whole.len() {
            let (n, _) = read_back(&whole[..cut]);
            assert_eq!(n, usize::from(cut >= first), "cut at {cut}");
        }
        let mut bad = whole.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(read_back(&bad), (1, vec!["put Users a 1".to_string()]));
        let mut bad = whole;
        bad[HEADER + 1] = 9; // an unknown kind in the first record
        assert_eq!(read_back(&bad).0, 0);
    }

    #[test]
    fn truncate_empties_the_file() {
        let path = temp("trunc");
        let (mut wal, _) = Wal::open(&path, false).unwrap();
        let mut b = Batch::default();
        b.put(Table::Dialogs, b"k", b"v");
        wal.append(&mut b).unwrap();
        wal.truncate().unwrap();
        assert!(wal.is_empty());
        b.clear();
        b.put(Table::Proxies, b"n", b"p");
        wal.append(&mut b).unwrap();
        drop(wal);
        let (n, seen) = read_back(&std::fs::read(&path).unwrap());
        assert_eq!((n, seen), (1, vec!["put Proxies n p".to_string()]));
    }
}
