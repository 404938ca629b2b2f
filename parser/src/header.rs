//! Header names: [`HeaderKind`] for the names sipring knows, classified
//! case-insensitively in full and compact form (RFC 3261 §7.3.3 and the
//! IANA compact forms `i m e l f s k t v c r o u x a b d j y n`).
//!
//! Classification is a hash of (length, first, last byte) into a 128-slot
//! table built at compile time, then one case-insensitive compare: a
//! header costs a few cycles whatever its name. The index goes one step
//! further (`known_at`): it finds the `:` in the line's first 24 bytes and
//! compares those words against the known name, folding case only where
//! the name has letters, so a match also proves the name is a token and
//! the byte scan of the name is skipped.

macro_rules! header_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal $(, $compact:literal)? ;)*) => {
        /// A header name sipring knows, or [`HeaderKind::Other`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum HeaderKind {
            $($(#[$doc])* $variant,)*
            /// Any other name (kept as written in the header's name span).
            Other,
        }

        const KINDS: &[HeaderKind] = &[$(HeaderKind::$variant,)*];
        const NAMES: &[&[u8]] = &[$($name.as_bytes(),)*];
        const COMPACTS: &[(u8, HeaderKind)] = &[$($(($compact, HeaderKind::$variant),)?)*];

        impl HeaderKind {
            /// The canonical full name (empty for `Other`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(HeaderKind::$variant => $name,)*
                    HeaderKind::Other => "",
                }
            }

            /// The compact form's letter, if the name has one.
            pub const fn compact(self) -> Option<u8> {
                match self {
                    $($(HeaderKind::$variant => Some($compact),)?)*
                    _ => None,
                }
            }

            /// `Malformed <Name> Header`: a 400 reason phrase.
            pub(crate) const fn malformed_reason(self) -> &'static str {
                match self {
                    $(HeaderKind::$variant => concat!("Malformed ", $name, " Header"),)*
                    HeaderKind::Other => "Malformed Header",
                }
            }

            /// `Missing <Name> Header`.
            pub(crate) const fn missing_reason(self) -> &'static str {
                match self {
                    $(HeaderKind::$variant => concat!("Missing ", $name, " Header"),)*
                    HeaderKind::Other => "Missing Header",
                }
            }

            /// `Multiple <Name> Headers`.
            pub(crate) const fn duplicate_reason(self) -> &'static str {
                match self {
                    $(HeaderKind::$variant => concat!("Multiple ", $name, " Headers"),)*
                    HeaderKind::Other => "Multiple Headers",
                }
            }
        }
    };
}

