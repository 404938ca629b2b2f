//! Client transactions (RFC 3261 §17.1): INVITE (§17.1.1, with RFC 6026's
//! Accepted state and the proxy's Timer C) and non-INVITE (§17.1.2).

use std::mem;
use std::time::Duration;

use super::{Retransmit, StatusClass, TimerConfig, earliest};
use crate::time::Instant;

/// Timer D for unreliable transports: at least 32 s (§17.1.1.2).
const TIMER_D: Duration = Duration::from_secs(32);

/// What the user of a client transaction must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEffect {
    /// Nothing: a retransmitted response was absorbed, or a timer ended the
    /// transaction quietly.
    None,
    /// Send the request again (Timer A or E).
    Retransmit,
    /// Pass the response up.
    Deliver,
    /// A first 300–699 response to INVITE: send the ACK (§17.1.1.3), then pass
    /// the response up.
    AckAndDeliver,
    /// A retransmitted 300–699 response to INVITE: send the same ACK again.
    Ack,
    /// No final response in time (Timer B or F, Timer C before any
    /// provisional response, or 64*T1 after a CANCEL): act as if a 408
    /// arrived. The transaction is terminated.
    Timeout,
    /// The transport reported an error: act as if a 503 arrived (§16.9).
    /// The transaction is terminated.
    TransportError,
    /// Timer C fired after a provisional response: send a CANCEL for this
    /// branch, then call `cancel_sent`.
    Cancel,
}

// ---------------------------------------------------------------- INVITE

/// States of the INVITE client transaction (figure 5, with RFC 6026).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteState {
    Calling(Calling),
    Proceeding,
    Completed(Completed),
    Accepted(Accepted),
    Terminated,
}

/// Calling: the INVITE is out, no response yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Calling {
    /// Timer A: retransmission (unreliable transports only), doubling without cap.
    timer_a: Option<Retransmit>,
    /// Timer B: 64*T1, transaction timeout.
    timer_b: Instant,
}

/// Completed: a 300–699 response was acknowledged; Timer D absorbs its
/// retransmissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Completed {
    timer_d: Instant,
}

/// Accepted (RFC 6026): a 2xx arrived; Timer M keeps passing its
/// retransmissions up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Accepted {
    timer_m: Instant,
}

impl Calling {
    fn on_timeout(self, now: Instant) -> (InviteState, ClientEffect) {
        if now >= self.timer_b {
            return (InviteState::Terminated, ClientEffect::Timeout);
        }
        match self.timer_a {
            Some(a) if now >= a.at => (
                InviteState::Calling(Calling {
                    timer_a: Some(a.backoff(now, None)),
                    ..self
                }),
                ClientEffect::Retransmit,
            ),
            _ => (InviteState::Calling(self), ClientEffect::None),
        }
    }
}

/// Calling and Proceeding take responses the same way, except that a
/// provisional response in Calling stops Timers A and B.
fn invite_response(
    now: Instant,
    class: StatusClass,
    cfg: &TimerConfig,
    reliable: bool,
) -> (InviteState, ClientEffect) {
    match class {
        StatusClass::Trying | StatusClass::Provisional => {
            (InviteState::Proceeding, ClientEffect::Deliver)
        }
        StatusClass::Success => (
            InviteState::Accepted(Accepted {
                timer_m: now + cfg.t1x64(),
            }),
            ClientEffect::Deliver,
        ),
        StatusClass::Final if reliable => (InviteState::Terminated, ClientEffect::AckAndDeliver),
        StatusClass::Final => (
            InviteState::Completed(Completed {
                timer_d: now + TIMER_D,
            }),
            ClientEffect::AckAndDeliver,
        ),
    }
}

/// An INVITE client transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InviteClient {
    state: InviteState,
    cfg: TimerConfig,
    reliable: bool,
    /// Timer C (§16.6 step 11), when a proxy runs this transaction.
    timer_c: Option<Instant>,
    /// Whether any provisional response arrived.
    provisional: bool,
    /// After a CANCEL: the time to give up waiting for a final response (§9.1).
    cancel_guard: Option<Instant>,
}

