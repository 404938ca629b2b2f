//! Byte classes (256-entry tables, as httparse does) and the small scanners
//! the index and the typed views share: LWS trimming, comma lists that
//! respect quotes and angle brackets, `;` parameter lists, numbers, and
//! `%HH` escapes compared per RFC 3261 §19.1.4.
//!
//! Every function here works on a slice and never indexes past its end.

/// Where a view found a problem: the address of the offending byte. The
/// message converts it to an offset in its buffer (safe pointer arithmetic,
/// no dereference), so nested views need no offset bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos(pub(crate) usize);

impl Pos {
    /// The position of the first byte of `s` (or where it would be).
    pub(crate) fn of(s: &[u8]) -> Pos {
        Pos(s.as_ptr() as usize)
    }

    /// The offset of this position inside `base`, clamped to its length.
    pub(crate) fn offset_in(self, base: &[u8]) -> usize {
        self.0.wrapping_sub(base.as_ptr() as usize).min(base.len())
    }
}

/// The result of an internal parse step.
pub(crate) type PResult<T> = Result<T, Pos>;

/// The offset of `sub` inside `base` (both from the same buffer).
pub(crate) fn offset_of(base: &[u8], sub: &[u8]) -> usize {
    Pos::of(sub).offset_in(base)
}

const fn table(extra: &[u8], alnum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    if alnum {
        let mut c = b'0';
        while c <= b'9' {
            t[c as usize] = true;
            c += 1;
        }
        let mut c = b'a';
        while c <= b'z' {
            t[c as usize] = true;
            t[(c - 32) as usize] = true;
            c += 1;
        }
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// RFC 3261 token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
static TOKEN: [bool; 256] = table(b"-.!%*_+`'~", true);
/// Call-ID word: token plus ( ) < > : \ DQUOTE / [ ] ? { }.
static WORD: [bool; 256] = table(b"-.!%*_+`'~()<>:\\\"/[]?{}", true);
/// URI user: unreserved / escaped / user-unreserved (& = + $ , ; ? /).
static USER: [bool; 256] = table(b"-_.!~*'()%&=+$,;?/", true);
/// URI password: unreserved / escaped / & = + $ ,.
static PASSWORD: [bool; 256] = table(b"-_.!~*'()%&=+$,", true);
/// URI parameter name or value: param-unreserved / unreserved / escaped.
static PARAMCHAR: [bool; 256] = table(b"[]/:&+$-_.!~*'()%", true);
/// URI header name or value: hnv-unreserved / unreserved / escaped.
static HNVCHAR: [bool; 256] = table(b"[]/?:+$-_.!~*'()%", true);
/// Host name characters (underscore accepted: real deployments use it).
static HOSTCHAR: [bool; 256] = table(b"-._", true);
/// Characters of a generic header parameter value that is not quoted
/// (token / host, including an IPv6 reference).
static GENVALUE: [bool; 256] = table(b"-.!%*_+`'~[]:", true);
/// Absolute-URI characters after the scheme (RFC 3986 / RFC 2396 sets).
static URICHAR: [bool; 256] = table(b"-_.!~*'()%;/?:@&=+$,[]#", true);
/// A parameter name: token or URI paramchar.
static PNAME: [bool; 256] = union(&TOKEN, &PARAMCHAR);
/// An unquoted parameter value: generic value or URI paramchar.
static PVALUE: [bool; 256] = union(&GENVALUE, &PARAMCHAR);
/// Display-name bytes before `<`: token or LWS.
static TOKEN_LWS: [bool; 256] = union(&TOKEN, &table(b" \t\r\n", false));

const fn union(a: &[bool; 256], b: &[bool; 256]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = a[i] || b[i];
        i += 1;
    }
    t
}

/// Bytes that never appear in a URI: controls, SP, DEL, `"`, `<`, `>`.
static NOT_URI: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x21 {
        t[c] = true;
        c += 1;
    }
    t[0x7f] = true;
    t[b'"' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t
};
/// tel: number characters (global or local, visual separators, hex, * #).
static TELCHAR: [bool; 256] = table(b"0123456789abcdefABCDEF+-.()*#", false);

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    WORD[b as usize]
}
#[inline]
pub(crate) fn is_user(b: u8) -> bool {
    USER[b as usize]
}
#[inline]
pub(crate) fn is_password(b: u8) -> bool {
    PASSWORD[b as usize]
}
#[inline]
pub(crate) fn is_paramchar(b: u8) -> bool {
    PARAMCHAR[b as usize]
}
#[inline]
pub(crate) fn is_hnvchar(b: u8) -> bool {
    HNVCHAR[b as usize]
}
#[inline]
pub(crate) fn is_hostchar(b: u8) -> bool {
    HOSTCHAR[b as usize]
}
#[inline]
pub(crate) fn is_urichar(b: u8) -> bool {
    URICHAR[b as usize]
}
#[inline]
pub(crate) fn is_token_or_lws(b: u8) -> bool {
    TOKEN_LWS[b as usize]
}
#[inline]
pub(crate) fn is_not_uri(b: u8) -> bool {
    NOT_URI[b as usize]
}
#[inline]
pub(crate) fn is_telchar(b: u8) -> bool {
    TELCHAR[b as usize]
}

