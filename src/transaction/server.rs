//! Server transactions (RFC 3261 §17.2): INVITE (§17.2.1, with RFC 6026's
//! Accepted state) and non-INVITE (§17.2.2).

use super::{Retransmit, StatusClass, TimerConfig};
use crate::time::Instant;

/// What the user of a server transaction must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEffect {
    /// Nothing: a retransmitted request or an ACK was absorbed, a response
    /// the state does not allow was refused, or a timer ended the
    /// transaction quietly.
    None,
    /// Send the response the user just handed over.
    Send,
    /// Send the last response again (a request retransmission, Timer G).
    Resend,
    /// Pass the request up (an ACK for a 2xx in the Accepted state).
    Deliver,
    /// Timer H: no ACK for a 300–699 response. The transaction is terminated.
    Timeout,
}

// ---------------------------------------------------------------- INVITE

/// States of the INVITE server transaction (figure 7, with RFC 6026).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteState {
    /// Proceeding: whether a provisional response went out yet.
    Proceeding {
        responded: bool,
    },
    Completed(Completed),
    /// Confirmed: the ACK came; Timer I absorbs its retransmissions.
    Confirmed {
        timer_i: Instant,
    },
    /// Accepted (RFC 6026): a 2xx went out; Timer L.
    Accepted {
        timer_l: Instant,
    },
    Terminated,
}

/// Completed: a 300–699 response is out and retransmitted until the ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Completed {
    /// Timer G: response retransmission (unreliable transports only).
    timer_g: Option<Retransmit>,
    /// Timer H: 64*T1, wait for the ACK.
    timer_h: Instant,
}

impl Completed {
    fn on_timeout(self, now: Instant, cfg: &TimerConfig) -> (InviteState, ServerEffect) {
        if now >= self.timer_h {
            return (InviteState::Terminated, ServerEffect::Timeout);
        }
        match self.timer_g {
            Some(g) if now >= g.at => (
                InviteState::Completed(Completed {
                    timer_g: Some(g.backoff(now, Some(cfg.t2))),
                    ..self
                }),
                ServerEffect::Resend,
            ),
            _ => (InviteState::Completed(self), ServerEffect::None),
        }
    }

    fn on_ack(self, now: Instant, cfg: &TimerConfig, reliable: bool) -> InviteState {
        if reliable {
            InviteState::Terminated
        } else {
            InviteState::Confirmed {
                timer_i: now + cfg.t4,
            }
        }
    }
}

/// An INVITE server transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InviteServer {
    state: InviteState,
    cfg: TimerConfig,
    reliable: bool,
}

impl InviteServer {
    /// A transaction for a just received INVITE.
    pub fn new(cfg: TimerConfig, reliable: bool) -> Self {
        InviteServer {
            state: InviteState::Proceeding { responded: false },
            cfg,
            reliable,
        }
    }

    /// A retransmission of the INVITE arrived.
    pub fn on_request(&mut self) -> ServerEffect {
        match self.state {
            InviteState::Proceeding { responded: true } | InviteState::Completed(_) => {
                ServerEffect::Resend
            }
            _ => ServerEffect::None,
        }
    }

    /// An ACK matching this transaction arrived.
    pub fn on_ack(&mut self, now: Instant) -> ServerEffect {
        match self.state {
            InviteState::Completed(c) => {
                self.state = c.on_ack(now, &self.cfg, self.reliable);
                ServerEffect::None
            }
            InviteState::Accepted { .. } => ServerEffect::Deliver,
            _ => ServerEffect::None,
        }
    }