impl InviteClient {
    /// A transaction whose INVITE was just sent at `now`. `reliable` is the
    /// transport; `timer_c` is set by proxies (§16.6 step 11).
    pub fn new(now: Instant, cfg: TimerConfig, reliable: bool, timer_c: bool) -> Self {
        InviteClient {
            state: InviteState::Calling(Calling {
                timer_a: (!reliable).then(|| Retransmit::start(now, cfg.t1)),
                timer_b: now + cfg.t1x64(),
            }),
            cfg,
            reliable,
            timer_c: timer_c.then(|| now + cfg.timer_c),
            provisional: false,
            cancel_guard: None,
        }
    }

    /// A response matching this transaction arrived.
    pub fn on_response(&mut self, now: Instant, class: StatusClass) -> ClientEffect {
        let (next, effect) = match self.state {
            InviteState::Calling(_) | InviteState::Proceeding => {
                invite_response(now, class, &self.cfg, self.reliable)
            }
            InviteState::Completed(c) => match class {
                StatusClass::Final => (InviteState::Completed(c), ClientEffect::Ack),
                _ => (InviteState::Completed(c), ClientEffect::None),
            },
            InviteState::Accepted(a) => match class {
                StatusClass::Success => (InviteState::Accepted(a), ClientEffect::Deliver),
                _ => (InviteState::Accepted(a), ClientEffect::None),
            },
            InviteState::Terminated => (InviteState::Terminated, ClientEffect::None),
        };
        if matches!(
            self.state,
            InviteState::Calling(_) | InviteState::Proceeding
        ) {
            match class {
                StatusClass::Trying => self.provisional = true,
                // §16.7 step 2: 101–199 restart Timer C.
                StatusClass::Provisional => {
                    self.provisional = true;
                    if self.timer_c.is_some() {
                        self.timer_c = Some(now + self.cfg.timer_c);
                    }
                }
                StatusClass::Success | StatusClass::Final => {
                    self.timer_c = None;
                    self.cancel_guard = None;
                }
            }
        }
        self.state = next;
        effect
    }

    /// Fires the timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> ClientEffect {
        let waiting = matches!(
            self.state,
            InviteState::Calling(_) | InviteState::Proceeding
        );
        if waiting && self.cancel_guard.is_some_and(|t| now >= t) {
            return self.terminate(ClientEffect::Timeout);
        }
        if waiting && self.timer_c.is_some_and(|t| now >= t) {
            self.timer_c = None;
            if self.provisional {
                return ClientEffect::Cancel;
            }
            return self.terminate(ClientEffect::Timeout);
        }
        let (next, effect) = match self.state {
            InviteState::Calling(c) => c.on_timeout(now),
            InviteState::Completed(c) if now >= c.timer_d => {
                (InviteState::Terminated, ClientEffect::None)
            }
            InviteState::Accepted(a) if now >= a.timer_m => {
                (InviteState::Terminated, ClientEffect::None)
            }
            s => (s, ClientEffect::None),
        };
        self.state = next;
        effect
    }

    /// A CANCEL for this transaction's request was sent at `now`: if no final
    /// response comes within 64*T1, the transaction times out (§9.1).
    pub fn cancel_sent(&mut self, now: Instant) {
        if matches!(
            self.state,
            InviteState::Calling(_) | InviteState::Proceeding
        ) {
            self.cancel_guard = Some(now + self.cfg.t1x64());
        }
    }

    /// The transport failed to send the request.
    pub fn on_transport_error(&mut self) -> ClientEffect {
        match self.state {
            InviteState::Calling(_) | InviteState::Proceeding => {
                self.terminate(ClientEffect::TransportError)
            }
            _ => {
                self.state = InviteState::Terminated;
                ClientEffect::None
            }
        }
    }

    /// When `on_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (guards, state) = match self.state {
            InviteState::Calling(c) => (true, earliest([c.timer_a.map(|a| a.at), Some(c.timer_b)])),
            InviteState::Proceeding => (true, None),
            InviteState::Completed(c) => (false, Some(c.timer_d)),
            InviteState::Accepted(a) => (false, Some(a.timer_m)),
            InviteState::Terminated => return None,
        };
        if guards {
            earliest([state, self.timer_c, self.cancel_guard])
        } else {
            state
        }
    }

    /// Whether a provisional response arrived (a CANCEL may be sent).
    pub fn has_provisional(&self) -> bool {
        self.provisional
    }

    /// Whether a final response arrived (or the transaction ended without one).
    pub fn is_final(&self) -> bool {
        !matches!(
            self.state,
            InviteState::Calling(_) | InviteState::Proceeding
        )
    }

    /// Whether the transaction is over and may be forgotten.
    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }

    fn terminate(&mut self, effect: ClientEffect) -> ClientEffect {
        self.state = InviteState::Terminated;
        self.timer_c = None;
        self.cancel_guard = None;
        effect
    }
}

