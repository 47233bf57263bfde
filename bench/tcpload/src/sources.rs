//! Parsing of `--sources` and round-robin choice of the source address.
//!
//! One (source IP, destination IP:port) pair has only the ephemeral port
//! range (~28k ports) to draw from, so tens of thousands of connections to
//! one listener need several source addresses. All of 127.0.0.0/8 is local
//! on Linux, so loopback runs can bind to any of it without setup.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

/// Most addresses one `--sources` value may expand to; guards against a
/// typo such as `1.0.0.0-9.0.0.0` eating memory.
const MAX_SOURCES: u64 = 1 << 20;

/// Parses `A-B` (inclusive IPv4 range), `A,B,C`, or a mix such as
/// `127.0.0.2-127.0.0.9,127.0.1.1`.
pub fn parse(spec: &str) -> Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a
                    .trim()
                    .parse()
                    .with_context(|| format!("range start {a:?} in --sources {spec:?}"))?;
                let b: Ipv4Addr = b
                    .trim()
                    .parse()
                    .with_context(|| format!("range end {b:?} in --sources {spec:?}"))?;
                let (lo, hi) = (u32::from(a), u32::from(b));
                if lo > hi {
                    bail!("--sources range {part:?} ends before it starts");
                }
                if (hi - lo) as u64 + 1 + out.len() as u64 > MAX_SOURCES {
                    bail!("--sources {spec:?} has more than {MAX_SOURCES} addresses");
                }
                out.extend((lo..=hi).map(Ipv4Addr::from));
            }
            None => {
                let a: Ipv4Addr = part
                    .parse()
                    .with_context(|| format!("address {part:?} in --sources {spec:?}"))?;
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        bail!("--sources {spec:?} names no address");
    }
    Ok(out)
}

/// Hands out source addresses round-robin; `None` everywhere when no
/// sources were given (the kernel picks).
#[derive(Clone, Debug)]
pub struct RoundRobin {
    addrs: Vec<Ipv4Addr>,
    next: usize,
}

impl RoundRobin {
    /// `start` offsets the rotation, so parallel event loops do not all
    /// begin on the same address.
    pub fn new(addrs: Vec<Ipv4Addr>, start: usize) -> Self {
        let next = if addrs.is_empty() {
            0
        } else {
            start % addrs.len()
        };
        RoundRobin { addrs, next }
    }

    pub fn next_addr(&mut self) -> Option<Ipv4Addr> {
        if self.addrs.is_empty() {
            return None;
        }
        let a = self.addrs[self.next];
        self.next = (self.next + 1) % self.addrs.len();
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_list() {
        let v = parse("127.0.0.2-127.0.0.250").unwrap();
        assert_eq!(v.len(), 249);
        assert_eq!(v[0], Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(v[248], Ipv4Addr::new(127, 0, 0, 250));

        let v = parse("127.0.0.2, 127.0.0.3,127.0.1.255-127.0.2.1").unwrap();
        assert_eq!(
            v,
            [
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 1, 255),
                Ipv4Addr::new(127, 0, 2, 0),
                Ipv4Addr::new(127, 0, 2, 1),
            ]
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(parse("127.0.0.9-127.0.0.2").is_err());
        assert!(parse("").is_err());
        assert!(parse("127.0.0.x").is_err());
        assert!(parse("1.0.0.0-9.0.0.0").is_err());
    }

    #[test]
    fn round_robin_wraps() {
        let addrs = parse("127.0.0.2-127.0.0.4").unwrap();
        let mut rr = RoundRobin::new(addrs, 4);
        let got: Vec<u8> = (0..4)
            .map(|_| rr.next_addr().unwrap().octets()[3])
            .collect();
        assert_eq!(got, [3, 4, 2, 3]);
        assert_eq!(RoundRobin::new(Vec::new(), 0).next_addr(), None);
    }
}
