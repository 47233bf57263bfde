//! TLS ClientHello peek: the server name (SNI) and ALPN protocols a client asks
//! for, read from the bytes it sent before any of them are forwarded.
//!
//! Owns: record framing (reassembling one handshake message from any number of
//! TLS records), the ClientHello layout (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2), the
//! `server_name` (RFC 6066 §3) and ALPN (RFC 7301 §3.1) extensions, and the
//! host-name normalisation that SNI routes are matched with.
//!
//! Must never: do IO, keep state between calls, consume or change the caller's
//! bytes (they are forwarded to the backend untouched), allocate more than the
//! ClientHello itself, or panic on any input. The caller appends what it reads
//! to one buffer and calls [`peek`] again until the answer is not
//! [`Peek::NeedMore`]; it never needs to buffer more than [`MAX_CLIENT_HELLO`].

use std::borrow::Cow;

/// How much a caller should buffer at most: [`peek`] never answers
/// [`Peek::NeedMore`] for a buffer this long.
///
/// Browsers' ClientHellos with post-quantum key shares are about 1.7-2 KiB;
/// the handshake message may legally span several 16 KiB records, and clients
/// with many extensions or large ECH configs reach 16 KiB and more. 32 KiB
/// covers a 16 KiB hello split into tiny records with room to spare, while
/// keeping what one silent client can make us hold to one small buffer.
pub const MAX_CLIENT_HELLO: usize = 32 * 1024;

/// How many offered ALPN protocols [`HelloInfo::alpn`] keeps (the rest are
/// still validated, then ignored). Real clients offer one to three ("h2",
/// "http/1.1"); the bound keeps a hostile list from costing one allocation per
/// entry.
pub const MAX_ALPN_PROTOCOLS: usize = 32;

/// TLS record header: content type, legacy version (2), length (2).
const RECORD_HEADER: usize = 5;
/// Handshake message header: message type, 24-bit length.
const HANDSHAKE_HEADER: usize = 4;
/// TLSPlaintext.length must not exceed 2^14 (RFC 8446 §5.1).
const MAX_RECORD_PAYLOAD: usize = 1 << 14;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What a ClientHello asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloInfo {
    /// The `host_name` from the server_name extension, normalised by
    /// [`normalize_host`]; `None` if the client sent none.
    pub sni: Option<String>,
    /// The offered ALPN protocols in the client's order, at most
    /// [`MAX_ALPN_PROTOCOLS`]; names that are not UTF-8 are skipped (no route
    /// can name them).
    pub alpn: Vec<String>,
}

/// The answer for the bytes a client has sent so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// A complete ClientHello was parsed (its `sni` may be `None`).
    Hello(HelloInfo),
    /// Definitely not a TLS handshake: HTTP, an SSLv2-style hello, a record of
    /// another content type, anything else.
    NotTls,
    /// A prefix of a valid-looking ClientHello: read more and ask again.
    NeedMore,
    /// Looks like TLS but is broken, or would exceed [`MAX_CLIENT_HELLO`].
    Malformed(&'static str),
}

/// Classifies the first bytes a client sent. Pure: the same bytes always give
/// the same answer, and once a prefix gives an answer other than
/// [`Peek::NeedMore`], every longer buffer starting with it gives that answer
/// too (bytes after the ClientHello are never looked at).
pub fn peek(buf: &[u8]) -> Peek {
    let total = match frame(buf) {
        Ok(total) => total,
        Err(stop) => return stop,
    };
    let message = assemble(buf, total);
    match message.get(HANDSHAKE_HEADER..) {
        Some(body) => match parse_client_hello(body) {
            Ok(info) => Peek::Hello(info),
            Err(why) => Peek::Malformed(why),
        },
        None => Peek::Malformed("handshake message shorter than its header"),
    }
}

