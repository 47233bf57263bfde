//! Sans-IO protocol parsers for what a connection carries before it is spliced:
//! the TLS ClientHello peeked for SNI routing ([`sni`]) and PROXY protocol
//! headers, read from trusted upstreams and written to backends
//! ([`proxy_protocol`]).
//!
//! Owns: byte layouts and their validation, nothing else. Each parser is a
//! pure function of the bytes read so far and answers in three ways (found,
//! definitely not, need more), so the data plane can call it again after every
//! read and the tests can feed it every prefix and every split point.
//!
//! Must never: touch a socket, a clock or any shared state; allocate more than
//! the bounded message it parses; or panic, whatever a client sends. Policy
//! (timeouts, whom to trust, which route matches, what to count) belongs to
//! the callers.

pub mod proxy_protocol;
pub mod sni;

/// Entry points for the fuzz targets in `tests/fuzz`; not a public API. Each
/// runs one parser on arbitrary bytes and panics if an invariant the rest of
/// the crate relies on does not hold.
#[doc(hidden)]
pub mod fuzzing {
    use super::proxy_protocol::{self, Accept, Parsed, ProxyHeader};
    use super::sni::{self, Peek};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// The prefix lengths of an `n`-byte input to re-check: all of them for
    /// short inputs, else a spread that still includes both ends, so a fuzz
    /// execution stays linear-ish in the input length.
    fn prefix_lengths(n: usize) -> impl Iterator<Item = usize> {
        // 512: every prefix of a typical ClientHello (200-520 bytes, see
        // tests/fixtures/tls) and of any PROXY header up to the AF_UNIX ones.
        const ALL_UP_TO: usize = 512;
        let step = if n <= ALL_UP_TO { 1 } else { n / ALL_UP_TO * 4 };
        (0..=n).filter(move |&i| n <= ALL_UP_TO || i < 64 || i + 64 > n || i % step == 0)
    }

    /// Checks that, over growing prefixes, answers go from "need more" to one
    /// final answer and never change after it. Returns the whole input's answer.
    fn settles<T: PartialEq + std::fmt::Debug>(
        data: &[u8],
        need_more: &T,
        answer: impl Fn(&[u8]) -> T,
    ) -> T {
        let mut settled: Option<(usize, T)> = None;
        for n in prefix_lengths(data.len()) {
            let got = answer(&data[..n]);
            match &settled {
                Some((at, first)) => assert_eq!(
                    &got, first,
                    "prefix of {n} bytes changed the answer given at {at} bytes"
                ),
                None if got != *need_more => settled = Some((n, got)),
                None => {}
            }
        }
        let whole = answer(data);
        if let Some((_, first)) = settled {
            assert_eq!(whole, first);
        }
        whole
    }

    /// The ClientHello peek on arbitrary bytes.
    pub fn sni(data: &[u8]) {
        let whole = settles(data, &Peek::NeedMore, sni::peek);
        if data.len() >= sni::MAX_CLIENT_HELLO {
            assert_ne!(whole, Peek::NeedMore, "a full buffer must get an answer");
        }
        let Peek::Hello(info) = &whole else {
            return;
        };
        if let Some(name) = &info.sni {
            assert_eq!(sni::normalize_host(name).as_deref(), Some(name.as_str()));
        }
        assert!(info.alpn.len() <= sni::MAX_ALPN_PROTOCOLS);
        assert!(info.alpn.iter().all(|p| !p.is_empty()));
        // Any framing of the same handshake message must peek alike.
        let message = sni::handshake_message(data).expect("a Hello has a message");
        let sizes: Vec<usize> = data
            .iter()
            .take(8)
            .map(|&b| 1 + usize::from(b) * 37)
            .collect();
        let minor = data.get(2).copied().unwrap_or(1);
        let framed = sni::frame_records(&message, &sizes, minor);
        let again = sni::peek(&framed);
        if framed.len() <= sni::MAX_CLIENT_HELLO {
            assert_eq!(again, whole, "re-framed into records of {sizes:?}");
        } else {
            assert!(matches!(again, Peek::Malformed(_)), "{again:?}");
        }
    }