header_kinds! {
    /// Via (compact `v`).
    Via = "Via", b'v';
    /// From (compact `f`).
    From = "From", b'f';
    /// To (compact `t`).
    To = "To", b't';
    /// Call-ID (compact `i`).
    CallId = "Call-ID", b'i';
    /// CSeq.
    CSeq = "CSeq";
    /// Max-Forwards.
    MaxForwards = "Max-Forwards";
    /// Contact (compact `m`).
    Contact = "Contact", b'm';
    /// Route.
    Route = "Route";
    /// Record-Route.
    RecordRoute = "Record-Route";
    /// Path (RFC 3327).
    Path = "Path";
    /// Content-Length (compact `l`).
    ContentLength = "Content-Length", b'l';
    /// Content-Type (compact `c`).
    ContentType = "Content-Type", b'c';
    /// Content-Encoding (compact `e`).
    ContentEncoding = "Content-Encoding", b'e';
    /// Expires.
    Expires = "Expires";
    /// Min-Expires.
    MinExpires = "Min-Expires";
    /// Require.
    Require = "Require";
    /// Proxy-Require.
    ProxyRequire = "Proxy-Require";
    /// Supported (compact `k`).
    Supported = "Supported", b'k';
    /// Unsupported.
    Unsupported = "Unsupported";
    /// Authorization.
    Authorization = "Authorization";
    /// Proxy-Authorization.
    ProxyAuthorization = "Proxy-Authorization";
    /// WWW-Authenticate.
    WwwAuthenticate = "WWW-Authenticate";
    /// Proxy-Authenticate.
    ProxyAuthenticate = "Proxy-Authenticate";
    /// Authentication-Info.
    AuthenticationInfo = "Authentication-Info";
    /// Subject (compact `s`).
    Subject = "Subject", b's';
    /// Refer-To (compact `r`, RFC 3515).
    ReferTo = "Refer-To", b'r';
    /// Event (compact `o`, RFC 6665).
    Event = "Event", b'o';
    /// Allow-Events (compact `u`).
    AllowEvents = "Allow-Events", b'u';
    /// Session-Expires (compact `x`, RFC 4028).
    SessionExpires = "Session-Expires", b'x';
    /// Accept-Contact (compact `a`, RFC 3841).
    AcceptContact = "Accept-Contact", b'a';
    /// Referred-By (compact `b`, RFC 3892).
    ReferredBy = "Referred-By", b'b';
    /// Request-Disposition (compact `d`, RFC 3841).
    RequestDisposition = "Request-Disposition", b'd';
    /// Reject-Contact (compact `j`, RFC 3841).
    RejectContact = "Reject-Contact", b'j';
    /// Identity (compact `y`, RFC 8224).
    Identity = "Identity", b'y';
    /// Identity-Info (compact `n`, RFC 4474).
    IdentityInfo = "Identity-Info", b'n';
    /// Accept.
    Accept = "Accept";
    /// Accept-Encoding.
    AcceptEncoding = "Accept-Encoding";
    /// Accept-Language.
    AcceptLanguage = "Accept-Language";
    /// Alert-Info.
    AlertInfo = "Alert-Info";
    /// Allow.
    Allow = "Allow";
    /// Call-Info.
    CallInfo = "Call-Info";
    /// Content-Disposition.
    ContentDisposition = "Content-Disposition";
    /// Content-Language.
    ContentLanguage = "Content-Language";
    /// Date.
    Date = "Date";
    /// Error-Info.
    ErrorInfo = "Error-Info";
    /// In-Reply-To.
    InReplyTo = "In-Reply-To";
    /// MIME-Version.
    MimeVersion = "MIME-Version";
    /// Min-SE (RFC 4028).
    MinSe = "Min-SE";
    /// Organization.
    Organization = "Organization";
    /// P-Asserted-Identity (RFC 3325).
    PAssertedIdentity = "P-Asserted-Identity";
    /// P-Preferred-Identity (RFC 3325).
    PPreferredIdentity = "P-Preferred-Identity";
    /// Priority.
    Priority = "Priority";
    /// Privacy (RFC 3323).
    Privacy = "Privacy";
    /// RAck (RFC 3262).
    RAck = "RAck";
    /// Reason (RFC 3326).
    Reason = "Reason";
    /// Replaces (RFC 3891).
    Replaces = "Replaces";
    /// Reply-To.
    ReplyTo = "Reply-To";
    /// Retry-After.
    RetryAfter = "Retry-After";
    /// RSeq (RFC 3262).
    RSeq = "RSeq";
    /// Server.
    Server = "Server";
    /// Service-Route (RFC 3608).
    ServiceRoute = "Service-Route";
    /// Timestamp.
    Timestamp = "Timestamp";
    /// User-Agent.
    UserAgent = "User-Agent";
    /// Warning.
    Warning = "Warning";
}

impl HeaderKind {
    /// Classifies a header name (case-insensitive, compact forms included).
    pub fn from_name(name: &[u8]) -> HeaderKind {
        // The index passes token characters only; CR is the one byte that
        // the case fold of `classify` could confuse (with `-`).
        if name.contains(&b'\r') {
            return HeaderKind::Other;
        }
        HeaderKind::classify(name)
    }

    /// Classifies a name made of token characters.
    #[inline]
    pub(crate) fn classify(name: &[u8]) -> HeaderKind {
        match name {
            [c] => COMPACT[(*c & 0x7f) as usize],
            _ => {
                let slot = &TABLE[hash(name)];
                for &k in slot {
                    if k == 0 {
                        break;
                    }
                    let k = (k - 1) as usize;
                    if eq_lower(name, LOWER[k].as_slice()) {
                        return KINDS[k];
                    }
                }
                HeaderKind::Other
            }
        }
    }