/// Lower-cases a host name, strips one trailing dot and checks it is a host
/// name: 1-253 bytes of dot-separated labels, each 1-63 bytes of ASCII letters,
/// digits, `-` and `_`, not starting or ending with `-`, and a last label that
/// is not all digits. `None` if it is not one.
///
/// Shared by the ClientHello peek and SNI route matching, so that both sides of
/// a comparison are normalised the same way. A route's `*.suffix` wildcard is
/// normalised by passing the suffix without `*.`.
///
/// `_` is accepted because internal names carry it (service records, some
/// cloud hostnames) and rejecting them would close working connections; an
/// all-digit last label is rejected because RFC 6066 §3 forbids IP literals
/// in SNI, and RFC 1123 §2.1 keeps top-level labels alphabetic for exactly
/// this reason.
pub fn normalize_host(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    // 253: the longest name that fits a 255-byte wire-format name (RFC 1035 §2.3.4).
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut last_all_digits = false;
    for label in name.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty() || bytes.len() > 63 {
            return None;
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if bytes.first() == Some(&b'-') || bytes.last() == Some(&b'-') {
            return None;
        }
        last_all_digits = bytes.iter().all(u8::is_ascii_digit);
    }
    if last_all_digits {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// Reads one byte of the record stream. Positions at or past
/// [`MAX_CLIENT_HELLO`] are an error, not "need more": this is what guarantees
/// a buffer of that length always gets a final answer.
fn byte_at(buf: &[u8], pos: usize) -> Result<u8, Peek> {
    if pos >= MAX_CLIENT_HELLO {
        return Err(Peek::Malformed("ClientHello larger than MAX_CLIENT_HELLO"));
    }
    buf.get(pos).copied().ok_or(Peek::NeedMore)
}

/// Walks the TLS records at the start of `buf` until they carry one whole
/// handshake message, and returns its length including the handshake header.
///
/// Every check looks only at bytes up to the position being read, in order,
/// so a prefix of the input is either `NeedMore` or the same answer as the
/// whole input.
fn frame(buf: &[u8]) -> Result<usize, Peek> {
    let mut pos = 0;
    // Handshake header bytes, which may themselves be split across records.
    let mut header = [0u8; HANDSHAKE_HEADER];
    // Bytes of the handshake message seen so far, and its full length once known.
    let mut have = 0;
    let mut total: Option<usize> = None;
    loop {
        let first_record = pos == 0;
        if byte_at(buf, pos)? != CONTENT_TYPE_HANDSHAKE {
            return Err(if first_record {
                // HTTP, SSLv2-style hellos (high bit set), alerts, application data.
                Peek::NotTls
            } else {
                Peek::Malformed("another record type interrupts the ClientHello")
            });
        }
        // Any 3.x legacy record version: clients send 3.1 for compatibility
        // even when they offer TLS 1.3 (RFC 8446 §5.1), older ones 3.0.
        if byte_at(buf, pos + 1)? != 3 {
            return Err(if first_record {
                Peek::NotTls
            } else {
                Peek::Malformed("record version is not 3.x")
            });
        }
        byte_at(buf, pos + 2)?;
        let length = usize::from(byte_at(buf, pos + 3)?) << 8 | usize::from(byte_at(buf, pos + 4)?);
        if length == 0 {
            // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
            return Err(Peek::Malformed("empty handshake record"));
        }
        if length > MAX_RECORD_PAYLOAD {
            return Err(Peek::Malformed("record longer than 2^14 bytes"));
        }
        pos += RECORD_HEADER;
        let fragment_end = pos + length;

        while have < HANDSHAKE_HEADER && pos < fragment_end {
            let b = byte_at(buf, pos)?;
            header[have] = b;
            have += 1;
            pos += 1;
            if have == 1 && b != HANDSHAKE_CLIENT_HELLO {
                return Err(Peek::Malformed(
                    "first handshake message is not a ClientHello",
                ));
            }
            if have == HANDSHAKE_HEADER {
                let body = usize::from(header[1]) << 16
                    | usize::from(header[2]) << 8
                    | usize::from(header[3]);
                let message = HANDSHAKE_HEADER + body;
                // At least one record header precedes it; more make it longer still.
                if message > MAX_CLIENT_HELLO - RECORD_HEADER {
                    return Err(Peek::Malformed("ClientHello larger than MAX_CLIENT_HELLO"));
                }
                total = Some(message);
            }
        }

        if let Some(total) = total {
            let take = (total - have).min(fragment_end - pos);
            let end = pos + take;
            if end > MAX_CLIENT_HELLO {
                return Err(Peek::Malformed("ClientHello larger than MAX_CLIENT_HELLO"));
            }
            if end > buf.len() {
                return Err(Peek::NeedMore);
            }
            have += take;
            pos = end;
            if have == total {
                // Whatever follows in this record or after it is not ours to judge.
                return Ok(total);
            }
        }
        // This record is used up and the message goes on in the next one.
    }
}

/// The handshake message that [`frame`] found complete: borrowed when one
/// record carries it all (the common case), else copied out of its records.
fn assemble(buf: &[u8], total: usize) -> Cow<'_, [u8]> {
    let mut fragments = Fragments { buf, pos: 0 };
    let Some(first) = fragments.next() else {
        return Cow::Borrowed(&[]);
    };
    if first.len() >= total {
        return Cow::Borrowed(&first[..total]);
    }
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(first);
    for fragment in fragments {
        let want = total - message.len();
        message.extend_from_slice(&fragment[..fragment.len().min(want)]);
        if message.len() == total {
            break;
        }
    }
    Cow::Owned(message)
}

/// The payloads of the records at the start of a buffer, the last one cut
/// short where the buffer ends. Trusts nothing: stops at the first short header.
struct Fragments<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let header = self.buf.get(self.pos..self.pos + RECORD_HEADER)?;
        let length = usize::from(header[3]) << 8 | usize::from(header[4]);
        let start = self.pos + RECORD_HEADER;
        let end = (start + length).min(self.buf.len());
        self.pos = start + length;
        self.buf.get(start..end).filter(|f| !f.is_empty())
    }
}

