//! Lints: deviations from RFC 3261 that sipring accepts where RFC 4475 lets
//! a liberal reading stand, recorded so that a strict element can still
//! answer 400 (each lint has a reason phrase) and a proxy never forwards
//! the deviation unknowingly.

/// One accepted deviation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Lint {
    /// More than one SP between Request-Line elements (RFC 4475 `lwsstart`).
    RequestLineExtraSpace,
    /// White space between SIP-Version and CRLF (RFC 4475 `trws`).
    RequestLineTrailingSpace,
    /// `SIP/2.0 100` with no SP before the (empty) reason phrase.
    StatusLineNoReasonSpace,
    /// Lines ended by LF alone instead of CRLF.
    BareLf,
    /// A datagram's bytes after the declared body were ignored (RFC 4475
    /// `dblreq`); they are never forwarded.
    TrailingOctets,
    /// No Content-Length: a datagram's body runs to its end; on a stream
    /// the body is taken as empty.
    MissingContentLength,
    /// A header value is folded over several lines (legal, but forwarding
    /// it folded is worth knowing).
    Folded,
    /// White space inside `< >` around an addr-spec (RFC 4475 `badaspec`);
    /// set on the name-addr view.
    SpaceInAngleBrackets,
}

impl Lint {
    const ALL: [Lint; 8] = [
        Lint::RequestLineExtraSpace,
        Lint::RequestLineTrailingSpace,
        Lint::StatusLineNoReasonSpace,
        Lint::BareLf,
        Lint::TrailingOctets,
        Lint::MissingContentLength,
        Lint::Folded,
        Lint::SpaceInAngleBrackets,
    ];

    /// A 400 reason phrase for a strict element that refuses it.
    pub const fn reason(self) -> &'static str {
        match self {
            Lint::RequestLineExtraSpace => "Extra Space in Request-Line",
            Lint::RequestLineTrailingSpace => "Trailing Space in Request-Line",
            Lint::StatusLineNoReasonSpace => "Missing Space Before Reason Phrase",
            Lint::BareLf => "Line Not Ended by CRLF",
            Lint::TrailingOctets => "Octets After Message",
            Lint::MissingContentLength => "Missing Content-Length",
            Lint::Folded => "Folded Header",
            Lint::SpaceInAngleBrackets => "Space Inside Angle Brackets",
        }
    }

    /// Whether the message breaks the RFC 3261 grammar (RFC 4475 says a
    /// 400 is a proper answer), as opposed to legal-but-notable (`Folded`,
    /// `TrailingOctets` on UDP, `MissingContentLength` on UDP).
    pub const fn is_violation(self) -> bool {
        !matches!(
            self,
            Lint::Folded | Lint::TrailingOctets | Lint::MissingContentLength
        )
    }
}

/// A set of [`Lint`]s (a bit set; `Copy`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Lints(u16);

impl Lints {
    /// No lint.
    pub const EMPTY: Lints = Lints(0);

    /// Whether `lint` is in the set.
    pub const fn contains(self, lint: Lint) -> bool {
        self.0 & (1 << lint as u8) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn insert(&mut self, lint: Lint) {
        self.0 |= 1 << lint as u8;
    }

    /// The first grammar violation, if any (see [`Lint::is_violation`]).
    pub fn first_violation(self) -> Option<Lint> {
        self.iter().find(|l| l.is_violation())
    }

    /// The lints in the set.
    pub fn iter(self) -> impl Iterator<Item = Lint> {
        Lint::ALL.into_iter().filter(move |l| self.contains(*l))
    }
}

impl core::fmt::Debug for Lints {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Lint> for Lints {
    fn from_iter<I: IntoIterator<Item = Lint>>(iter: I) -> Lints {
        let mut s = Lints::EMPTY;
        for l in iter {
            s.insert(l);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let s: Lints = [Lint::Folded, Lint::RequestLineExtraSpace]
            .into_iter()
            .collect();
        assert!(s.contains(Lint::Folded));
        assert!(!s.contains(Lint::BareLf));
        assert_eq!(s.first_violation(), Some(Lint::RequestLineExtraSpace));
        assert_eq!(s.iter().count(), 2);
        assert_eq!(format!("{s:?}"), "{RequestLineExtraSpace, Folded}");
        assert!(Lints::EMPTY.is_empty());
    }
}