// ------------------------------------------------------------ non-INVITE

/// States of the non-INVITE client transaction (figure 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NonInviteState {
    /// Trying and Proceeding differ only in Timer E's interval after it fires.
    Waiting {
        proceeding: bool,
        /// Timer E: retransmission (unreliable transports only).
        timer_e: Option<Retransmit>,
        /// Timer F: 64*T1, transaction timeout.
        timer_f: Instant,
    },
    /// Completed: Timer K absorbs response retransmissions.
    Completed {
        timer_k: Instant,
    },
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonInviteClient {
    state: NonInviteState,
    cfg: TimerConfig,
    reliable: bool,
}

impl NonInviteClient {
    /// A transaction whose request was just sent at `now`.
    pub fn new(now: Instant, cfg: TimerConfig, reliable: bool) -> Self {
        NonInviteClient {
            state: NonInviteState::Waiting {
                proceeding: false,
                timer_e: (!reliable).then(|| Retransmit::start(now, cfg.t1)),
                timer_f: now + cfg.t1x64(),
            },
            cfg,
            reliable,
        }
    }

    /// A response matching this transaction arrived.
    pub fn on_response(&mut self, now: Instant, class: StatusClass) -> ClientEffect {
        match mem::replace(&mut self.state, NonInviteState::Terminated) {
            NonInviteState::Waiting {
                timer_e, timer_f, ..
            } => {
                self.state = if class.is_final() {
                    if self.reliable {
                        NonInviteState::Terminated
                    } else {
                        NonInviteState::Completed {
                            timer_k: now + self.cfg.t4,
                        }
                    }
                } else {
                    NonInviteState::Waiting {
                        proceeding: true,
                        timer_e,
                        timer_f,
                    }
                };
                ClientEffect::Deliver
            }
            s => {
                self.state = s;
                ClientEffect::None
            }
        }
    }

