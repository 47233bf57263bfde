//! PROXY protocol v1 (text) and v2 (binary) headers: parsing what a trusted
//! upstream balancer puts in front of a connection, and encoding the header we
//! put in front of ours, per HAProxy's `doc/proxy-protocol.txt`.
//!
//! Owns: both wire formats, the v2 TLVs we send (ALPN, AUTHORITY) and the
//! CRC32C TLV we check when a peer sends one.
//!
//! Must never: do IO, decide whom to trust (the caller checks the peer against
//! `trusted_proxies` before calling [`parse`]), guess whether a header is
//! present (the specification forbids it: a listener either requires one or
//! never reads one), buffer more than [`MAX_HEADER_LEN`], or panic on any
//! input.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line, CRLF included: "PROXY UNKNOWN" with two full IPv6
/// addresses and ports (proxy-protocol.txt §2.1).
pub const V1_MAX_LEN: usize = 107;

/// The v2 signature (proxy-protocol.txt §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most address and TLV bytes a v2 header may carry here. The
/// specification allows 65535; real senders (HAProxy, AWS NLB, GCP) stay far
/// below 4096 (the largest address block, AF_UNIX, is 216 bytes, and TLVs are
/// a few names and ids), and a cap bounds what one peer can make us buffer.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// How much a caller should buffer at most: [`parse`] never answers
/// [`Parsed::NeedMore`] for a buffer this long.
pub const MAX_HEADER_LEN: usize = V2_HEADER + V2_MAX_PAYLOAD;

/// The longest TLV value [`encode_v2`] sends: an SNI host name is at most 253
/// bytes and an ALPN protocol name at most 255 (RFC 7301 §3.1), so anything
/// longer is not one.
pub const MAX_TLV_VALUE: usize = 255;

const V1_PREFIX: &[u8; 6] = b"PROXY ";
const V2_HEADER: usize = 16;
const V2_VERSION: u8 = 0x2;
const V2_CMD_LOCAL: u8 = 0x0;
const V2_CMD_PROXY: u8 = 0x1;
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
const V2_ADDR4_LEN: usize = 12;
const V2_ADDR6_LEN: usize = 36;
const V2_ADDR_UNIX_LEN: usize = 216;

/// PP2_TYPE_ALPN.
pub const PP2_TYPE_ALPN: u8 = 0x01;
/// PP2_TYPE_AUTHORITY: the host name the client asked for (SNI).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// PP2_TYPE_CRC32C: a checksum of the whole header, checked when present.
pub const PP2_TYPE_CRC32C: u8 = 0x03;

/// Which header versions a listener accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accept {
    V1,
    V2,
    Any,
}

/// What a PROXY header said about the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ProxyHeader {
    /// The original client. `None` for v1 `UNKNOWN`, v2 `LOCAL` and v2
    /// families without an IP address (AF_UNSPEC, AF_UNIX, UDP): the caller
    /// then uses the real connection's addresses, as the specification says.
    pub source: Option<SocketAddr>,
    /// The address the client connected to; `None` exactly when `source` is.
    pub destination: Option<SocketAddr>,
}

/// The answer for the bytes read so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parsed {
    /// A complete, valid header: the connection's own bytes start at `consumed`.
    Header {
        header: ProxyHeader,
        consumed: usize,
    },
    /// A prefix of an accepted header: read more and ask again.
    NeedMore,
    /// Not a valid header of an accepted version: close the connection.
    Invalid(&'static str),
}

/// Parses the PROXY header at the start of `buf`. Pure: once a prefix gives an
/// answer other than [`Parsed::NeedMore`], every longer buffer starting with
/// it gives that answer too, and bytes after the header are never looked at.
pub fn parse(buf: &[u8], accept: Accept) -> Parsed {
    // The version is decided by the first byte alone ('P' or '\r'), so that a
    // prefix is always judged the way the whole header will be.
    match (buf.first(), accept) {
        (None, _) => Parsed::NeedMore,
        (Some(b'P'), Accept::V1 | Accept::Any) => parse_v1(buf),
        (Some(b'\r'), Accept::V2 | Accept::Any) => parse_v2(buf),
        (Some(_), Accept::V1) => Parsed::Invalid("not a PROXY v1 header"),
        (Some(_), Accept::V2) => Parsed::Invalid("not a PROXY v2 header"),
        (Some(_), Accept::Any) => Parsed::Invalid("not a PROXY header"),
    }
}