    /// Classifies the token-character name `buf[p..p + n]`, comparing
    /// eight bytes at a time read from the buffer (the bytes after the
    /// name are masked off), when 24 bytes are there to read.
    #[inline]
    pub(crate) fn classify_in(buf: &[u8], p: usize, n: usize) -> HeaderKind {
        if n <= 1 || n > 24 || p + 24 > buf.len() {
            return HeaderKind::classify(&buf[p..p + n]);
        }
        let load = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or_default());
        const FOLD: u64 = 0x2020_2020_2020_2020;
        let m = &MASKS[n];
        let w = [
            (load(p) | FOLD) & m[0],
            (load(p + 8) | FOLD) & m[1],
            (load(p + 16) | FOLD) & m[2],
        ];
        for &k in &TABLE[hash(&buf[p..p + n])] {
            if k == 0 {
                break;
            }
            let k = (k - 1) as usize;
            if WORDS[k] == w && LOWER[k].len as usize == n {
                return KINDS[k];
            }
        }
        HeaderKind::Other
    }

    /// The known name that starts the header line at `buf[p..]` when it
    /// is followed directly by `:` within the line's first 24 bytes:
    /// `(name length, kind)`. The name is compared per byte with case
    /// folded only where the known name has a letter, so a match also
    /// proves the name is a token. `None`: the caller scans the name.
    #[inline]
    pub(crate) fn known_at(buf: &[u8], p: usize) -> Option<(usize, HeaderKind)> {
        let b: &[u8; 24] = buf.get(p..p + 24)?.try_into().ok()?;
        let load = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let w = [load(0), load(8), load(16)];
        let n = first_colon(&w)?;
        if n < 2 {
            let c = b[0];
            return (n == 1 && c.is_ascii_alphabetic())
                .then(|| (1, COMPACT[c as usize]))
                .filter(|&(_, k)| k != HeaderKind::Other);
        }
        let m = &MASKS[n];
        for &k in &TABLE[hash_parts(n, b[0], b[n - 1])] {
            if k == 0 {
                break;
            }
            let k = (k - 1) as usize;
            let f = &FOLDS[k];
            if LOWER[k].len as usize == n
                && (w[0] | f[0]) & m[0] == WORDS[k][0]
                && (w[1] | f[1]) & m[1] == WORDS[k][1]
                && (w[2] | f[2]) & m[2] == WORDS[k][2]
            {
                return Some((n, KINDS[k]));
            }
        }
        None
    }

    /// The bit of this kind in a [`u128`] set.
    #[inline]
    pub(crate) const fn bit(self) -> u128 {
        1u128 << (self as u8)
    }

    /// Whether RFC 3261 allows only one value of this header in a message.
    pub const fn is_single(self) -> bool {
        matches!(
            self,
            HeaderKind::From
                | HeaderKind::To
                | HeaderKind::CallId
                | HeaderKind::CSeq
                | HeaderKind::MaxForwards
                | HeaderKind::ContentLength
                | HeaderKind::ContentType
                | HeaderKind::Expires
                | HeaderKind::MinExpires
        )
    }
}