/// A bounds-checked cursor over the ClientHello body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, why: &'static str) -> Result<&'a [u8], &'static str> {
        if n > self.rest.len() {
            return Err(why);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, why: &'static str) -> Result<u8, &'static str> {
        Ok(self.take(1, why)?[0])
    }

    fn u16(&mut self, why: &'static str) -> Result<u16, &'static str> {
        let b = self.take(2, why)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self, why: &'static str) -> Result<&'a [u8], &'static str> {
        let n = self.u8(why)?;
        self.take(usize::from(n), why)
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self, why: &'static str) -> Result<&'a [u8], &'static str> {
        let n = self.u16(why)?;
        self.take(usize::from(n), why)
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

fn parse_client_hello(body: &[u8]) -> Result<HelloInfo, &'static str> {
    let mut r = Reader { rest: body };
    let version = r.u16("truncated ClientHello version")?;
    if version >> 8 != 3 {
        return Err("ClientHello version is not 3.x");
    }
    r.take(32, "truncated ClientHello random")?;
    let session_id = r.vec8("truncated session id")?;
    if session_id.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16("truncated cipher suites")?;
    if suites.len() < 2 || suites.len() % 2 != 0 {
        return Err("bad cipher suites length");
    }
    if r.vec8("truncated compression methods")?.is_empty() {
        return Err("no compression methods");
    }
    let mut info = HelloInfo::default();
    if r.is_empty() {
        // An extension-less hello (TLS 1.0-1.2 allow it): no SNI, no ALPN.
        return Ok(info);
    }
    let extensions = r.vec16("truncated extensions")?;
    if !r.is_empty() {
        return Err("bytes after the extensions");
    }
    let mut r = Reader { rest: extensions };
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !r.is_empty() {
        let kind = r.u16("truncated extension header")?;
        let data = r.vec16("truncated extension")?;
        // WHY: duplicates are only refused for the two extensions we route on;
        // two different names would let the client route by one and be served
        // by the other. Other duplicates are the backend's TLS stack's business.
        match kind {
            EXTENSION_SERVER_NAME => {
                if std::mem::replace(&mut seen_sni, true) {
                    return Err("duplicate server_name extension");
                }
                info.sni = parse_server_name(data)?;
            }
            EXTENSION_ALPN => {
                if std::mem::replace(&mut seen_alpn, true) {
                    return Err("duplicate ALPN extension");
                }
                info.alpn = parse_alpn(data)?;
            }
            _ => {}
        }
    }
    Ok(info)
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut outer = Reader { rest: data };
    let list = outer.vec16("truncated server name list")?;
    if !outer.is_empty() {
        return Err("bytes after the server name list");
    }
    if list.is_empty() {
        // ServerNameList server_name_list<1..2^16-1> (RFC 6066 §3).
        return Err("empty server name list");
    }
    let mut r = Reader { rest: list };
    let mut host = None;
    while !r.is_empty() {
        let name_type = r.u8("truncated server name type")?;
        // Every name type defined so far carries opaque<1..2^16-1>; later ones
        // are assumed to as well.
        let name = r.vec16("truncated server name")?;
        if name_type != NAME_TYPE_HOST_NAME {
            continue;
        }
        if host.is_some() {
            return Err("more than one host_name");
        }
        let name = std::str::from_utf8(name).map_err(|_| "server name is not a host name")?;
        host = Some(normalize_host(name).ok_or("server name is not a host name")?);
    }
    Ok(host)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, &'static str> {
    let mut outer = Reader { rest: data };
    let list = outer.vec16("truncated ALPN list")?;
    if !outer.is_empty() {
        return Err("bytes after the ALPN list");
    }
    if list.is_empty() {
        // ProtocolNameList protocol_name_list<2..2^16-1> (RFC 7301 §3.1).
        return Err("empty ALPN list");
    }
    let mut r = Reader { rest: list };
    let mut protocols = Vec::new();
    while !r.is_empty() {
        let name = r.vec8("truncated ALPN protocol")?;
        if name.is_empty() {
            return Err("empty ALPN protocol name");
        }
        if protocols.len() < MAX_ALPN_PROTOCOLS {
            if let Ok(name) = std::str::from_utf8(name) {
                protocols.push(name.to_owned());
            }
        }
    }
    Ok(protocols)
}

/// The handshake message (header included) that `buf` starts with, if its
/// records carry a complete one. For tests and the fuzz cross-checks.
pub(crate) fn handshake_message(buf: &[u8]) -> Option<Vec<u8>> {
    let total = frame(buf).ok()?;
    Some(assemble(buf, total).into_owned())
}

/// Frames a handshake message into handshake records whose payload sizes come
/// from `sizes` (each clamped to 1..=2^14; the last size repeats). For tests
/// and the fuzz cross-checks: any framing of the same message must peek alike.
pub(crate) fn frame_records(message: &[u8], sizes: &[usize], minor: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + RECORD_HEADER * (1 + message.len()));
    let mut rest = message;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i)
            .or(sizes.last())
            .copied()
            .unwrap_or(MAX_RECORD_PAYLOAD)
            .clamp(1, MAX_RECORD_PAYLOAD)
            .min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(size);
        out.extend_from_slice(&[CONTENT_TYPE_HANDSHAKE, 3, minor]);
        out.extend_from_slice(&(size as u16).to_be_bytes());
        out.extend_from_slice(chunk);
        rest = tail;
    }
    out
}