fn parse_v1(buf: &[u8]) -> Parsed {
    for (got, want) in buf.iter().zip(V1_PREFIX) {
        if got != want {
            return Parsed::Invalid("not a PROXY header");
        }
    }
    // Find the CRLF within the first 107 bytes, refusing anything that cannot
    // be part of a v1 line as soon as it is seen.
    let mut end = None;
    for (i, &b) in buf
        .iter()
        .enumerate()
        .take(V1_MAX_LEN)
        .skip(V1_PREFIX.len())
    {
        match b {
            b'\r' => {
                if i + 1 >= V1_MAX_LEN {
                    return Parsed::Invalid("PROXY v1 line longer than 107 bytes");
                }
                match buf.get(i + 1) {
                    None => return Parsed::NeedMore,
                    Some(b'\n') => {
                        end = Some(i);
                        break;
                    }
                    Some(_) => return Parsed::Invalid("CR without LF in PROXY v1 line"),
                }
            }
            b'\n' => return Parsed::Invalid("LF without CR in PROXY v1 line"),
            0x20..=0x7e => {}
            _ => return Parsed::Invalid("non-printable byte in PROXY v1 line"),
        }
    }
    let Some(end) = end else {
        return if buf.len() >= V1_MAX_LEN {
            Parsed::Invalid("PROXY v1 line longer than 107 bytes")
        } else {
            Parsed::NeedMore
        };
    };
    let consumed = end + 2;
    // Only printable ASCII got here, so this cannot fail.
    let Ok(line) = std::str::from_utf8(&buf[V1_PREFIX.len()..end]) else {
        return Parsed::Invalid("non-printable byte in PROXY v1 line");
    };
    let mut fields = line.split(' ');
    let is_v4 = match fields.next() {
        Some("TCP4") => true,
        Some("TCP6") => false,
        // "the receiver must ignore anything presented before the CRLF".
        Some("UNKNOWN") => {
            return Parsed::Header {
                header: ProxyHeader {
                    source: None,
                    destination: None,
                },
                consumed,
            }
        }
        _ => return Parsed::Invalid("unknown protocol in PROXY v1 line"),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Parsed::Invalid("PROXY v1 line needs exactly four fields after the protocol");
    };
    let (Some(src), Some(dst)) = (v1_ip(src, is_v4), v1_ip(dst, is_v4)) else {
        return Parsed::Invalid("bad address in PROXY v1 line");
    };
    let (Some(sport), Some(dport)) = (v1_port(sport), v1_port(dport)) else {
        return Parsed::Invalid("bad port in PROXY v1 line");
    };
    Parsed::Header {
        header: ProxyHeader {
            source: Some(SocketAddr::new(src, sport)),
            destination: Some(SocketAddr::new(dst, dport)),
        },
        consumed,
    }
}

/// An address of the family the protocol announced. The standard library's
/// parsers already refuse IPv4 octets with heading zeroes, as §2.1 requires.
fn v1_ip(text: &str, v4: bool) -> Option<IpAddr> {
    if v4 {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

/// A decimal port in [0, 65535] without heading zeroes (§2.1).
fn v1_port(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 5 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    text.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    for (got, want) in buf.iter().zip(&V2_SIGNATURE) {
        if got != want {
            return Parsed::Invalid("not a PROXY header");
        }
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Parsed::NeedMore;
    };
    if ver_cmd >> 4 != V2_VERSION {
        return Parsed::Invalid("PROXY v2 header with a version other than 2");
    }
    let command = ver_cmd & 0x0f;
    if command != V2_CMD_LOCAL && command != V2_CMD_PROXY {
        return Parsed::Invalid("unknown PROXY v2 command");
    }
    let Some(&family) = buf.get(13) else {
        return Parsed::NeedMore;
    };
    // LOCAL: "discard the protocol block including the family which is ignored".
    let address_len = if command == V2_CMD_LOCAL {
        0
    } else {
        match family {
            0x00 => 0,
            0x11 | 0x12 => V2_ADDR4_LEN,
            0x21 | 0x22 => V2_ADDR6_LEN,
            0x31 | 0x32 => V2_ADDR_UNIX_LEN,
            _ => return Parsed::Invalid("unknown PROXY v2 address family or transport"),
        }
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Parsed::NeedMore;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX_PAYLOAD {
        return Parsed::Invalid("PROXY v2 header longer than we accept");
    }
    if len < address_len {
        return Parsed::Invalid("PROXY v2 address block shorter than its family needs");
    }
    let consumed = V2_HEADER + len;
    let Some(header) = buf.get(..consumed) else {
        return Parsed::NeedMore;
    };
    let none = ProxyHeader {
        source: None,
        destination: None,
    };
    if command == V2_CMD_LOCAL || family == 0x00 {
        // The address information is to be ignored, so where TLVs would start
        // is unknown: nothing more to check.
        return Parsed::Header {
            header: none,
            consumed,
        };
    }
    if let Err(why) = check_tlvs(header, V2_HEADER + address_len) {
        return Parsed::Invalid(why);
    }
    let a = &header[V2_HEADER..];
    let header = match family {
        V2_TCP4 => {
            let ip = |at: usize| IpAddr::from([a[at], a[at + 1], a[at + 2], a[at + 3]]);
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            }
        }
        V2_TCP6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[at..at + 16]);
                IpAddr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            }
        }
        // UDP and AF_UNIX "fall back to the UNSPEC mode" (§2.2): a TCP
        // balancer has no use for their addresses.
        _ => none,
    };
    Parsed::Header { header, consumed }
}

