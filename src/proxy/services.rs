//! The hook through which the registrar, digest authentication and the
//! location service (`crate::registrar`) decide what happens to a new
//! request, without the proxy knowing about users or stores.
//!
//! The proxy calls [`Services::on_request`] once per new request (not an
//! ACK, CANCEL or retransmission) that passed its §16.3 checks. The answer
//! is an [`Action`]: route it as usual, answer it, fork it to targets
//! (§16.5), or wait. While a request waits the proxy keeps its server
//! transaction (100 Trying sent for INVITE, retransmissions absorbed, a
//! CANCEL answered 487) and forwards the services' `Request`s (store
//! look-ups) to the shell and their `Reply::Store` answers back; the
//! decision comes later from [`Services::poll_decision`] with the token
//! `on_request` was given. A decision for a request that ended meanwhile
//! is ignored; the proxy says so with [`Services::abandon`].

use crate::engine::{Listener, Peer, Reply, Request};
use crate::time::Instant;

/// A new request, as the services see it.
#[derive(Clone, Copy, Debug)]
pub struct NewRequest<'a> {
    /// The parsed message (all typed views available).
    pub message: &'a sipring_parser::Message<'a>,
    /// Its method.
    pub method: &'a [u8],
    /// Who sent it, how.
    pub source: Peer,
    /// The socket it came on.
    pub listener: Listener,
    /// The Request-URI names this node (host and port).
    pub to_me: bool,
    /// A Route that is not this node's remains: the request is routed
    /// elsewhere by its sender.
    pub routed: bool,
    /// It has a To tag (a request within a dialog).
    pub in_dialog: bool,
}

/// Where a forked request goes (§16.6 for one target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The new Request-URI (a registered Contact).
    pub uri: Vec<u8>,
    /// Route values (`<sip:...;lr>`) to put on top, in order (the Path of
    /// the registration, RFC 3327).
    pub route: Vec<Vec<u8>>,
    /// Send here instead of resolving the first Route or the Request-URI
    /// (the flow the registration came over, RFC 5626).
    pub dest: Option<Peer>,
}

/// What the proxy does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Route it as usual (Route, `forward_to`, Request-URI).
    Proxy,
    /// Answer it with this status and these extra header lines (each
    /// ending in CRLF).
    Respond {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: &'static str,
        /// Extra header lines (Contact, WWW-Authenticate, Min-Expires...).
        headers: Vec<u8>,
    },
    /// Fork it in parallel to these targets; 480 when none can be reached.
    Fork(Vec<Target>),
    /// The decision comes later through `poll_decision`.
    Wait,
}

/// The registrar, authentication and location service of one core.
pub trait Services: std::fmt::Debug {
    /// A new request; `call` is the token a later decision names.
    fn on_request(&mut self, now: Instant, req: &NewRequest<'_>, call: u64) -> Action;

    /// The answer to one of its requests (`Reply::Store`).
    fn handle_reply(&mut self, now: Instant, reply: Reply);

    /// A decision for a request that waited.
    fn poll_decision(&mut self) -> Option<(u64, Action)>;

    /// Work for the shell (store look-ups and updates).
    fn poll_request(&mut self) -> Option<Request>;

    /// When `handle_timeout` must run, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Timer work (cache expiry).
    fn handle_timeout(&mut self, now: Instant);

    /// A waiting request ended (CANCEL, timeout): its decision is not
    /// wanted any more.
    fn abandon(&mut self, call: u64);
}
