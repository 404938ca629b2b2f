//! RFC 3261 §17 transactions: the client and server state machines for
//! INVITE and non-INVITE, with timers A–K (and RFC 6026's L and M), plus the
//! proxy's Timer C (§16.6 step 11), and the §17.1.3/§17.2.3 matching keys.
//!
//! The machines are sans-IO and hold no message bytes: each is driven by
//! events (`on_response`, `on_request`, `on_send`, `on_timeout`) with `now`
//! passed in, and each event returns what its user (the proxy core) must do
//! — retransmit, send an ACK, deliver, report a timeout. The user keeps the
//! bytes it retransmits and schedules each transaction's `poll_timeout()` in
//! the per-core timer wheel (`crate::timer`). Each state is a type holding
//! exactly the timers that state runs; a transition consumes the old state.
//!
//! RFC 6026 is followed for 2xx to INVITE: the client transaction enters
//! Accepted (Timer M) and keeps passing 2xx retransmissions up, the server
//! transaction enters Accepted (Timer L) and keeps sending the 2xx its user
//! forwards, so a proxy carries 2xx retransmissions end to end without
//! keeping dialog state.

mod branch;
mod client;
mod key;
mod server;

use std::time::Duration;

pub use branch::{BRANCH_LEN, BranchGenerator};
pub use client::{ClientEffect, InviteClient, NonInviteClient};
pub use key::{MAGIC_COOKIE, TxKey, is_rfc3261_branch};
pub use server::{InviteServer, NonInviteServer, ServerEffect};

/// The transaction timer base values (RFC 3261 §17.1.1.1, table 4) and the
/// proxy's Timer C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses; default 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network; default 5 s.
    pub t4: Duration,
    /// Timer C: how long a proxy waits for a final response to a forwarded
    /// INVITE after its last provisional one; more than 3 min (§16.6).
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl TimerConfig {
    /// 64 * T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The class of a response status code, as the transaction machines see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// 100 Trying.
    Trying,
    /// 101–199.
    Provisional,
    /// 200–299.
    Success,
    /// 300–699.
    Final,
}

impl StatusClass {
    /// The class of `code`, or `None` outside 100–699.
    pub fn of(code: u16) -> Option<StatusClass> {
        match code {
            100 => Some(StatusClass::Trying),
            101..=199 => Some(StatusClass::Provisional),
            200..=299 => Some(StatusClass::Success),
            300..=699 => Some(StatusClass::Final),
            _ => None,
        }
    }

    /// A final (2xx–6xx) class.
    pub fn is_final(self) -> bool {
        matches!(self, StatusClass::Success | StatusClass::Final)
    }
}

/// A retransmission timer: when it fires next and the interval after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Retransmit {
    at: crate::time::Instant,
    interval: Duration,
}

impl Retransmit {
    fn start(now: crate::time::Instant, interval: Duration) -> Self {
        Retransmit {
            at: now + interval,
            interval,
        }
    }

    /// Fired at `now`: the next one after twice the interval, capped.
    fn backoff(self, now: crate::time::Instant, cap: Option<Duration>) -> Self {
        let doubled = self.interval * 2;
        let interval = cap.map_or(doubled, |c| doubled.min(c));
        Retransmit {
            at: now + interval,
            interval,
        }
    }
}

/// The earliest of several optional deadlines.
fn earliest<const N: usize>(
    deadlines: [Option<crate::time::Instant>; N],
) -> Option<crate::time::Instant> {
    deadlines.into_iter().flatten().min()
}