/// Linear white space inside a header value: SP, HT, and the CR LF of a
/// folded line (the index keeps folds inside value spans).
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The index of the first LF in `buf` at or after `from`, sixteen bytes
/// at a time in two 64-bit words (SWAR). Header lines are short: this
/// beats `memchr`'s dispatch and vector setup, paid once per line.
#[inline]
pub(crate) fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    // The lowest set bit marks the first zero byte of `y` (borrows only
    // propagate upwards, past it).
    let zeros = |y: u64| y.wrapping_sub(LO) & !y & HI;
    let mut i = from;
    while let Some(chunk) = buf.get(i..i + 16) {
        let lo = u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default()) ^ LF;
        let hi = u64::from_le_bytes(chunk[8..].try_into().unwrap_or_default()) ^ LF;
        let (zl, zh) = (zeros(lo), zeros(hi));
        if zl | zh != 0 {
            return Some(if zl != 0 {
                i + (zl.trailing_zeros() / 8) as usize
            } else {
                i + 8 + (zh.trailing_zeros() / 8) as usize
            });
        }
        i += 16;
    }
    let tail = buf.get(i..)?;
    tail.iter().position(|&b| b == b'\n').map(|k| i + k)
}

/// `s` without leading and trailing LWS.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_lws(s[a]) {
        a += 1;
    }
    while b > a && is_lws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// `s` without leading LWS.
pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let mut a = 0;
    while a < s.len() && is_lws(s[a]) {
        a += 1;
    }
    &s[a..]
}

/// The index of the first byte at or after `i` that is not LWS.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// The end of the run of bytes from `i` that satisfy `f`. Eight bytes per
/// step with one bounds check (about half the instructions per byte of a
/// byte loop), then the tail.
#[inline]
pub(crate) fn run(s: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while let Some(c) = s.get(i..i + 8) {
        for (k, &b) in c.iter().enumerate() {
            if !f(b) {
                return i + k;
            }
        }
        i += 8;
    }
    while i < s.len() && f(s[i]) {
        i += 1;
    }
    i
}

/// Whether `s` is a non-empty token.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Whether every `%` in `s` starts a `%HH` escape.
pub(crate) fn valid_escapes(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Whether `s` is non-empty, made of `class` bytes, with valid escapes.
pub(crate) fn escaped_run(s: &[u8], class: fn(u8) -> bool) -> bool {
    !s.is_empty() && s.iter().all(|&b| class(b)) && valid_escapes(s)
}

/// A decimal number of 1 to 10 digits that fits in a u32.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u32 = 0;
    for &d in s {
        v = v.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(v)
}

/// A decimal number of any length, saturating at u32::MAX (RFC 3261 lets
/// overlarge Expires values be treated as the largest one).
pub(crate) fn parse_u32_saturating(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u32 = 0;
    for &d in s {
        v = v.saturating_mul(10).saturating_add(u32::from(d - b'0'));
    }
    Some(v)
}

/// A port number (1 to 5 digits, at most 65535).
pub(crate) fn parse_port(s: &[u8]) -> Option<u16> {
    if s.len() > 5 {
        return None;
    }
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

/// The end of a quoted string that starts at `s[i] == '"'`: the index just
/// past the closing quote, or `None` when it is not closed.
pub(crate) fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        let k = j + memchr::memchr2(b'\\', b'"', &s[j..])?;
        if s[k] == b'"' {
            return Some(k + 1);
        }
        j = k + 2;
    }
    None
}