/// A TLS record carrying a ClientHello that names `server_name`, for the
/// tests of code that inspects connections.
#[cfg(test)]
pub(crate) fn test_client_hello(server_name: &str) -> Vec<u8> {
    tests::hello(&[tests::server_name_ext(&[(0, server_name.as_bytes())])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::fuzzing;
    use proptest::prelude::*;

    /// A captured ClientHello (tests/fixtures/tls, see its README) and what it
    /// asked for.
    struct Fixture {
        name: &'static str,
        bytes: &'static [u8],
        sni: Option<&'static str>,
        alpn: Vec<String>,
    }

    macro_rules! fixture {
        ($name:literal, $sni:expr, $alpn:expr) => {
            Fixture {
                name: $name,
                bytes: include_bytes!(concat!("../../tests/fixtures/tls/", $name, ".bin")),
                sni: $sni,
                alpn: $alpn,
            }
        };
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn fixtures() -> Vec<Fixture> {
        let h2 = || names(&["h2", "http/1.1"]);
        vec![
            fixture!("openssl_tls12_sni", Some("example.com"), vec![]),
            fixture!("openssl_tls13_sni", Some("example.com"), vec![]),
            fixture!("openssl_tls13_no_sni", None, vec![]),
            fixture!("openssl_tls13_alpn", Some("api.example.com"), h2()),
            fixture!("curl_tls13_alpn", Some("www.example.org"), h2()),
            fixture!(
                "python_big_alpn",
                Some("big.example.net"),
                (0..MAX_ALPN_PROTOCOLS)
                    .map(|i| format!("proto-{i:03}"))
                    .collect()
            ),
            fixture!(
                "openssl_ffdhe8192_small_records",
                Some("kex.example.com"),
                vec![]
            ),
            fixture!(
                "openssl_huge_multi_record",
                Some("huge.example.com"),
                (0..MAX_ALPN_PROTOCOLS)
                    .map(|i| format!("p{i:04}"))
                    .collect()
            ),
            fixture!("split_two_records", Some("example.com"), vec![]),
            fixture!("split_header_across_records", Some("api.example.com"), h2()),
        ]
    }

    fn expected(f: &Fixture) -> Peek {
        Peek::Hello(HelloInfo {
            sni: f.sni.map(str::to_owned),
            alpn: f.alpn.clone(),
        })
    }

    #[test]
    fn fixtures_give_their_names() {
        for f in fixtures() {
            assert_eq!(peek(f.bytes), expected(&f), "{}", f.name);
        }
    }

    #[test]
    fn fixtures_cover_what_the_issue_asks_for() {
        let all = fixtures();
        let by_name = |n: &str| all.iter().find(|f| f.name == n).unwrap();
        // Larger than one TCP segment on a 1500-byte MTU.
        assert!(by_name("python_big_alpn").bytes.len() > 1500);
        // Larger than one 16 KiB record: OpenSSL split it itself.
        assert!(by_name("openssl_huge_multi_record").bytes.len() > MAX_RECORD_PAYLOAD);
        for multi in [
            "openssl_huge_multi_record",
            "openssl_ffdhe8192_small_records",
            "split_two_records",
            "split_header_across_records",
        ] {
            let records = Fragments {
                buf: by_name(multi).bytes,
                pos: 0,
            }
            .count();
            assert!(records >= 2, "{multi}: {records} record(s)");
        }
        // TLS 1.2-only hello: legacy version 3.3 and no supported_versions.
        assert_eq!(&by_name("openssl_tls12_sni").bytes[9..11], &[3, 3]);
    }

    #[test]
    fn every_prefix_needs_more() {
        for f in fixtures() {
            for n in 0..f.bytes.len() {
                assert_eq!(peek(&f.bytes[..n]), Peek::NeedMore, "{} at {n}", f.name);
            }
        }
    }

    #[test]
    fn every_split_point_gives_the_same_answer() {
        for f in fixtures() {
            for split in 0..=f.bytes.len() {
                // As the data plane does: append each read to one buffer.
                let mut buf = Vec::new();
                buf.extend_from_slice(&f.bytes[..split]);
                let first = peek(&buf);
                if split < f.bytes.len() {
                    assert_eq!(first, Peek::NeedMore, "{} split at {split}", f.name);
                }
                buf.extend_from_slice(&f.bytes[split..]);
                assert_eq!(peek(&buf), expected(&f), "{} split at {split}", f.name);
            }
        }
    }

    #[test]
    fn bytes_after_the_hello_are_ignored() {
        for f in fixtures() {
            for tail in [
                &b"\x17\x03\x03\x00\x05early"[..],
                b"GET / HTTP/1.1\r\n",
                &[0; 40000],
            ] {
                let mut buf = f.bytes.to_vec();
                buf.extend_from_slice(tail);
                assert_eq!(peek(&buf), expected(&f), "{}", f.name);
            }
        }
    }

    #[test]
    fn any_framing_of_a_fixture_gives_the_same_answer() {
        for f in fixtures() {
            let message = handshake_message(f.bytes).unwrap();
            for sizes in [
                &[1][..],
                &[2, 1, 300],
                &[7],
                &[100],
                &[MAX_RECORD_PAYLOAD],
                &[3, 5000],
            ] {
                for minor in 0..=4 {
                    let framed = frame_records(&message, sizes, minor);
                    let want = if framed.len() <= MAX_CLIENT_HELLO {
                        expected(&f)
                    } else {
                        Peek::Malformed("ClientHello larger than MAX_CLIENT_HELLO")
                    };
                    assert_eq!(peek(&framed), want, "{} in records of {sizes:?}", f.name);
                }
            }
        }
    }

    #[test]
    fn fixtures_pass_the_fuzz_cross_checks() {
        for f in fixtures() {
            fuzzing::sni(f.bytes);
        }
    }

    #[test]
    fn other_protocols_are_not_tls() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"\r\n\r\n\0\r\nQUIT\n",
            // SSLv2-compatible ClientHello: 2-byte length with the high bit set.
            &[
                0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ],
            // Alert, change_cipher_spec and application data records.
            &[21, 3, 3, 0, 2, 2, 40],
            &[20, 3, 3, 0, 1, 1],
            &[23, 3, 3, 0, 5, 1, 2, 3, 4, 5],
            // Handshake content type with a non-3.x record version (DTLS is 0xfe).
            &[22, 0xfe, 0xfd, 0, 10],
            &[22, 2, 0],
            &[0],
        ];
        for case in cases {
            assert_eq!(peek(case), Peek::NotTls, "{case:?}");
        }
    }

    #[test]
    fn short_tls_looking_prefixes_need_more() {
        for case in [
            &[][..],
            &[22],
            &[22, 3],
            &[22, 3, 1],
            &[22, 3, 1, 0],
            &[22, 3, 1, 0, 5],
            &[22, 3, 1, 0, 5, 1],
        ] {
            assert_eq!(peek(case), Peek::NeedMore, "{case:?}");
        }
    }

    /// A handshake record carrying one ClientHello with these extensions.
    fn hello_with(version: [u8; 2], extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&version);
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0]); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
        body.extend_from_slice(&[1, 0]); // null compression
        if let Some(extensions) = extensions {
            let mut block = Vec::new();
            for (kind, data) in extensions {
                block.extend_from_slice(&kind.to_be_bytes());
                block.extend_from_slice(&(data.len() as u16).to_be_bytes());
                block.extend_from_slice(data);
            }
            body.extend_from_slice(&(block.len() as u16).to_be_bytes());
            body.extend_from_slice(&block);
        }
        let mut message = vec![HANDSHAKE_CLIENT_HELLO];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        frame_records(&message, &[MAX_RECORD_PAYLOAD], 1)
    }

    pub(crate) fn server_name_ext(entries: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for (kind, name) in entries {
            list.push(*kind);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (EXTENSION_SERVER_NAME, data)
    }

    fn alpn_ext(protocols: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protocols {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (EXTENSION_ALPN, data)
    }

    pub(crate) fn hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        hello_with([3, 3], Some(extensions))
    }

    fn info(sni: Option<&str>, alpn: &[&str]) -> Peek {
        Peek::Hello(HelloInfo {
            sni: sni.map(str::to_owned),
            alpn: names(alpn),
        })
    }

    #[test]
    fn built_hellos_parse() {
        assert_eq!(peek(&hello_with([3, 1], None)), info(None, &[]));
        assert_eq!(peek(&hello(&[])), info(None, &[]));
        let sni = server_name_ext(&[(0, b"WWW.Example.COM.")]);
        let alpn = alpn_ext(&[b"h2", b"http/1.1"]);
        let grease = (0x0a0a, vec![]);
        assert_eq!(
            peek(&hello(&[
                grease.clone(),
                sni.clone(),
                alpn.clone(),
                (0x2b, vec![2, 3, 4])
            ])),
            info(Some("www.example.com"), &["h2", "http/1.1"])
        );
        // Name types other than host_name are skipped.
        assert_eq!(
            peek(&hello(&[server_name_ext(&[
                (7, b"\xff\xfe"),
                (0, b"a.example")
            ])])),
            info(Some("a.example"), &[])
        );
        // ALPN names that are not UTF-8 are skipped; the count is bounded.
        assert_eq!(
            peek(&hello(&[alpn_ext(&[b"\xff", b"h2"])])),
            info(None, &["h2"])
        );
        let many: Vec<Vec<u8>> = (0..100).map(|i| format!("x{i}").into_bytes()).collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        let Peek::Hello(got) = peek(&hello(&[alpn_ext(&many)])) else {
            panic!("not a hello");
        };
        assert_eq!(got.alpn.len(), MAX_ALPN_PROTOCOLS);
        assert_eq!(got.alpn[31], "x31");
    }

    #[test]
    fn broken_hellos_are_malformed() {
        let ok_sni = server_name_ext(&[(0, b"example.com")]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (hello_with([2, 0], None), "ClientHello version is not 3.x"),
            (
                hello(&[ok_sni.clone(), ok_sni.clone()]),
                "duplicate server_name extension",
            ),
            (
                hello(&[alpn_ext(&[b"h2"]), alpn_ext(&[b"h2"])]),
                "duplicate ALPN extension",
            ),
            (
                hello(&[server_name_ext(&[(0, b"a.example"), (0, b"b.example")])]),
                "more than one host_name",
            ),
            (hello(&[server_name_ext(&[])]), "empty server name list"),
            (
                hello(&[server_name_ext(&[(0, b"")])]),
                "server name is not a host name",
            ),
            (
                hello(&[server_name_ext(&[(0, b"192.0.2.1")])]),
                "server name is not a host name",
            ),
            (
                hello(&[server_name_ext(&[(0, b"bad name.example")])]),
                "server name is not a host name",
            ),
            (
                hello(&[server_name_ext(&[(0, b"caf\xc3\xa9.example")])]),
                "server name is not a host name",
            ),
            (
                hello(&[server_name_ext(&[(0, b"\xff.example")])]),
                "server name is not a host name",
            ),
            (
                hello(&[(EXTENSION_SERVER_NAME, vec![0, 5, 0, 0, 1])]),
                "truncated server name list",
            ),
            (
                hello(&[(EXTENSION_SERVER_NAME, vec![0, 4, 0, 0, 9, b'a'])]),
                "truncated server name",
            ),
            (
                hello(&[(EXTENSION_SERVER_NAME, vec![0, 0, 9])]),
                "bytes after the server name list",
            ),
            (hello(&[alpn_ext(&[])]), "empty ALPN list"),
            (
                hello(&[alpn_ext(&[b"h2", b""])]),
                "empty ALPN protocol name",
            ),
            (
                hello(&[(EXTENSION_ALPN, vec![0, 3, 5, b'h', b'2'])]),
                "truncated ALPN protocol",
            ),
            (hello(&[(EXTENSION_ALPN, vec![0])]), "truncated ALPN list"),
        ];
        for (bytes, why) in cases {
            assert_eq!(peek(&bytes), Peek::Malformed(why), "{bytes:?}");
        }
    }

    /// Rewrites the handshake message of a one-record hello with `edit`,
    /// keeping the record and handshake lengths as they were.
    fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        // The padding extension (21) leaves room to read past a wrong length.
        let mut bytes = hello(&[server_name_ext(&[(0, b"example.com")]), (21, vec![0; 64])]);
        edit(&mut bytes);
        bytes
    }

    #[test]
    fn broken_lengths_are_malformed() {
        let body = RECORD_HEADER + HANDSHAKE_HEADER;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![22, 3, 1, 0, 0], "empty handshake record"),
            (vec![22, 3, 1, 0x40, 0x01], "record longer than 2^14 bytes"),
            (
                vec![22, 3, 1, 0, 4, 2, 0, 0, 0],
                "first handshake message is not a ClientHello",
            ),
            (
                vec![22, 3, 1, 0, 4, 1, 0, 0x80, 0],
                "ClientHello larger than MAX_CLIENT_HELLO",
            ),
            (
                vec![22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff],
                "ClientHello larger than MAX_CLIENT_HELLO",
            ),
            (
                vec![22, 3, 1, 0, 4, 1, 0, 0, 0],
                "truncated ClientHello version",
            ),
            (
                edited(|b| b[body + 34] = 33),
                "session id longer than 32 bytes",
            ),
            (edited(|b| b[body + 34] = 0xff), "truncated session id"),
            (edited(|b| b[body + 36] = 3), "bad cipher suites length"),
            (edited(|b| b[body + 36] = 0), "bad cipher suites length"),
            (edited(|b| b[body + 39] = 0), "no compression methods"),
            (
                edited(|b| b[body + 39] = 0xff),
                "truncated compression methods",
            ),
            (edited(|b| b[body + 41] = 0xff), "truncated extensions"),
            (edited(|b| b[body + 42] -= 1), "bytes after the extensions"),
            (edited(|b| b[body + 45] = 0x20), "truncated extension"),
        ];
        for (bytes, why) in cases {
            assert_eq!(peek(&bytes), Peek::Malformed(why), "{bytes:?}");
        }
    }

    #[test]
    fn broken_framing_is_malformed() {
        let f = &fixtures()[1];
        let message = handshake_message(f.bytes).unwrap();
        let two = frame_records(&message, &[100], 1);
        let second = RECORD_HEADER + 100;
        let mut alert = two.clone();
        alert[second] = 21;
        assert_eq!(
            peek(&alert),
            Peek::Malformed("another record type interrupts the ClientHello")
        );
        // Judged as soon as the offending byte arrives.
        assert_eq!(
            peek(&alert[..=second]),
            Peek::Malformed("another record type interrupts the ClientHello")
        );
        let mut version = two.clone();
        version[second + 1] = 0xfe;
        assert_eq!(peek(&version), Peek::Malformed("record version is not 3.x"));
        let mut empty = two.clone();
        empty[second + 3..second + 5].copy_from_slice(&[0, 0]);
        assert_eq!(peek(&empty), Peek::Malformed("empty handshake record"));
    }

    #[test]
    fn hello_too_large_for_the_buffer_is_malformed() {
        // A legal 7 KiB hello in one-byte records needs 6x its size on the wire.
        let padding = (21, vec![0; 7000]);
        let big = hello(&[server_name_ext(&[(0, b"example.com")]), padding]);
        let message = handshake_message(&big).unwrap();
        assert_eq!(peek(&big), info(Some("example.com"), &[]));
        let tiny = frame_records(&message, &[1], 3);
        assert!(tiny.len() > MAX_CLIENT_HELLO);
        let why = Peek::Malformed("ClientHello larger than MAX_CLIENT_HELLO");
        assert_eq!(peek(&tiny), why);
        assert_eq!(peek(&tiny[..MAX_CLIENT_HELLO]), why);
        assert_eq!(peek(&tiny[..MAX_CLIENT_HELLO - 1]), Peek::NeedMore);
        // The largest hello that fits in one record fits the buffer.
        let fits = hello(&[(21, vec![0; MAX_RECORD_PAYLOAD - 4 - 47])]);
        assert_eq!(fits.len(), RECORD_HEADER + MAX_RECORD_PAYLOAD);
        assert_eq!(peek(&fits), info(None, &[]));
    }

    #[test]
    fn normalize_host_cases() {
        let ok = [
            ("example.com", "example.com"),
            ("Example.COM.", "example.com"),
            ("a", "a"),
            ("localhost.", "localhost"),
            ("_acme-challenge.example.com", "_acme-challenge.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("1.example.com", "1.example.com"),
            ("host-1.example.123a", "host-1.example.123a"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize_host(input).as_deref(), Some(want), "{input}");
        }
        let label63 = "a".repeat(63);
        assert!(normalize_host(&format!("{label63}.com")).is_some());
        assert!(normalize_host(&format!("a{label63}.com")).is_none());
        let name253 = [label63.as_str(); 4].join(".")[..253].to_owned();
        assert!(normalize_host(&name253).is_some());
        assert!(normalize_host(&format!("{name253}.")).is_some());
        assert!(normalize_host(&format!("{name253}a")).is_none());
        let bad = [
            "",
            ".",
            "..",
            "example.com..",
            ".example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "exa mple.com",
            "exa/mple.com",
            "*.example.com",
            "café.example",
            "192.0.2.1",
            "example.123",
            "::1",
            "[::1]",
            "example.com:443",
        ];
        for input in bad {
            assert_eq!(normalize_host(input), None, "{input}");
        }
    }

    #[test]
    fn a_full_buffer_always_gets_an_answer() {
        let mut buf = vec![22, 3, 1, 0x40, 0x00, 1, 0, 0x40, 0];
        buf.resize(MAX_CLIENT_HELLO, 0);
        assert_ne!(peek(&buf), Peek::NeedMore);
        // One-byte records that never complete a message.
        let endless: Vec<u8> = [22, 3, 3, 0, 1, 1]
            .into_iter()
            .cycle()
            .take(MAX_CLIENT_HELLO)
            .collect();
        assert_ne!(peek(&endless), Peek::NeedMore);
    }

    /// A fixture with a few bytes overwritten, inserted or removed.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let count = fixtures().len();
        (
            0..count,
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
        )
            .prop_map(|(which, edits)| {
                let mut bytes = fixtures()[which].bytes.to_vec();
                for (at, byte, kind) in edits {
                    let i = at.index(bytes.len().max(1));
                    match kind {
                        0 if i < bytes.len() => bytes[i] = byte,
                        1 => bytes.insert(i.min(bytes.len()), byte),
                        _ if i < bytes.len() => {
                            bytes.remove(i);
                        }
                        _ => {}
                    }
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            fuzzing::sni(&data);
        }

        #[test]
        fn random_records_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), minor in 0..5u8) {
            // Past the record header, so the handshake and hello parsers are reached.
            let mut data = vec![22, 3, minor];
            data.extend_from_slice(&(body.len() as u16).to_be_bytes());
            data.extend_from_slice(&body);
            fuzzing::sni(&data);
        }

        #[test]
        fn mutated_fixtures_never_panic(data in mutated()) {
            fuzzing::sni(&data);
        }
    }
}