    /// The PROXY header parser on arbitrary bytes, and both encoders with
    /// addresses and TLVs taken from them.
    pub fn proxy(data: &[u8]) {
        for accept in [Accept::V1, Accept::V2, Accept::Any] {
            let parse = |buf: &[u8]| proxy_protocol::parse(buf, accept);
            let whole = settles(data, &Parsed::NeedMore, parse);
            if data.len() >= proxy_protocol::MAX_HEADER_LEN {
                assert_ne!(whole, Parsed::NeedMore, "a full buffer must get an answer");
            }
            if let Parsed::Header { header, consumed } = whole {
                assert!(consumed <= data.len() && consumed <= proxy_protocol::MAX_HEADER_LEN);
                assert_eq!(header.source.is_some(), header.destination.is_some());
                assert_eq!(parse(&data[..consumed]), whole);
                assert_eq!(parse(&data[..consumed - 1]), Parsed::NeedMore);
                // What one version accepts, `Any` accepts alike.
                assert_eq!(proxy_protocol::parse(data, Accept::Any), whole);
            }
        }
        round_trips(data);
    }

    /// Encodes a header from addresses and names drawn from `data` and checks
    /// it parses back to the same addresses, with the same TLVs.
    fn round_trips(data: &[u8]) {
        let mut bytes = data.iter().copied().chain(std::iter::repeat(0));
        let mut next = || bytes.next().unwrap_or(0);
        let mut ip = |v6: bool| -> IpAddr {
            if v6 {
                IpAddr::V6(Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|_| next())))
            } else {
                IpAddr::V4(Ipv4Addr::from(std::array::from_fn::<u8, 4, _>(|_| next())))
            }
        };
        let (v6_src, v6_dst) = match data.first().copied().unwrap_or(0) % 4 {
            0 => (false, false),
            1 => (true, true),
            2 => (false, true),
            _ => (true, false),
        };
        let (src_ip, dst_ip) = (ip(v6_src), ip(v6_dst));
        let tail = data.get(40..).unwrap_or_default();
        let ports = |at: usize| u16::from_be_bytes([tail.get(at).copied().unwrap_or(0), 0]);
        let src = SocketAddr::new(src_ip, ports(0).wrapping_add(1));
        let dst = SocketAddr::new(dst_ip, 443u16.wrapping_mul(ports(1) | 1));
        let split = tail.len() / 2;
        let authority = std::str::from_utf8(&tail[..split]).ok();
        let alpn = Some(&tail[split..]).filter(|a| !a.is_empty());

        let expected = |addr: SocketAddr| {
            let both_v4 = src.is_ipv4() && dst.is_ipv4();
            match addr.ip() {
                IpAddr::V4(v4) if !both_v4 => {
                    SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port())
                }
                _ => addr,
            }
        };
        let want = ProxyHeader {
            source: Some(expected(src)),
            destination: Some(expected(dst)),
        };

        let mut v1 = Vec::new();
        proxy_protocol::encode_v1(src, dst, &mut v1);
        assert!(
            v1.len() <= proxy_protocol::V1_MAX_LEN,
            "{}",
            String::from_utf8_lossy(&v1)
        );
        let consumed = v1.len();
        v1.extend_from_slice(data);
        assert_eq!(
            proxy_protocol::parse(&v1, Accept::V1),
            Parsed::Header {
                header: want,
                consumed
            },
            "{}",
            String::from_utf8_lossy(&v1[..consumed])
        );

        let mut v2 = Vec::new();
        proxy_protocol::encode_v2(src, dst, authority, alpn, &mut v2);
        let consumed = v2.len();
        let tlvs = proxy_protocol::v2_tlvs(&v2);
        v2.extend_from_slice(data);
        assert_eq!(
            proxy_protocol::parse(&v2, Accept::V2),
            Parsed::Header {
                header: want,
                consumed
            }
        );
        fn sent(value: Option<&[u8]>) -> Option<&[u8]> {
            value.filter(|v| !v.is_empty() && v.len() <= proxy_protocol::MAX_TLV_VALUE)
        }
        let find = |kind: u8| tlvs.iter().find(|(k, _)| *k == kind).map(|(_, v)| &v[..]);
        assert_eq!(find(proxy_protocol::PP2_TYPE_ALPN), sent(alpn));
        assert_eq!(
            find(proxy_protocol::PP2_TYPE_AUTHORITY),
            sent(authority.map(str::as_bytes))
        );
    }
}