/// Splits a header value into its comma-separated elements, outside quoted
/// strings and angle brackets; each element is trimmed. An empty (all LWS)
/// value is one empty element, and `a,,b` has an empty middle element: the
/// views reject empty elements, the option-tag lists skip them.
#[derive(Clone, Debug)]
pub(crate) struct List<'a> {
    s: &'a [u8],
    i: usize,
    done: bool,
}

impl<'a> List<'a> {
    pub(crate) fn new(s: &'a [u8]) -> List<'a> {
        let s = trim(s);
        List {
            s,
            i: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for List<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let s = self.s;
        let start = self.i;
        let mut j = start;
        // Jump between the bytes that matter: ',' ends an element, '"'
        // starts a quoted string, '<' an address whose ',' do not count.
        while let Some(k) = memchr::memchr3(b',', b'"', b'<', &s[j..]) {
            let at = j + k;
            match s[at] {
                b',' => {
                    self.i = at + 1;
                    return Some(trim(&s[start..at]));
                }
                b'"' => match quoted_end(s, at) {
                    Some(e) => j = e,
                    None => break,
                },
                _ => match memchr::memchr(b'>', &s[at..]) {
                    Some(e) => j = at + e + 1,
                    None => break,
                },
            }
            if j >= s.len() {
                break;
            }
        }
        self.done = true;
        Some(trim(&s[start..s.len()]))
    }
}

/// One `name[=value]` parameter. The value is as written: a quoted value
/// keeps its quotes (see [`Param::unquoted`]), escapes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    /// The name as written.
    pub name: &'a [u8],
    /// The value as written; `None` for a flag such as `lr`.
    pub value: Option<&'a [u8]>,
}

impl<'a> Param<'a> {
    /// The value without surrounding quotes (escapes inside are kept).
    pub fn unquoted(&self) -> Option<&'a [u8]> {
        self.value.map(unquote)
    }

    /// Whether the name equals `name` ignoring case (header parameters:
    /// no escapes).
    #[inline]
    pub(crate) fn named(&self, name: &[u8]) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Whether the name equals `name`, ignoring case and `%HH` escapes.
    pub fn is(&self, name: &[u8]) -> bool {
        if self.name.len() == name.len() && self.name.eq_ignore_ascii_case(name) {
            return true;
        }
        // Only an escaped name can still match (`%6C%72` is `lr`).
        self.name.len() > name.len()
            && self.name.contains(&b'%')
            && eq_escaped(self.name, name, true)
    }
}

/// `"x"` -> `x`; other text unchanged.
pub(crate) fn unquote(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Iterates a `;name=value;flag` parameter list (the text from the first
/// `;`, as a view validated it). LWS around `;` and `=` is skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params<'a> {
    s: &'a [u8],
}

impl<'a> Params<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Params<'a> {
        Params { s }
    }

    /// The raw text, from the first `;` (empty when there are none).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.s
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        trim(self.s).is_empty()
    }

    /// The first parameter named `name` (case-insensitive, escapes decoded).
    pub fn get(&self, name: &[u8]) -> Option<Param<'a>> {
        let mut it = *self;
        it.find(|p| p.is(name))
    }

    /// Whether a parameter named `name` is present.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let (p, rest) = next_param(self.s).ok()??;
        self.s = rest;
        Some(p)
    }
}