    /// The user wants to send a response of `class`: `Send` when the state
    /// allows it, `None` when it must be dropped (a second final response).
    pub fn on_send(&mut self, now: Instant, class: StatusClass) -> ServerEffect {
        match (self.state, class) {
            (InviteState::Proceeding { .. }, StatusClass::Trying | StatusClass::Provisional) => {
                self.state = InviteState::Proceeding { responded: true };
                ServerEffect::Send
            }
            (InviteState::Proceeding { .. }, StatusClass::Success) => {
                self.state = InviteState::Accepted {
                    timer_l: now + self.cfg.t1x64(),
                };
                ServerEffect::Send
            }
            // RFC 6026: 2xx retransmissions from the user go out.
            (InviteState::Accepted { .. }, StatusClass::Success) => ServerEffect::Send,
            (InviteState::Proceeding { .. }, StatusClass::Final) => {
                self.state = InviteState::Completed(Completed {
                    timer_g: (!self.reliable).then(|| Retransmit::start(now, self.cfg.t1)),
                    timer_h: now + self.cfg.t1x64(),
                });
                ServerEffect::Send
            }
            _ => ServerEffect::None,
        }
    }

    /// Fires the timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> ServerEffect {
        let (next, effect) = match self.state {
            InviteState::Completed(c) => c.on_timeout(now, &self.cfg),
            InviteState::Confirmed { timer_i } if now >= timer_i => {
                (InviteState::Terminated, ServerEffect::None)
            }
            InviteState::Accepted { timer_l } if now >= timer_l => {
                (InviteState::Terminated, ServerEffect::None)
            }
            s => (s, ServerEffect::None),
        };
        self.state = next;
        effect
    }

    /// The transport failed to send a response.
    pub fn on_transport_error(&mut self) {
        self.state = InviteState::Terminated;
    }

    /// When `on_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            InviteState::Completed(c) => Some(c.timer_g.map_or(c.timer_h, |g| g.at.min(c.timer_h))),
            InviteState::Confirmed { timer_i } => Some(timer_i),
            InviteState::Accepted { timer_l } => Some(timer_l),
            InviteState::Proceeding { .. } | InviteState::Terminated => None,
        }
    }

    /// Whether a final response went out.
    pub fn is_final(&self) -> bool {
        !matches!(self.state, InviteState::Proceeding { .. })
    }

    /// Whether the transaction is over and may be forgotten.
    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }
}

// ------------------------------------------------------------ non-INVITE

/// States of the non-INVITE server transaction (figure 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    /// Completed: Timer J absorbs request retransmissions.
    Completed {
        timer_j: Instant,
    },
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonInviteServer {
    state: NonInviteState,
    cfg: TimerConfig,
    reliable: bool,
}

impl NonInviteServer {
    /// A transaction for a just received request.
    pub fn new(cfg: TimerConfig, reliable: bool) -> Self {
        NonInviteServer {
            state: NonInviteState::Trying,
            cfg,
            reliable,
        }
    }

    /// A retransmission of the request arrived.
    pub fn on_request(&mut self) -> ServerEffect {
        match self.state {
            NonInviteState::Proceeding | NonInviteState::Completed { .. } => ServerEffect::Resend,
            _ => ServerEffect::None,
        }
    }

    /// The user wants to send a response of `class`.
    pub fn on_send(&mut self, now: Instant, class: StatusClass) -> ServerEffect {
        match self.state {
            NonInviteState::Trying | NonInviteState::Proceeding => {
                self.state = if !class.is_final() {
                    NonInviteState::Proceeding
                } else if self.reliable {
                    NonInviteState::Terminated
                } else {
                    NonInviteState::Completed {
                        timer_j: now + self.cfg.t1x64(),
                    }
                };
                ServerEffect::Send
            }
            _ => ServerEffect::None,
        }
    }