/// Checks that the bytes after the address block are well-formed TLVs, and
/// any CRC32C TLV matches the header.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), &'static str> {
    for tlv in Tlvs::new(header, start) {
        let (kind, at, value) = tlv?;
        if kind == PP2_TYPE_CRC32C {
            let Ok(sent) = <[u8; 4]>::try_from(value) else {
                return Err("PROXY v2 CRC32C TLV is not 4 bytes");
            };
            // §2.2.3: the checksum of the whole header with the field zeroed.
            let computed = crc32c_update(
                crc32c_update(crc32c_update(!0, &header[..at]), &[0; 4]),
                &header[at + 4..],
            );
            if !computed != u32::from_be_bytes(sent) {
                return Err("PROXY v2 CRC32C mismatch");
            }
        }
    }
    Ok(())
}

/// The TLVs of a v2 header from `start`: `(type, value offset, value)`.
struct Tlvs<'a> {
    header: &'a [u8],
    pos: usize,
}

impl<'a> Tlvs<'a> {
    fn new(header: &'a [u8], start: usize) -> Self {
        Tlvs { header, pos: start }
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<(u8, usize, &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.header.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let [kind, hi, lo, ..] = *rest else {
            self.pos = self.header.len();
            return Some(Err("truncated PROXY v2 TLV"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let at = self.pos + 3;
        let Some(value) = self.header.get(at..at + len) else {
            self.pos = self.header.len();
            return Some(Err("PROXY v2 TLV longer than the header"));
        };
        self.pos = at + len;
        Some(Ok((kind, at, value)))
    }
}

/// The TLVs of a complete v2 INET/INET6 PROXY header, for tests and the fuzz
/// cross-checks. Empty for anything else.
pub(crate) fn v2_tlvs(header: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let start = match header.get(13) {
        Some(&V2_TCP4) => V2_HEADER + V2_ADDR4_LEN,
        Some(&V2_TCP6) => V2_HEADER + V2_ADDR6_LEN,
        _ => return Vec::new(),
    };
    Tlvs::new(header, start)
        .map_while(Result::ok)
        .map(|(kind, _, value)| (kind, value.to_vec()))
        .collect()
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) as RFC 4960 App. B
/// specifies; bitwise, because headers are short and this runs once per
/// connection that carries the TLV.
fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// Both addresses in one family: IPv4 if both are, else IPv6 with an IPv4
/// address mapped (`::ffff:a.b.c.d`).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (IpAddr, IpAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(to_v6(s)), IpAddr::V6(to_v6(d))),
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Appends a v1 line: `TCP4` when both addresses are IPv4, else `TCP6` with an
/// IPv4 address mapped into IPv6.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    let mut line = String::with_capacity(V1_MAX_LEN);
    let (s, d) = same_family(src, dst);
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let _ = write!(line, "PROXY TCP4 {s} {d}");
        }
        (s, d) => {
            line.push_str("PROXY TCP6 ");
            write_v6_hex(&mut line, to_v6(s));
            line.push(' ');
            write_v6_hex(&mut line, to_v6(d));
        }
    }
    let _ = write!(line, " {} {}\r\n", src.port(), dst.port());
    out.extend_from_slice(line.as_bytes());
}

/// Writes an IPv6 address as §2.1 asks: groups of hexadecimal digits with at
/// most one `::`, never the dotted IPv4 tail `Display` uses for mapped
/// addresses (strict receivers refuse it).
fn write_v6_hex(out: &mut String, ip: Ipv6Addr) {
    let groups = ip.segments();
    // The longest run of two or more zero groups, first one on a tie (RFC 5952 §4.2).
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run.1 = 0;
        }
    }
    if best.1 < 2 {
        best = (usize::MAX, 0);
    }
    let mut i = 0;
    while i < 8 {
        if i == best.0 {
            out.push_str("::");
            i += best.1;
            continue;
        }
        if i > 0 && i != best.0 + best.1 {
            out.push(':');
        }
        let _ = write!(out, "{:x}", groups[i]);
        i += 1;
    }
}