/// Reads one `;name[=value]` from the start of `s` (after optional LWS).
/// `Ok(None)` at the end of the list; `Err` at malformed text. Names are
/// token or URI paramchar; values are quoted strings or runs of value
/// characters (URI paramchar or generic-param value characters).
pub(crate) fn next_param(s: &[u8]) -> PResult<Option<(Param<'_>, &[u8])>> {
    let i = skip_lws(s, 0);
    if i == s.len() {
        return Ok(None);
    }
    if s[i] != b';' {
        return Err(Pos::of(&s[i..]));
    }
    let ns = skip_lws(s, i + 1);
    let ne = run(s, ns, |b| PNAME[b as usize]);
    if ne == ns {
        return Err(Pos::of(&s[ns..]));
    }
    let name = &s[ns..ne];
    let j = skip_lws(s, ne);
    if j < s.len() && s[j] == b'=' {
        let vs = skip_lws(s, j + 1);
        if vs < s.len() && s[vs] == b'"' {
            let Some(ve) = quoted_end(s, vs) else {
                return Err(Pos::of(&s[vs..]));
            };
            return Ok(Some((
                Param {
                    name,
                    value: Some(&s[vs..ve]),
                },
                &s[ve..],
            )));
        }
        let ve = run(s, vs, |b| PVALUE[b as usize]);
        if ve == vs {
            return Err(Pos::of(&s[vs..]));
        }
        return Ok(Some((
            Param {
                name,
                value: Some(&s[vs..ve]),
            },
            &s[ve..],
        )));
    }
    Ok(Some((Param { name, value: None }, &s[ne..])))
}

/// Validates a whole parameter list (the text from the first `;`, or empty)
/// and calls `f` for each parameter.
pub(crate) fn each_param<'a>(
    mut s: &'a [u8],
    mut f: impl FnMut(Param<'a>) -> PResult<()>,
) -> PResult<()> {
    while let Some((p, rest)) = next_param(s)? {
        f(p)?;
        s = rest;
    }
    Ok(())
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// The bytes of `s` with each `%HH` decoded once (never recursively), with
/// whether each byte was escaped. A `%` not followed by two hex digits is
/// itself.
#[derive(Clone, Debug)]
pub struct Unescape<'a> {
    s: &'a [u8],
    i: usize,
}

/// Decodes `%HH` escapes once, without allocating (RFC 3261 §19.1.4: an
/// escape is never decoded twice, so `value%2541` is `value%41`).
pub fn unescape(s: &[u8]) -> Unescape<'_> {
    Unescape { s, i: 0 }
}

impl Unescape<'_> {
    fn next_marked(&mut self) -> Option<(u8, bool)> {
        let s = self.s;
        let b = *s.get(self.i)?;
        if b == b'%' {
            if let (Some(&h), Some(&l)) = (s.get(self.i + 1), s.get(self.i + 2)) {
                if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() {
                    self.i += 3;
                    return Some((hex(h) << 4 | hex(l), true));
                }
            }
        }
        self.i += 1;
        Some((b, false))
    }
}

impl Iterator for Unescape<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        self.next_marked().map(|(b, _)| b)
    }
}

/// RFC 2396 reserved characters: an escaped one is not equivalent to the
/// character itself (§19.1.4).
fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
    )
}

