//! IP networks for `allow`, `deny` and `trusted_proxies`: `10.0.0.0/8`,
//! `"::1/128"`, or a bare address (one host). Host names are refused, not
//! resolved: a DNS answer that changes would silently change who may connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_yaml::Value;

use super::address::is_hostname;
use super::{Bad, ListOf, ReadFn};
use crate::config::model::Cidr;

const CIDR_FIX: &str =
    "write an address or a network, e.g. 192.0.2.1, 10.0.0.0/8 or \"::1/128\" (quote IPv6)";

/// A list of networks; absent or empty is no networks.
pub(in crate::config) const LIST: ListOf<'static, ReadFn<Cidr>> = ListOf {
    item: cidr,
    not_a_list: &not_a_list,
    empty: None,
};

fn not_a_list(value: &Value) -> String {
    match value {
        Value::String(text) => format!("write a list, e.g. [{}]", text.trim()),
        _ => "write a list of addresses or networks, e.g. [10.0.0.0/8, \"::1/128\"]".to_owned(),
    }
}

/// One network of a list.
pub(in crate::config) fn cidr(value: &Value) -> Result<Cidr, Bad> {
    match value {
        Value::String(text) => {
            parse(text).map_err(|(problem, fix)| Bad::new(Some(text), problem, fix))
        }
        other => Err(Bad::not_a(other, "an IP address or network", CIDR_FIX)),
    }
}

/// Parses a network, refusing host bits (`10.0.0.1/8` is more likely a typo
/// for one host than meant as `10.0.0.0/8`). Fails with (problem, fix).
fn parse(text: &str) -> Result<Cidr, (String, String)> {
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let Ok(addr) = address.parse::<IpAddr>() else {
        let problem = format!("is not an IP network ({address:?} is not an IP address)");
        let fix = if is_hostname(address) {
            format!("{CIDR_FIX}; host names are not allowed")
        } else {
            CIDR_FIX.to_owned()
        };
        return Err((problem, fix));
    };
    let (max, family, example) = if addr.is_ipv4() {
        (32, 4, "10.0.0.0/8")
    } else {
        (128, 6, "fd00::/8")
    };
    let prefix = match prefix {
        None => max,
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err((
                format!("is not an IP network (prefix length {p:?} is not a number)"),
                CIDR_FIX.to_owned(),
            ));
        }
        Some(p) => match p.parse::<u8>() {
            Ok(prefix) if prefix <= max => prefix,
            _ => {
                return Err((
                    format!("has prefix length /{p}, out of range"),
                    format!(
                        "use a prefix length from 0 to {max} for an IPv{family} network, e.g. {example}"
                    ),
                ));
            }
        },
    };
    let network = network_address(addr, prefix);
    if network != addr {
        return Err((
            "has host bits set".to_owned(),
            format!("write the network, {network}/{prefix}, or {addr} alone for that one address"),
        ));
    }
    // WHY: Cidr::contains compares IPv4-mapped clients as IPv4, so a mapped
    // network would never match anyone; name the IPv4 network instead.
    if let IpAddr::V6(v6) = addr {
        if let Some(v4) = v6.to_ipv4_mapped().filter(|_| prefix >= 96) {
            return Err((
                "is an IPv4-mapped IPv6 network, which never matches (IPv4 clients are compared as IPv4)".to_owned(),
                format!("write it as {v4}/{}", prefix - 96),
            ));
        }
    }
    Ok(Cidr {
        addr: network,
        prefix,
    })
}

/// `addr` with every bit after the first `prefix` cleared.
fn network_address(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn cidrs_parse_to_their_network() {
        let cidr = |s: &str| parse(s).map(|c| c.to_string()).map_err(|e| e.0);
        assert_eq!(cidr("10.0.0.0/8"), Ok("10.0.0.0/8".into()));
        assert_eq!(cidr(" 192.0.2.7 "), Ok("192.0.2.7/32".into()));
        assert_eq!(cidr("0.0.0.0/0"), Ok("0.0.0.0/0".into()));
        assert_eq!(cidr("::1"), Ok("::1/128".into()));
        assert_eq!(cidr("[::1]/128"), Ok("::1/128".into()));
        assert_eq!(cidr("::/0"), Ok("::/0".into()));
        assert_eq!(cidr("2001:DB8::/32"), Ok("2001:db8::/32".into()));
        assert_eq!(cidr("fe80::/10"), Ok("fe80::/10".into()));
        let net = parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_cidrs_say_why() {
        let bad = |s: &str| parse(s).unwrap_err();
        assert_eq!(
            bad("10.0.0.1/8"),
            (
                "has host bits set".to_owned(),
                "write the network, 10.0.0.0/8, or 10.0.0.1 alone for that one address".to_owned()
            )
        );
        assert!(bad("fe80::1/10")
            .1
            .starts_with("write the network, fe80::/10,"));
        assert!(bad("10.0.0.0/33")
            .0
            .starts_with("has prefix length /33, out of range"));
        assert!(bad("::/129").1.contains("from 0 to 128"));
        assert!(bad("10.0.0.0/999").0.contains("out of range"));
        for odd in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.0/x",
        ] {
            assert!(
                bad(odd).0.contains("is not a number"),
                "{odd}: {:?}",
                bad(odd)
            );
        }
        for odd in [
            "",
            "/8",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            "1.2.3.4.5",
            ":::1",
            "10.0.0.0-10.0.0.9",
        ] {
            assert!(
                bad(odd).0.starts_with("is not an IP network"),
                "{odd}: {:?}",
                bad(odd)
            );
        }
        assert!(bad("lb.internal").1.ends_with("host names are not allowed"));
        assert_eq!(bad("::ffff:10.0.0.0/104").1, "write it as 10.0.0.0/8");
        assert_eq!(bad("::ffff:192.0.2.1").1, "write it as 192.0.2.1/32");
        assert_eq!(
            network_address("10.1.2.3".parse().unwrap(), 0),
            IpAddr::from([0, 0, 0, 0])
        );
        assert_eq!(
            network_address("10.1.2.3".parse().unwrap(), 32),
            IpAddr::from([10, 1, 2, 3])
        );
        assert_eq!(
            network_address("10.1.2.3".parse().unwrap(), 12),
            IpAddr::from([10, 0, 0, 0])
        );
        assert_eq!(
            network_address("2001:db8::1".parse().unwrap(), 16),
            "2001::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_list_of_networks_reports_each_bad_one() {
        assert_eq!(read(&LIST, "[]").map(|l| l.len()), Ok(0));
        assert_eq!(
            read(&LIST, "10.0.0.0/8"),
            Err(r#""10.0.0.0/8" is a string, not a list: write a list, e.g. [10.0.0.0/8]"#.into())
        );
        let shown = read(&LIST, "[10.0.0.0/8, lb.internal, 7]").unwrap_err();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2, "{shown}");
        assert!(lines[0].starts_with(r#"[1]: "lb.internal" is not an IP network"#));
        assert!(lines[1].starts_with(r#"[2]: "7" is a number, not an IP address or network"#));
    }
}