/// Appends a v2 header: PROXY command, STREAM over INET (both addresses IPv4)
/// or INET6 (an IPv4 address mapped), then a PP2_TYPE_ALPN TLV with `alpn`
/// (the protocol name, e.g. `b"h2"`) and a PP2_TYPE_AUTHORITY TLV with
/// `authority` (the SNI host name) when given. An empty value, or one longer
/// than [`MAX_TLV_VALUE`], is left out: it cannot be a host name or an ALPN
/// protocol.
pub fn encode_v2(
    src: SocketAddr,
    dst: SocketAddr,
    authority: Option<&str>,
    alpn: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let tlvs: Vec<(u8, &[u8])> = [
        (PP2_TYPE_ALPN, alpn),
        (PP2_TYPE_AUTHORITY, authority.map(str::as_bytes)),
    ]
    .into_iter()
    .filter_map(|(kind, value)| Some((kind, value?)))
    .filter(|(_, value)| !value.is_empty() && value.len() <= MAX_TLV_VALUE)
    .collect();
    let tlv_len: usize = tlvs.iter().map(|(_, v)| 3 + v.len()).sum();

    let (s, d) = same_family(src, dst);
    let (family, address_len) = match s {
        IpAddr::V4(_) => (V2_TCP4, V2_ADDR4_LEN),
        IpAddr::V6(_) => (V2_TCP6, V2_ADDR6_LEN),
    };
    // At most 36 + 2 * (3 + 255) bytes: always fits the u16 and V2_MAX_PAYLOAD.
    let len = (address_len + tlv_len) as u16;
    out.reserve(V2_HEADER + usize::from(len));
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION << 4 | V2_CMD_PROXY);
    out.push(family);
    out.extend_from_slice(&len.to_be_bytes());
    for ip in [s, d] {
        match ip {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    for (kind, value) in tlvs {
        out.push(kind);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::fuzzing;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(src: &str, dst: &str, consumed: usize) -> Parsed {
        Parsed::Header {
            header: ProxyHeader {
                source: Some(addr(src)),
                destination: Some(addr(dst)),
            },
            consumed,
        }
    }

    fn unknown(consumed: usize) -> Parsed {
        Parsed::Header {
            header: ProxyHeader {
                source: None,
                destination: None,
            },
            consumed,
        }
    }

    /// Checks a header the way the data plane will see it: every prefix needs
    /// more, every split into two appended reads gives the same answer, and
    /// bytes after it are not looked at.
    fn check_stream(bytes: &[u8], accept: Accept, want: Parsed) {
        assert_eq!(
            parse(bytes, accept),
            want,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        for n in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..n], accept),
                Parsed::NeedMore,
                "prefix {n} of {bytes:?}"
            );
        }
        for split in 0..=bytes.len() {
            let mut buf = bytes[..split].to_vec();
            let _ = parse(&buf, accept);
            buf.extend_from_slice(&bytes[split..]);
            buf.extend_from_slice(b"\x16\x03\x01 and the client's own bytes");
            assert_eq!(parse(&buf, accept), want);
        }
        fuzzing::proxy(bytes);
    }

    // The examples and limits of proxy-protocol.txt §2.1.
    const SPEC_TCP4: &str = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    const SPEC_TCP4_MAX: &str = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    const SPEC_TCP6_MAX: &str = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                                 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    const SPEC_UNKNOWN: &str = "PROXY UNKNOWN\r\n";
    const SPEC_UNKNOWN_MAX: &str = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                                    ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

    #[test]
    fn v1_spec_examples() {
        assert_eq!(
            (
                SPEC_TCP4_MAX.len(),
                SPEC_TCP6_MAX.len(),
                SPEC_UNKNOWN.len(),
                SPEC_UNKNOWN_MAX.len()
            ),
            (56, 104, 15, 107)
        );
        let request = format!("{SPEC_TCP4}GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
        assert_eq!(
            parse(request.as_bytes(), Accept::V1),
            header("192.168.0.1:56324", "192.168.0.11:443", SPEC_TCP4.len())
        );
        for accept in [Accept::V1, Accept::Any] {
            check_stream(
                SPEC_TCP4.as_bytes(),
                accept,
                header("192.168.0.1:56324", "192.168.0.11:443", SPEC_TCP4.len()),
            );
            check_stream(
                SPEC_TCP4_MAX.as_bytes(),
                accept,
                header("255.255.255.255:65535", "255.255.255.255:65535", 56),
            );
            let max6 = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
            check_stream(SPEC_TCP6_MAX.as_bytes(), accept, header(max6, max6, 104));
            check_stream(SPEC_UNKNOWN.as_bytes(), accept, unknown(15));
            check_stream(SPEC_UNKNOWN_MAX.as_bytes(), accept, unknown(107));
        }
        let tcp6 = "PROXY TCP6 2001:db8::1 ::ffff:192.0.2.7 0 8443\r\n";
        check_stream(
            tcp6.as_bytes(),
            Accept::Any,
            header("[2001:db8::1]:0", "[::ffff:192.0.2.7]:8443", tcp6.len()),
        );
    }

    #[test]
    fn v1_rejects_what_the_spec_forbids() {
        let cases = [
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
                "LF without CR in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX",
                "CR without LF in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1\t192.168.0.11 56324 443\r\n",
                "non-printable byte in PROXY v1 line",
            ),
            (
                "PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
                "unknown protocol in PROXY v1 line",
            ),
            (
                "PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n",
                "unknown protocol in PROXY v1 line",
            ),
            (
                "PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n",
                "unknown protocol in PROXY v1 line",
            ),
            ("PROXY UNKNOWNX\r\n", "unknown protocol in PROXY v1 line"),
            ("PROXY \r\n", "unknown protocol in PROXY v1 line"),
            (
                "PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
                "PROXY v1 line needs exactly four fields after the protocol",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
                "PROXY v1 line needs exactly four fields after the protocol",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",
                "PROXY v1 line needs exactly four fields after the protocol",
            ),
            (
                "PROXY TCP4 192.168.00.1 192.168.0.11 56324 443\r\n",
                "bad address in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0 192.168.0.11 56324 443\r\n",
                "bad address in PROXY v1 line",
            ),
            (
                "PROXY TCP4 ::1 ::1 56324 443\r\n",
                "bad address in PROXY v1 line",
            ),
            (
                "PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n",
                "bad address in PROXY v1 line",
            ),
            (
                "PROXY TCP6 [::1] ::1 56324 443\r\n",
                "bad address in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
                "bad port in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
                "bad port in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 +5 443\r\n",
                "bad port in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
                "bad port in PROXY v1 line",
            ),
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 5 00\r\n",
                "bad port in PROXY v1 line",
            ),
            (
                "PROXYTCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
                "not a PROXY header",
            ),
            ("PROXX", "not a PROXY header"),
            ("GET / HTTP/1.1\r\n", "not a PROXY header"),
        ];
        for (line, why) in cases {
            assert_eq!(
                parse(line.as_bytes(), Accept::Any),
                Parsed::Invalid(why),
                "{line:?}"
            );
            fuzzing::proxy(line.as_bytes());
        }
        // Oversize: no CRLF within 107 bytes, or a CR at the 107th.
        let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
        let why = Parsed::Invalid("PROXY v1 line longer than 107 bytes");
        assert_eq!(parse(long.as_bytes(), Accept::V1), why);
        assert_eq!(parse(&long.as_bytes()[..V1_MAX_LEN], Accept::V1), why);
        assert_eq!(
            parse(&long.as_bytes()[..V1_MAX_LEN - 1], Accept::V1),
            Parsed::NeedMore
        );
        let cr_too_late = format!("{}\r\n", &long[..V1_MAX_LEN - 1]);
        assert_eq!(parse(cr_too_late.as_bytes(), Accept::V1), why);
    }

    #[test]
    fn version_must_be_accepted() {
        let mut v2 = Vec::new();
        encode_v2(
            addr("192.0.2.1:1000"),
            addr("192.0.2.2:443"),
            None,
            None,
            &mut v2,
        );
        for n in 1..=v2.len() {
            assert_eq!(
                parse(&v2[..n], Accept::V1),
                Parsed::Invalid("not a PROXY v1 header")
            );
        }
        for n in 1..=SPEC_TCP4.len() {
            assert_eq!(
                parse(&SPEC_TCP4.as_bytes()[..n], Accept::V2),
                Parsed::Invalid("not a PROXY v2 header")
            );
        }
        assert!(matches!(parse(&v2, Accept::V2), Parsed::Header { .. }));
        assert!(matches!(parse(&v2, Accept::Any), Parsed::Header { .. }));
        for accept in [Accept::V1, Accept::V2, Accept::Any] {
            assert_eq!(parse(b"", accept), Parsed::NeedMore);
        }
    }

    #[test]
    fn garbage_is_invalid_at_once() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            &[0x16, 0x03, 0x01, 0x02, 0x00],
            b"SSH-2.0-x\r\n",
            b"\r\n\r\n\r\n",
            b"\r\n\r\n\x00\r\nQUIT\r",
            b"\x00",
        ];
        for case in cases {
            assert!(
                matches!(parse(case, Accept::Any), Parsed::Invalid(_)),
                "{case:?}"
            );
            fuzzing::proxy(case);
        }
        // A first byte that cannot start either version is enough to decide.
        assert_eq!(
            parse(b"G", Accept::Any),
            Parsed::Invalid("not a PROXY header")
        );
    }

    #[test]
    fn encode_v1_matches_the_spec_example() {
        let mut out = Vec::new();
        encode_v1(
            addr("192.168.0.1:56324"),
            addr("192.168.0.11:443"),
            &mut out,
        );
        assert_eq!(out, SPEC_TCP4.as_bytes());
        out.clear();
        encode_v1(
            addr("[2001:db8::1]:56324"),
            addr("[2001:db8:0:0:1::2]:443"),
            &mut out,
        );
        assert_eq!(
            out,
            b"PROXY TCP6 2001:db8::1 2001:db8::1:0:0:2 56324 443\r\n"
        );
        out.clear();
        // Mixed families: the IPv4 one is mapped, and written without a dotted tail.
        encode_v1(
            addr("192.168.0.1:56324"),
            addr("[2001:db8::2]:443"),
            &mut out,
        );
        assert_eq!(out, b"PROXY TCP6 ::ffff:c0a8:1 2001:db8::2 56324 443\r\n");
        check_stream(
            &out,
            Accept::V1,
            header("[::ffff:192.168.0.1]:56324", "[2001:db8::2]:443", out.len()),
        );
        out.clear();
        let max = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        encode_v1(addr(max), addr(max), &mut out);
        assert_eq!(out, SPEC_TCP6_MAX.as_bytes());
    }

    #[test]
    fn v6_text_compresses_the_longest_zero_run() {
        let cases = [
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ];
        for (ip, want) in cases {
            let mut out = String::new();
            write_v6_hex(&mut out, ip.parse().unwrap());
            assert_eq!(out, want);
            assert_eq!(
                out.parse::<Ipv6Addr>().unwrap(),
                ip.parse::<Ipv6Addr>().unwrap()
            );
        }
    }

    #[test]
    fn encode_v2_ipv4_layout() {
        let mut out = Vec::new();
        encode_v2(
            addr("192.168.0.1:56324"),
            addr("192.168.0.11:443"),
            None,
            None,
            &mut out,
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12]);
        want.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 11]);
        want.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
        assert_eq!(out, want);
        check_stream(
            &out,
            Accept::V2,
            header("192.168.0.1:56324", "192.168.0.11:443", 28),
        );

        out.clear();
        encode_v2(
            addr("192.168.0.1:56324"),
            addr("192.168.0.11:443"),
            Some("example.com"),
            Some(b"h2"),
            &mut out,
        );
        want[15] = 12 + 3 + 2 + 3 + 11;
        want.extend_from_slice(&[PP2_TYPE_ALPN, 0, 2, b'h', b'2']);
        want.extend_from_slice(&[PP2_TYPE_AUTHORITY, 0, 11]);
        want.extend_from_slice(b"example.com");
        assert_eq!(out, want);
        check_stream(
            &out,
            Accept::Any,
            header("192.168.0.1:56324", "192.168.0.11:443", want.len()),
        );
        assert_eq!(
            v2_tlvs(&out),
            vec![
                (PP2_TYPE_ALPN, b"h2".to_vec()),
                (PP2_TYPE_AUTHORITY, b"example.com".to_vec())
            ]
        );
    }

    #[test]
    fn encode_v2_ipv6_round_trips() {
        let (src, dst) = ("[2001:db8::1]:40000", "[2001:db8::2]:443");
        for (authority, alpn) in [
            (None, None),
            (Some("www.example.com"), None),
            (None, Some(&b"http/1.1"[..])),
            (Some("www.example.com"), Some(&b"h2"[..])),
        ] {
            let mut out = Vec::new();
            encode_v2(addr(src), addr(dst), authority, alpn, &mut out);
            assert_eq!(&out[12..14], &[0x21, 0x21]);
            let tlv_len = authority.map_or(0, |a| 3 + a.len()) + alpn.map_or(0, |a| 3 + a.len());
            assert_eq!(out.len(), 16 + 36 + tlv_len);
            check_stream(&out, Accept::V2, header(src, dst, out.len()));
            let tlvs = v2_tlvs(&out);
            assert_eq!(
                tlvs.len(),
                usize::from(authority.is_some()) + usize::from(alpn.is_some())
            );
        }
        // Mixed families: INET6 with the IPv4 address mapped.
        let mut out = Vec::new();
        encode_v2(
            addr("[2001:db8::1]:1"),
            addr("192.0.2.1:2"),
            None,
            None,
            &mut out,
        );
        check_stream(
            &out,
            Accept::V2,
            header("[2001:db8::1]:1", "[::ffff:192.0.2.1]:2", 52),
        );
    }

    #[test]
    fn encode_v2_leaves_out_values_that_cannot_be_names() {
        let long = "a".repeat(MAX_TLV_VALUE + 1);
        let mut out = Vec::new();
        encode_v2(
            addr("192.0.2.1:1"),
            addr("192.0.2.2:2"),
            Some(&long),
            Some(b""),
            &mut out,
        );
        assert_eq!(out.len(), 28);
        out.clear();
        let longest = "a".repeat(MAX_TLV_VALUE);
        encode_v2(
            addr("192.0.2.1:1"),
            addr("192.0.2.2:2"),
            Some(&longest),
            Some(longest.as_bytes()),
            &mut out,
        );
        check_stream(
            &out,
            Accept::V2,
            header("192.0.2.1:1", "192.0.2.2:2", 28 + 2 * 258),
        );
    }

    /// A v2 header with this command/version byte, family byte and payload.
    fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[ver_cmd, family]);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn v2_local_and_unspecified_addresses() {
        // LOCAL: health checks from the proxy itself; the family is ignored.
        check_stream(&v2(0x20, 0x00, &[]), Accept::V2, unknown(16));
        check_stream(&v2(0x20, 0x11, &[1; 12]), Accept::V2, unknown(28));
        check_stream(&v2(0x20, 0xff, &[1; 3]), Accept::Any, unknown(19));
        // PROXY with AF_UNSPEC, UDP and AF_UNIX: fall back to the real endpoints.
        check_stream(&v2(0x21, 0x00, &[9; 7]), Accept::V2, unknown(23));
        check_stream(&v2(0x21, 0x12, &[1; 12]), Accept::V2, unknown(28));
        check_stream(&v2(0x21, 0x22, &[1; 36]), Accept::V2, unknown(52));
        check_stream(&v2(0x21, 0x31, &[b'/'; 216]), Accept::V2, unknown(232));
        check_stream(&v2(0x21, 0x32, &[b'/'; 216]), Accept::V2, unknown(232));
        // Unknown TLVs are skipped.
        let mut payload = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0, 81];
        payload.extend_from_slice(&[0xe0, 0, 3, 1, 2, 3, 0x04, 0, 0]);
        check_stream(
            &v2(0x21, 0x11, &payload),
            Accept::V2,
            header("10.0.0.1:80", "10.0.0.2:81", 37),
        );
    }

    #[test]
    fn v2_invalid_headers() {
        let v4 = [10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0, 81];
        let with_tlv = |tlv: &[u8]| [&v4[..], tlv].concat();
        let cases = [
            (
                v2(0x11, 0x11, &v4),
                "PROXY v2 header with a version other than 2",
            ),
            (
                v2(0x31, 0x11, &v4),
                "PROXY v2 header with a version other than 2",
            ),
            (v2(0x22, 0x11, &v4), "unknown PROXY v2 command"),
            (v2(0x2f, 0x11, &v4), "unknown PROXY v2 command"),
            (
                v2(0x21, 0x13, &v4),
                "unknown PROXY v2 address family or transport",
            ),
            (
                v2(0x21, 0x41, &v4),
                "unknown PROXY v2 address family or transport",
            ),
            (
                v2(0x21, 0x01, &v4),
                "unknown PROXY v2 address family or transport",
            ),
            (
                v2(0x21, 0x10, &v4),
                "unknown PROXY v2 address family or transport",
            ),
            (
                v2(0x21, 0x11, &v4[..11]),
                "PROXY v2 address block shorter than its family needs",
            ),
            (
                v2(0x21, 0x21, &[0; 35]),
                "PROXY v2 address block shorter than its family needs",
            ),
            (
                v2(0x21, 0x31, &[0; 215]),
                "PROXY v2 address block shorter than its family needs",
            ),
            (v2(0x21, 0x11, &with_tlv(&[1, 0])), "truncated PROXY v2 TLV"),
            (
                v2(0x21, 0x11, &with_tlv(&[1, 0, 3, b'h'])),
                "PROXY v2 TLV longer than the header",
            ),
            (
                v2(0x21, 0x11, &with_tlv(&[3, 0, 2, 0, 0])),
                "PROXY v2 CRC32C TLV is not 4 bytes",
            ),
            (
                v2(0x21, 0x11, &with_tlv(&[3, 0, 4, 0, 0, 0, 0])),
                "PROXY v2 CRC32C mismatch",
            ),
            (
                v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD + 1]),
                "PROXY v2 header longer than we accept",
            ),
            (
                v2(0x21, 0x11, &[0xff; 0xffff]),
                "PROXY v2 header longer than we accept",
            ),
        ];
        for (bytes, why) in cases {
            assert_eq!(parse(&bytes, Accept::V2), Parsed::Invalid(why), "{why}");
            fuzzing::proxy(&bytes);
        }
        // Oversize is refused from the 16-byte fixed header alone.
        let big = v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD + 1]);
        assert_eq!(
            parse(&big[..16], Accept::Any),
            Parsed::Invalid("PROXY v2 header longer than we accept")
        );
        // The largest accepted header.
        let max = v2(
            0x21,
            0x11,
            &with_tlv(&[[4, 0x0f, 0xf1].as_slice(), &[0; 0x0ff1]].concat()),
        );
        assert_eq!(max.len(), MAX_HEADER_LEN);
        assert_eq!(
            parse(&max, Accept::V2),
            header("10.0.0.1:80", "10.0.0.2:81", MAX_HEADER_LEN)
        );
    }

    #[test]
    fn crc32c_is_checked_when_sent() {
        // The check value of CRC-32C (RFC 3720 B.4 / the "123456789" vector).
        assert_eq!(!crc32c_update(!0, b"123456789"), 0xE306_9283);
        let mut payload = vec![
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
            0,
            80,
            0,
            81,
            PP2_TYPE_CRC32C,
            0,
            4,
            0,
            0,
            0,
            0,
        ];
        payload.extend_from_slice(&[PP2_TYPE_AUTHORITY, 0, 1, b'a']);
        let mut bytes = v2(0x21, 0x11, &payload);
        let crc = !crc32c_update(!0, &bytes);
        bytes[31..35].copy_from_slice(&crc.to_be_bytes());
        check_stream(
            &bytes,
            Accept::V2,
            header("10.0.0.1:80", "10.0.0.2:81", bytes.len()),
        );
        let mut flipped = bytes.clone();
        flipped[16] ^= 1;
        assert_eq!(
            parse(&flipped, Accept::V2),
            Parsed::Invalid("PROXY v2 CRC32C mismatch")
        );
    }

    #[test]
    fn a_full_buffer_always_gets_an_answer() {
        for first in [&b"PROXY "[..], &V2_SIGNATURE] {
            let mut buf = first.to_vec();
            buf.resize(MAX_HEADER_LEN, b'1');
            for accept in [Accept::V1, Accept::V2, Accept::Any] {
                assert_ne!(parse(&buf, accept), Parsed::NeedMore);
            }
        }
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::from((Ipv4Addr::from(ip), port))),
            (any::<u128>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
            // Sparse IPv6 addresses exercise the `::` compression.
            (
                proptest::collection::vec(prop_oneof![Just(0u16), any::<u16>()], 8),
                any::<u16>()
            )
                .prop_map(|(g, port)| {
                    let ip = Ipv6Addr::new(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
                    SocketAddr::from((ip, port))
                }),
        ]
    }

    /// What a header carrying `addr` for this pair parses back to.
    fn as_sent(addr: SocketAddr, both_v4: bool) -> SocketAddr {
        match addr.ip() {
            IpAddr::V4(v4) if !both_v4 => SocketAddr::from((v4.to_ipv6_mapped(), addr.port())),
            _ => addr,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn encodings_round_trip(
            src in socket_addr(),
            dst in socket_addr(),
            authority in proptest::option::of("[a-z0-9.-]{0,300}"),
            alpn in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        ) {
            let both_v4 = src.is_ipv4() && dst.is_ipv4();
            let want = ProxyHeader {
                source: Some(as_sent(src, both_v4)),
                destination: Some(as_sent(dst, both_v4)),
            };
            let mut v1 = Vec::new();
            encode_v1(src, dst, &mut v1);
            prop_assert!(v1.len() <= V1_MAX_LEN);
            prop_assert_eq!(parse(&v1, Accept::V1), Parsed::Header { header: want, consumed: v1.len() });
            let mut out = Vec::new();
            encode_v2(src, dst, authority.as_deref(), alpn.as_deref(), &mut out);
            prop_assert_eq!(parse(&out, Accept::Any), Parsed::Header { header: want, consumed: out.len() });
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzzing::proxy(&data);
        }

        #[test]
        fn random_v1_lines_never_panic(line in "PROXY (TCP4|TCP6|UNKNOWN)[ 0-9a-fA-F.:]{0,110}(\r\n)?") {
            fuzzing::proxy(line.as_bytes());
        }

        #[test]
        fn random_v2_payloads_never_panic(
            ver_cmd in prop_oneof![Just(0x20u8), Just(0x21), any::<u8>()],
            family in prop_oneof![Just(0x11u8), Just(0x21), Just(0x00), Just(0x31), any::<u8>()],
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            fuzzing::proxy(&v2(ver_cmd, family, &payload));
        }
    }
}