    /// Fires the timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> ServerEffect {
        if let NonInviteState::Completed { timer_j } = self.state {
            if now >= timer_j {
                self.state = NonInviteState::Terminated;
            }
        }
        ServerEffect::None
    }

    /// The transport failed to send a response.
    pub fn on_transport_error(&mut self) {
        self.state = NonInviteState::Terminated;
    }

    /// When `on_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            NonInviteState::Completed { timer_j } => Some(timer_j),
            _ => None,
        }
    }

    /// Whether a final response went out.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state,
            NonInviteState::Completed { .. } | NonInviteState::Terminated
        )
    }

    /// Whether the transaction is over and may be forgotten.
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::ServerEffect::*;
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn run(m: &mut InviteServer, until: Instant) -> Vec<(u64, ServerEffect)> {
        let mut out = Vec::new();
        while let Some(t) = m.poll_timeout() {
            if t > until {
                break;
            }
            let e = m.on_timeout(t);
            if e != None {
                out.push((t.as_nanos() / 1_000_000, e));
            }
            assert!(out.len() < 1_000);
        }
        out
    }

    #[test]
    fn invite_retransmissions_get_the_last_provisional() {
        let mut t = InviteServer::new(TimerConfig::default(), false);
        assert_eq!(t.on_request(), None, "nothing sent yet");
        assert_eq!(t.on_send(ms(0), StatusClass::Trying), Send);
        assert_eq!(t.on_request(), Resend);
        assert_eq!(t.on_send(ms(10), StatusClass::Provisional), Send);
        assert_eq!(t.poll_timeout(), Option::None);
        assert!(!t.is_final());
    }

    #[test]
    fn invite_final_timer_g_caps_at_t2_until_timer_h() {
        let mut t = InviteServer::new(TimerConfig::default(), false);
        assert_eq!(t.on_send(ms(0), StatusClass::Final), Send);
        assert_eq!(
            t.on_send(ms(1), StatusClass::Success),
            None,
            "one final only"
        );
        assert_eq!(t.on_request(), Resend);
        let fired = run(&mut t, ms(100_000));
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
    fn invite_ack_confirms_then_timer_i() {
        let mut t = InviteServer::new(TimerConfig::default(), false);
        t.on_send(ms(0), StatusClass::Final);
        assert_eq!(run(&mut t, ms(600)), vec![(500, Resend)]);
        assert_eq!(t.on_ack(ms(700)), None);
        assert_eq!(t.on_ack(ms(710)), None, "ACK retransmission absorbed");
        assert_eq!(t.on_request(), None);
        assert_eq!(t.poll_timeout(), Some(ms(5_700)), "Timer I = T4");
        assert_eq!(run(&mut t, ms(100_000)), vec![]);
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_reliable_final_has_no_timer_g_and_ack_terminates() {
        let mut t = InviteServer::new(TimerConfig::default(), true);
        t.on_send(ms(0), StatusClass::Final);
        assert_eq!(t.poll_timeout(), Some(ms(32_000)));
        t.on_ack(ms(5));
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_2xx_accepted_forwards_retransmissions_and_absorbs_invites() {
        let mut t = InviteServer::new(TimerConfig::default(), false);
        assert_eq!(t.on_send(ms(0), StatusClass::Success), Send);
        assert_eq!(t.on_send(ms(500), StatusClass::Success), Send);
        assert_eq!(t.on_send(ms(500), StatusClass::Final), None);
        assert_eq!(t.on_request(), None, "INVITE retransmission absorbed");
        assert_eq!(t.on_ack(ms(600)), Deliver);
        assert_eq!(t.poll_timeout(), Some(ms(32_000)), "Timer L");
        assert_eq!(run(&mut t, ms(100_000)), vec![]);
        assert!(t.is_terminated());
    }

    #[test]
    fn non_invite_server_absorbs_then_resends_the_final() {
        let mut t = NonInviteServer::new(TimerConfig::default(), false);
        assert_eq!(t.on_request(), None);
        assert_eq!(t.on_send(ms(1), StatusClass::Provisional), Send);
        assert_eq!(t.on_request(), Resend);
        assert_eq!(t.on_send(ms(2), StatusClass::Success), Send);
        assert_eq!(t.on_send(ms(3), StatusClass::Final), None);
        assert_eq!(t.on_request(), Resend);
        assert_eq!(t.poll_timeout(), Some(ms(32_002)), "Timer J");
        assert_eq!(t.on_timeout(ms(32_002)), None);
        assert!(t.is_terminated());
    }

    #[test]
    fn non_invite_server_reliable_terminates_on_final() {
        let cfg = TimerConfig {
            t1: Duration::from_millis(50),
            ..TimerConfig::default()
        };
        let mut t = NonInviteServer::new(cfg, true);
        t.on_send(ms(1), StatusClass::Final);
        assert!(t.is_terminated() && t.is_final());
    }
}
