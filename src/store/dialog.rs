//! The hook through which a core's proxy engine reports dialogs to a store,
//! so that another node can take them over (the Cassandra backend persists
//! them; docs/storage.md).
//!
//! Sans-IO: the engine calls the sink with `now` and borrowed bytes from the
//! message at hand; the sink must not block (the Cassandra one queues the
//! mutation for its core's next batch) and asks for its own timer through
//! `poll_timeout`/`handle_timeout`, which the engine folds into its own.

use crate::time::Instant;

/// A dialog as the engine saw it established (or updated) by a 2xx.
#[derive(Clone, Copy, Debug)]
pub struct DialogEvent<'a> {
    /// Call-ID.
    pub call_id: &'a [u8],
    /// The caller's tag (From tag of the INVITE).
    pub from_tag: &'a [u8],
    /// The callee's tag (To tag of the 2xx).
    pub to_tag: &'a [u8],
    /// What a successor needs to take the dialog over or end it: the 2xx's
    /// start line and headers (From, To, Contact, Record-Route, CSeq).
    pub state: &'a [u8],
}

/// Where a core's engine reports its dialogs.
pub trait DialogSink: std::fmt::Debug {
    /// A dialog was established by a 2xx to an INVITE, or updated by a 2xx
    /// to a re-INVITE (same identity).
    fn established(&mut self, now: Instant, dialog: DialogEvent<'_>);

    /// A dialog ended (BYE, in either direction: the tags in either order).
    fn ended(&mut self, now: Instant, call_id: &[u8], tag_a: &[u8], tag_b: &[u8]);

    /// When `handle_timeout` must run, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Timer work (flushing a batch, forgetting old dialogs).
    fn handle_timeout(&mut self, now: Instant);
}
