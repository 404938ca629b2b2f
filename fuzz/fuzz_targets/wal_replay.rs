//! The embedded store's write-ahead log decoder: any bytes left in
//! `sipring.wal` (torn, damaged or hostile) are replayed without a panic,
//! and a record written by `Batch` always reads back whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipring::store::embedded::wal::{Batch, Change, Table, replay};

fuzz_target!(|data: &[u8]| {
    let _ = replay::<()>(data, |_| Ok(()));
    // Frame the input as row changes and check they come back.
    let mut b = Batch::default();
    for (i, chunk) in data.chunks(7).enumerate() {
        if i % 2 == 0 {
            b.put(Table::Bindings, chunk, chunk);
        } else {
            b.remove(Table::Users, chunk);
        }
    }
    let framed = b.framed().to_vec();
    let mut n = 0;
    let records = replay::<()>(&framed, |c| {
        match (n % 2, c) {
            (0, Change::Put(Table::Bindings, k, v)) => assert_eq!(k, v),
            (1, Change::Remove(Table::Users, _)) => {}
            (_, c) => panic!("unexpected {c:?}"),
        }
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(records, usize::from(!data.is_empty()));
    assert_eq!(n, data.chunks(7).count());
});