/// Whether `name` equals `lower` (a lower-case name) ignoring ASCII case,
/// eight bytes at a time. OR-ing 0x20 folds upper-case letters; the only
/// other byte it maps onto a letter or `-` is CR (0x0D -> `-`), which is
/// not a token character, so for header names the compare is exact.
#[inline]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(name[i..i + 8].try_into().unwrap_or_default());
        let y = u64::from_le_bytes(lower[i..i + 8].try_into().unwrap_or_default());
        if x | 0x2020_2020_2020_2020 != y {
            return false;
        }
        i += 8;
    }
    while i < n {
        if name[i] | 0x20 != lower[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The names in lower case, padded to 24 bytes (the longest is 20).
static LOWER: [LowerName; KINDS.len()] = build_lower();

#[derive(Clone, Copy)]
struct LowerName {
    bytes: [u8; 24],
    len: u8,
}

impl LowerName {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

const fn build_lower() -> [LowerName; KINDS.len()] {
    let mut t = [LowerName {
        bytes: [0; 24],
        len: 0,
    }; KINDS.len()];
    let mut k = 0;
    while k < NAMES.len() {
        let n = NAMES[k];
        assert!(n.len() <= 24);
        let mut i = 0;
        while i < n.len() {
            t[k].bytes[i] = n[i].to_ascii_lowercase();
            i += 1;
        }
        t[k].len = n.len() as u8;
        k += 1;
    }
    t
}

/// The lower-case names as three little-endian words, zero-padded.
static WORDS: [[u64; 3]; KINDS.len()] = build_words();

const fn build_words() -> [[u64; 3]; KINDS.len()] {
    let mut t = [[0u64; 3]; KINDS.len()];
    let lower = build_lower();
    let mut k = 0;
    while k < KINDS.len() {
        let mut i = 0;
        while i < 24 {
            t[k][i / 8] |= (lower[k].bytes[i] as u64) << (8 * (i % 8));
            i += 1;
        }
        k += 1;
    }
    t
}

/// The index of the first `:` in three little-endian words (24 bytes).
#[inline]
fn first_colon(w: &[u64; 3]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const COLON: u64 = 0x3a3a_3a3a_3a3a_3a3a;
    for (i, &x) in w.iter().enumerate() {
        let y = x ^ COLON;
        // The lowest set bit marks the first zero byte (borrows only
        // propagate upwards, past it).
        let z = y.wrapping_sub(LO) & !y & HI;
        if z != 0 {
            return Some(i * 8 + (z.trailing_zeros() / 8) as usize);
        }
    }
    None
}

/// Per name, 0x20 at the bytes that are letters (folded by OR-ing it),
/// 0 elsewhere (`-` must match exactly).
static FOLDS: [[u64; 3]; KINDS.len()] = build_folds();

const fn build_folds() -> [[u64; 3]; KINDS.len()] {
    let mut t = [[0u64; 3]; KINDS.len()];
    let lower = build_lower();
    let mut k = 0;
    while k < KINDS.len() {
        let mut i = 0;
        while i < 24 {
            if lower[k].bytes[i].is_ascii_lowercase() {
                t[k][i / 8] |= 0x20 << (8 * (i % 8));
            }
            i += 1;
        }
        k += 1;
    }
    t
}

/// For a name of n bytes, the masks keeping its bytes in three words.
static MASKS: [[u64; 3]; 25] = build_masks();

const fn build_masks() -> [[u64; 3]; 25] {
    let mut t = [[0u64; 3]; 25];
    let mut n = 0;
    while n <= 24 {
        let mut i = 0;
        while i < n {
            t[n][i / 8] |= 0xff << (8 * (i % 8));
            i += 1;
        }
        n += 1;
    }
    t
}

const SLOTS: usize = 128;
const WAYS: usize = 4;

#[inline]
const fn hash(name: &[u8]) -> usize {
    let n = name.len();
    if n == 0 {
        return 0;
    }
    hash_parts(n, name[0], name[n - 1])
}

#[inline]
const fn hash_parts(n: usize, first: u8, last: u8) -> usize {
    let first = (first | 0x20) as usize;
    let last = (last | 0x20) as usize;
    (n.wrapping_mul(31) ^ first.wrapping_mul(7) ^ last.wrapping_mul(3)) % SLOTS
}

/// Slot -> up to four (kind index + 1), 0 for empty.
static TABLE: [[u8; WAYS]; SLOTS] = build_table();

const fn build_table() -> [[u8; WAYS]; SLOTS] {
    let mut t = [[0u8; WAYS]; SLOTS];
    let mut k = 0;
    while k < NAMES.len() {
        let h = hash(NAMES[k]);
        let mut w = 0;
        while t[h][w] != 0 {
            w += 1;
            assert!(w < WAYS, "header name hash table: a slot overflowed");
        }
        t[h][w] = (k + 1) as u8;
        k += 1;
    }
    t
}

static COMPACT: [HeaderKind; 128] = build_compact();

const fn build_compact() -> [HeaderKind; 128] {
    let mut t = [HeaderKind::Other; 128];
    let mut i = 0;
    while i < COMPACTS.len() {
        let (c, k) = COMPACTS[i];
        t[c as usize] = k;
        t[(c - 32) as usize] = k;
        i += 1;
    }
    t
}

// The kind sets are u128 bit masks.
const _: () = assert!(KINDS.len() < 128);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_compact_form_classifies() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(HeaderKind::from_name(name), KINDS[i]);
            let upper: Vec<u8> = name.to_ascii_uppercase();
            assert_eq!(HeaderKind::from_name(&upper), KINDS[i]);
            let lower: Vec<u8> = name.to_ascii_lowercase();
            assert_eq!(HeaderKind::from_name(&lower), KINDS[i]);
            // In a buffer, with bytes after the name.
            let mut buf = b"xx".to_vec();
            buf.extend_from_slice(&upper);
            buf.extend_from_slice(b": value and some more bytes\r\n");
            assert_eq!(HeaderKind::classify_in(&buf, 2, name.len()), KINDS[i]);
            if name.len() > 2 {
                assert_eq!(
                    HeaderKind::classify_in(&buf, 2, name.len() - 1),
                    HeaderKind::Other,
                    "{name:?} prefix"
                );
            }
        }
        let compact: &[(&[u8], HeaderKind)] = &[
            (b"i", HeaderKind::CallId),
            (b"m", HeaderKind::Contact),
            (b"e", HeaderKind::ContentEncoding),
            (b"l", HeaderKind::ContentLength),
            (b"f", HeaderKind::From),
            (b"s", HeaderKind::Subject),
            (b"k", HeaderKind::Supported),
            (b"t", HeaderKind::To),
            (b"v", HeaderKind::Via),
            (b"c", HeaderKind::ContentType),
            (b"r", HeaderKind::ReferTo),
            (b"o", HeaderKind::Event),
            (b"u", HeaderKind::AllowEvents),
            (b"x", HeaderKind::SessionExpires),
            (b"a", HeaderKind::AcceptContact),
            (b"b", HeaderKind::ReferredBy),
            (b"d", HeaderKind::RequestDisposition),
            (b"j", HeaderKind::RejectContact),
            (b"y", HeaderKind::Identity),
            (b"n", HeaderKind::IdentityInfo),
            (b"I", HeaderKind::CallId),
            (b"L", HeaderKind::ContentLength),
            (b"M", HeaderKind::Contact),
            (b"C", HeaderKind::ContentType),
            (b"g", HeaderKind::Other),
            (b"\xff", HeaderKind::Other),
            (b"", HeaderKind::Other),
        ];
        for (name, kind) in compact {
            assert_eq!(HeaderKind::from_name(name), *kind, "{name:?}");
            if let Some(c) = kind.compact() {
                assert_eq!(c, name[0].to_ascii_lowercase());
            }
        }
        for other in [
            &b"C%6Fntact"[..],
            b"X-Foo",
            b"Vias",
            b"Contac",
            b"NewFangledHeader",
        ] {
            assert_eq!(HeaderKind::from_name(other), HeaderKind::Other);
        }
        assert_eq!(
            HeaderKind::from_name(b"MaX-fOrWaRdS"),
            HeaderKind::MaxForwards
        );
        // The index's fast path: a known name directly followed by ':'.
        let line = |s: &str| format!("{s}: value with enough bytes after it\r\n").into_bytes();
        assert_eq!(
            HeaderKind::known_at(&line("cALL-iD"), 0),
            Some((7, HeaderKind::CallId))
        );
        assert_eq!(
            HeaderKind::known_at(&line("v"), 0),
            Some((1, HeaderKind::Via))
        );
        assert_eq!(
            HeaderKind::known_at(&line("Proxy-Authorization"), 0),
            Some((19, HeaderKind::ProxyAuthorization))
        );
        // CR folds onto '-' under OR 0x20: the fast path must not take it.
        for other in [
            "Call\rID", "Via ", "X-Foo", "Vias", "g", "\u{e9}", "1", "Contac",
        ] {
            assert_eq!(HeaderKind::known_at(&line(other), 0), None, "{other:?}");
        }
        // Under 24 bytes left, or no ':' in them: the caller scans.
        assert_eq!(HeaderKind::known_at(b"Via: x\r\n", 0), None);
        assert_eq!(
            HeaderKind::known_at(b"Session-Expires-And-More-Letters: 1\r\n", 0),
            None
        );
        assert_eq!(
            HeaderKind::CallId.malformed_reason(),
            "Malformed Call-ID Header"
        );
    }
}