/// Compares two URI components per RFC 3261 §19.1.4: `%HH` escapes equal
/// the characters they encode, except reserved characters; optionally
/// ignoring ASCII case.
pub(crate) fn eq_escaped(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if !a.contains(&b'%') && !b.contains(&b'%') {
        return if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        };
    }
    let mut x = unescape(a);
    let mut y = unescape(b);
    loop {
        match (x.next_marked(), y.next_marked()) {
            (None, None) => return true,
            (Some((p, pe)), Some((q, qe))) => {
                let same = if ignore_case {
                    p.eq_ignore_ascii_case(&q)
                } else {
                    p == q
                };
                if !same || (pe != qe && is_reserved(p)) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The bytes of a quoted string's content with `\x` quoted-pairs resolved.
#[derive(Clone, Debug)]
pub struct Unquote<'a> {
    s: &'a [u8],
    i: usize,
}

/// Resolves the quoted-pairs (`\"`, `\\`) of a quoted string's content
/// (without its quotes), without allocating.
pub fn unquote_pairs(s: &[u8]) -> Unquote<'_> {
    Unquote { s, i: 0 }
}

impl Iterator for Unquote<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.i)?;
        if b == b'\\' {
            if let Some(&n) = self.s.get(self.i + 1) {
                self.i += 2;
                return Some(n);
            }
        }
        self.i += 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_respect_quotes_and_brackets() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"", &[b""]),
            (b"  ", &[b""]),
            (b"a", &[b"a"]),
            (b"a , b", &[b"a", b"b"]),
            (
                b"\"x, y\" <sip:a,b>;p=1, c",
                &[b"\"x, y\" <sip:a,b>;p=1", b"c"],
            ),
            (b"a,,b", &[b"a", b"", b"b"]),
            (b"a,\r\n b", &[b"a", b"b"]),
            (b"\"unterminated, x", &[b"\"unterminated, x"]),
            (b"\"a\\\",b\", c", &[b"\"a\\\",b\"", b"c"]),
        ];
        for (input, want) in cases {
            let got: Vec<&[u8]> = List::new(input).collect();
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn params_parse_and_validate() {
        let p: Vec<Param<'_>> = Params::new(b";lr ; tag = 12;q=\"a;b\";%6C%72").collect();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[0],
            Param {
                name: b"lr",
                value: None
            }
        );
        assert_eq!(p[1].value, Some(&b"12"[..]));
        assert_eq!(p[2].unquoted(), Some(&b"a;b"[..]));
        assert!(p[3].is(b"LR"));
        assert!(each_param(b";;", |_| Ok(())).is_err());
        assert!(each_param(b";a=", |_| Ok(())).is_err());
        assert!(each_param(b";a=\"x", |_| Ok(())).is_err());
        assert!(each_param(b" ; a = b ", |_| Ok(())).is_ok());
        assert!(each_param(b"x", |_| Ok(())).is_err());
    }

    #[test]
    fn word_at_a_time_scans_match_byte_loops() {
        // Every length and position around the 8- and 16-byte steps.
        for len in 0..40 {
            for at in 0..len {
                let mut s = vec![b'a'; len];
                s[at] = b'\n';
                for from in 0..=len {
                    let want = s[from..].iter().position(|&b| b == b'\n').map(|k| from + k);
                    assert_eq!(find_lf(&s, from), want, "len {len} lf {at} from {from}");
                    let want = from + s[from..].iter().take_while(|&&b| is_token(b)).count();
                    assert_eq!(
                        run(&s, from, is_token),
                        want,
                        "len {len} stop {at} from {from}"
                    );
                }
            }
            assert_eq!(find_lf(&vec![b'x'; len], 0), None);
        }
        // A borrow from a LF byte must not mark the byte above it (0x0b).
        assert_eq!(find_lf(b"aaaaaa\n\x0bbbbbbbbbbbbbbbbbb", 0), Some(6));
        assert_eq!(find_lf(b"aaaaaa\x0b\nbbbbbbbbbbbbbbbbbb", 0), Some(7));
        assert_eq!(find_lf(b"abc", 9), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0068"), Some(68));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(
            parse_u32_saturating(b"100000000000000000000"),
            Some(u32::MAX)
        );
        assert_eq!(parse_port(b"65535"), Some(65535));
        assert_eq!(parse_port(b"65536"), None);
        assert_eq!(parse_port(b"000005060"), None);
    }

    #[test]
    fn escapes_compare_per_19_1_4() {
        assert!(eq_escaped(b"%75se%72", b"user", false));
        assert!(eq_escaped(b"%41", b"A", false));
        assert!(!eq_escaped(b"%41", b"a", false));
        assert!(eq_escaped(b"%41", b"a", true));
        assert!(!eq_escaped(b"%00", b"%00%00", false));
        assert!(!eq_escaped(b"a%3Bb", b"a;b", false)); // reserved
        assert!(eq_escaped(b"v%61lue%25%34%31", b"value%2541", false));
        assert_eq!(
            unescape(b"v%61lue%25%34%31").collect::<Vec<u8>>(),
            b"value%41"
        );
        assert_eq!(unescape(b"100%").collect::<Vec<u8>>(), b"100%");
        assert!(!valid_escapes(b"%Z1"));
        assert!(!valid_escapes(b"a%4"));
        assert_eq!(unquote_pairs(br#"a\"b\\"#).collect::<Vec<u8>>(), br#"a"b\"#);
    }
}
