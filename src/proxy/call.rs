//! One proxied request: its server transaction, the branches it was
//! forwarded on (client transactions), and the response context of §16.7.

use smallvec::SmallVec;

use crate::engine::{Listener, Peer};
use crate::time::Instant;
use crate::timer::TimerKey;
use crate::transaction::{
    BRANCH_LEN, InviteClient, InviteServer, NonInviteClient, NonInviteServer, TxKey,
};

/// The server side of a call.
#[derive(Debug)]
pub(crate) enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ServerTx {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerTx::Invite(t) => t.poll_timeout(),
            ServerTx::NonInvite(t) => t.poll_timeout(),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }

    pub(crate) fn is_final(&self) -> bool {
        match self {
            ServerTx::Invite(t) => t.is_final(),
            ServerTx::NonInvite(t) => t.is_final(),
        }
    }
}

/// The client side of one branch.
#[derive(Debug)]
pub(crate) enum ClientTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

impl ClientTx {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.poll_timeout(),
            ClientTx::NonInvite(t) => t.poll_timeout(),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

/// A CANCEL this proxy sent on a branch (its own non-INVITE client
/// transaction, §9.1).
#[derive(Debug)]
pub(crate) struct CancelTx {
    pub(crate) tx: NonInviteClient,
    pub(crate) bytes: Vec<u8>,
}

/// One target the request was forwarded to.
#[derive(Debug)]
pub(crate) struct Branch {
    pub(crate) branch: [u8; BRANCH_LEN],
    /// The client transaction's key (branch and method).
    pub(crate) key: TxKey,
    pub(crate) tx: ClientTx,
    pub(crate) dest: Peer,
    /// The forwarded request, for retransmission and to build CANCEL/ACK;
    /// released once a final response arrives.
    pub(crate) request: Option<Vec<u8>>,
    /// The hop-by-hop ACK for a 300–699 response, resent on its retransmissions.
    pub(crate) ack: Option<Vec<u8>>,
    pub(crate) cancel: Option<CancelTx>,
    /// A CANCEL was asked for before any provisional response: send it when
    /// one arrives (§9.1).
    pub(crate) cancel_pending: bool,
    /// The final status this branch ended with (408/503 when synthesised).
    pub(crate) final_code: Option<u16>,
    /// Sent over TCP only because it was too large for UDP (§18.1.1).
    pub(crate) tcp_switched: bool,
}

impl Branch {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let c = self.cancel.as_ref().and_then(|c| c.tx.poll_timeout());
        match (self.tx.poll_timeout(), c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.tx.is_terminated() && self.cancel.as_ref().is_none_or(|c| c.tx.is_terminated())
    }
}

/// The best final response so far (§16.7 step 6).
#[derive(Debug)]
pub(crate) struct Best {
    pub(crate) code: u16,
    /// The response as it will be forwarded (our Via removed); `None` for a
    /// response the proxy synthesises (408 on timeout, 503 on transport error).
    pub(crate) bytes: Option<Vec<u8>>,
}

/// Whether final response `a` should replace the current best `b`: any 6xx
/// beats the rest, then the lowest class wins (3xx before 4xx before 5xx);
/// within a class the first one stays.
pub(crate) fn better(a: u16, b: u16) -> bool {
    let rank = |c: u16| if c >= 600 { 0 } else { c / 100 };
    rank(a) < rank(b)
}

/// The kind of request a call serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invite,
    /// A CANCEL the proxy answered itself (§16.10).
    Cancel,
    Other,
}

/// A proxied request and everything the proxy keeps for it.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) kind: Kind,
    pub(crate) server: ServerTx,
    pub(crate) server_key: TxKey,
    /// Where responses go (§18.2.2), and from which socket.
    pub(crate) upstream: Peer,
    pub(crate) listener: Listener,
    /// The request as received, kept until the final response to build
    /// responses the proxy generates itself.
    pub(crate) request: Option<Vec<u8>>,
    /// The last response sent upstream, resent on request retransmissions
    /// and by Timer G.
    pub(crate) response: Option<Vec<u8>>,
    pub(crate) branches: SmallVec<[Branch; 1]>,
    pub(crate) best: Option<Best>,
    /// A CANCEL arrived for this INVITE.
    pub(crate) cancelled: bool,
    /// Waiting for a DNS answer before the first branch can be created.
    pub(crate) resolving: bool,
    /// The To tag of the responses this proxy generates for this request.
    pub(crate) local_tag: [u8; 16],
    pub(crate) timer: Option<TimerKey>,
    /// When to send 100 Trying if nothing went upstream by then (§17.2.1,
    /// `trying_delay`).
    pub(crate) trying_due: Option<Instant>,
    /// Waiting for the services' decision: its token and the deadline
    /// after which the request is answered 503.
    pub(crate) waiting: Option<(u64, Instant)>,
}

impl Call {
    /// The earliest timer of the server side and every branch.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.branches
            .iter()
            .filter_map(Branch::poll_timeout)
            .chain(self.server.poll_timeout())
            .chain(self.trying_due)
            .chain(self.waiting.map(|w| w.1))
            .min()
    }

    /// Whether everything is over and the call may be forgotten.
    pub(crate) fn is_done(&self) -> bool {
        !self.resolving
            && self.server.is_terminated()
            && self.branches.iter().all(Branch::is_terminated)
    }

    /// Whether every branch has a final response (or ended without one).
    pub(crate) fn all_final(&self) -> bool {
        !self.resolving && self.branches.iter().all(|b| b.final_code.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::better;

    #[test]
    fn best_response_order() {
        assert!(better(603, 302));
        assert!(better(600, 486));
        assert!(!better(486, 603));
        assert!(better(302, 404));
        assert!(better(404, 503));
        assert!(!better(480, 404), "first of a class stays");
        assert!(!better(503, 408));
        assert!(!better(604, 600), "first 6xx stays");
    }
}