    /// Fires the timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> ClientEffect {
        match self.state {
            NonInviteState::Waiting { timer_f, .. } if now >= timer_f => {
                self.state = NonInviteState::Terminated;
                ClientEffect::Timeout
            }
            NonInviteState::Waiting {
                proceeding,
                timer_e: Some(e),
                timer_f,
            } if now >= e.at => {
                // Trying: double up to T2; Proceeding: always T2.
                let next = if proceeding {
                    Retransmit {
                        at: now + self.cfg.t2,
                        interval: self.cfg.t2,
                    }
                } else {
                    e.backoff(now, Some(self.cfg.t2))
                };
                self.state = NonInviteState::Waiting {
                    proceeding,
                    timer_e: Some(next),
                    timer_f,
                };
                ClientEffect::Retransmit
            }
            NonInviteState::Completed { timer_k } if now >= timer_k => {
                self.state = NonInviteState::Terminated;
                ClientEffect::None
            }
            _ => ClientEffect::None,
        }
    }

    /// The transport failed to send the request.
    pub fn on_transport_error(&mut self) -> ClientEffect {
        let waiting = matches!(self.state, NonInviteState::Waiting { .. });
        self.state = NonInviteState::Terminated;
        if waiting {
            ClientEffect::TransportError
        } else {
            ClientEffect::None
        }
    }

    /// When `on_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            NonInviteState::Waiting {
                timer_e, timer_f, ..
            } => earliest([timer_e.map(|e| e.at), Some(timer_f)]),
            NonInviteState::Completed { timer_k } => Some(timer_k),
            NonInviteState::Terminated => None,
        }
    }

    /// Whether a final response arrived (or the transaction ended without one).
    pub fn is_final(&self) -> bool {
        !matches!(self.state, NonInviteState::Waiting { .. })
    }

    /// Whether the transaction is over and may be forgotten.
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Drives a machine through virtual time: jumps to each wake-up and
    /// records (ms, effect) until it is idle or `until` passes.
    fn run<M>(
        m: &mut M,
        until: Instant,
        poll: impl Fn(&M) -> Option<Instant>,
        fire: impl Fn(&mut M, Instant) -> ClientEffect,
    ) -> Vec<(u64, ClientEffect)> {
        let mut out = Vec::new();
        while let Some(t) = poll(m) {
            if t > until {
                break;
            }
            let e = fire(m, t);
            if e != ClientEffect::None {
                out.push((t.as_nanos() / 1_000_000, e));
            }
            assert!(out.len() < 1_000);
        }
        out
    }

    fn run_invite(m: &mut InviteClient, until: Instant) -> Vec<(u64, ClientEffect)> {
        run(
            m,
            until,
            InviteClient::poll_timeout,
            InviteClient::on_timeout,
        )
    }

    fn run_non_invite(m: &mut NonInviteClient, until: Instant) -> Vec<(u64, ClientEffect)> {
        run(
            m,
            until,
            NonInviteClient::poll_timeout,
            NonInviteClient::on_timeout,
        )
    }

    use ClientEffect::*;

    #[test]
    fn invite_timer_a_doubles_until_timer_b() {
        let start = std::time::Instant::now();
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), false, false);
        let fired = run_invite(&mut t, ms(100_000));
        assert_eq!(
            fired,
            vec![
                (500, Retransmit),
                (1_500, Retransmit),
                (3_500, Retransmit),
                (7_500, Retransmit),
                (15_500, Retransmit),
                (31_500, Retransmit),
                (32_000, Timeout),
            ]
        );
        assert!(t.is_terminated());
        assert!(start.elapsed() < Duration::from_secs(1), "virtual time");
    }

    #[test]
    fn invite_over_a_reliable_transport_never_retransmits() {
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), true, false);
        assert_eq!(run_invite(&mut t, ms(100_000)), vec![(32_000, Timeout)]);
    }

    #[test]
    fn invite_provisional_stops_a_and_b() {
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), false, false);
        assert_eq!(t.on_response(ms(100), StatusClass::Trying), Deliver);
        assert_eq!(t.poll_timeout(), Option::None);
        assert!(t.has_provisional());
        assert_eq!(t.on_response(ms(200), StatusClass::Provisional), Deliver);
        assert_eq!(t.on_response(ms(300), StatusClass::Final), AckAndDeliver);
        // Retransmissions of the final response re-send the ACK only.
        assert_eq!(t.on_response(ms(800), StatusClass::Final), Ack);
        assert_eq!(t.on_response(ms(900), StatusClass::Provisional), None);
        assert_eq!(t.poll_timeout(), Some(ms(32_300)));
        assert_eq!(run_invite(&mut t, ms(100_000)), vec![]);
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_final_over_reliable_terminates_at_once() {
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), true, false);
        assert_eq!(t.on_response(ms(1), StatusClass::Final), AckAndDeliver);
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_2xx_enters_accepted_and_passes_retransmissions_up() {
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), false, true);
        assert_eq!(t.on_response(ms(10), StatusClass::Success), Deliver);
        assert!(t.is_final() && !t.is_terminated());
        assert_eq!(t.on_response(ms(510), StatusClass::Success), Deliver);
        assert_eq!(t.on_response(ms(520), StatusClass::Final), None);
        assert_eq!(t.poll_timeout(), Some(ms(32_010)), "Timer M, no Timer C");
        assert_eq!(run_invite(&mut t, ms(100_000)), vec![]);
        assert!(t.is_terminated());
    }

    #[test]
    fn timer_c_restarts_on_provisional_and_asks_for_a_cancel() {
        let cfg = TimerConfig::default();
        let mut t = InviteClient::new(ms(0), cfg, false, true);
        t.on_response(ms(100), StatusClass::Trying);
        // 100 does not restart Timer C.
        assert_eq!(t.poll_timeout(), Some(ms(181_000)));
        t.on_response(ms(60_000), StatusClass::Provisional);
        assert_eq!(t.poll_timeout(), Some(ms(241_000)));
        assert_eq!(run_invite(&mut t, ms(241_000)), vec![(241_000, Cancel)]);
        t.cancel_sent(ms(241_000));
        // No 487 comes: the branch gives up 64*T1 after the CANCEL.
        assert_eq!(run_invite(&mut t, ms(1_000_000)), vec![(273_000, Timeout)]);
        assert!(t.is_terminated());
    }

    #[test]
    fn timer_c_without_provisional_is_a_timeout() {
        let cfg = TimerConfig {
            timer_c: Duration::from_secs(10),
            ..TimerConfig::default()
        };
        let mut t = InviteClient::new(ms(0), cfg, true, true);
        assert_eq!(run_invite(&mut t, ms(1_000_000)), vec![(10_000, Timeout)]);
    }

    #[test]
    fn cancelled_branch_that_answers_is_not_timed_out() {
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), false, true);
        t.on_response(ms(5), StatusClass::Provisional);
        t.cancel_sent(ms(1_000));
        assert_eq!(t.on_response(ms(1_010), StatusClass::Final), AckAndDeliver);
        assert_eq!(run_invite(&mut t, ms(1_000_000)), vec![]);
    }

    #[test]
    fn invite_transport_error() {
        let mut t = InviteClient::new(ms(0), TimerConfig::default(), true, true);
        assert_eq!(t.on_transport_error(), TransportError);
        assert!(t.is_terminated());
        assert_eq!(t.poll_timeout(), Option::None);
    }

    #[test]
    fn non_invite_timer_e_caps_at_t2_until_timer_f() {
        let mut t = NonInviteClient::new(ms(0), TimerConfig::default(), false);
        let fired = run_non_invite(&mut t, ms(100_000));
        let times: Vec<u64> = fired.iter().map(|&(t, _)| t).collect();
        assert_eq!(
            times,
            vec![
                500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500, 32_000
            ]
        );
        assert_eq!(fired.last().unwrap().1, Timeout);
        assert!(t.is_terminated());
    }

    #[test]
    fn non_invite_proceeding_retransmits_every_t2() {
        let mut t = NonInviteClient::new(ms(0), TimerConfig::default(), false);
        assert_eq!(run_non_invite(&mut t, ms(500)), vec![(500, Retransmit)]);
        assert_eq!(t.on_response(ms(600), StatusClass::Provisional), Deliver);
        // Timer E was due at 1500 (interval 1 s); after it, every T2.
        let fired = run_non_invite(&mut t, ms(20_000));
        let times: Vec<u64> = fired.iter().map(|&(t, _)| t).collect();
        assert_eq!(times, vec![1_500, 5_500, 9_500, 13_500, 17_500]);
        assert_eq!(t.on_response(ms(20_000), StatusClass::Success), Deliver);
        assert_eq!(t.on_response(ms(20_100), StatusClass::Success), None);
        assert_eq!(t.poll_timeout(), Some(ms(25_000)), "Timer K = T4");
        assert_eq!(run_non_invite(&mut t, ms(100_000)), vec![]);
        assert!(t.is_terminated());
    }

    #[test]
    fn non_invite_reliable() {
        let mut t = NonInviteClient::new(ms(0), TimerConfig::default(), true);
        assert_eq!(t.poll_timeout(), Some(ms(32_000)));
        assert_eq!(t.on_response(ms(1), StatusClass::Final), Deliver);
        assert!(t.is_terminated());
    }

    #[test]
    fn configurable_t1_scales_the_timers() {
        let cfg = TimerConfig {
            t1: Duration::from_millis(100),
            t2: Duration::from_millis(400),
            ..TimerConfig::default()
        };
        let mut t = NonInviteClient::new(ms(0), cfg, false);
        let fired = run_non_invite(&mut t, ms(100_000));
        assert_eq!(fired.first(), Some(&(100, Retransmit)));
        assert_eq!(fired.last(), Some(&(6_400, Timeout)));
    }
}
