//! Socket addresses: `host:port` for backends (a hostname is resolved, once,
//! through the [`Resolve`] function the caller gives) and `IP:port` for
//! listening (a name could resolve to an address this host does not own).
//! Every refusal says precisely what is wrong: no port, a URL, a bare IPv6.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde_yaml::Value;

use super::{Bad, Kind};

/// Resolves a backend `host`name with `port` to the one address to use.
pub(in crate::config) type Resolve<'a> = &'a dyn Fn(&str, u16) -> io::Result<SocketAddr>;

/// An address to bind: an IP literal and a port (0 = any free port). The
/// `&str` is an example address for the fix, e.g. `0.0.0.0:8080`.
pub(in crate::config) struct Listen<'a>(pub &'a str);

impl Kind for Listen<'_> {
    type Out = SocketAddr;

    fn read(&self, value: &Value) -> Result<SocketAddr, Bad> {
        let example = self.0;
        let fix = format!(
            "use IP:port, e.g. {example} or [::]:{}",
            example.rsplit(':').next().unwrap_or("8080")
        );
        let Value::String(text) = value else {
            return Err(Bad::not_a(value, "an address", fix));
        };
        match split(text.trim()) {
            Ok((Host::Ip(ip), port)) => Ok(SocketAddr::new(ip, port)),
            Ok((Host::Name(_), _)) => Err(Bad::new(
                Some(text),
                "is not a valid address (a listen address must be an IP, not a hostname)",
                fix,
            )),
            Err(detail) => Err(Bad::new(
                Some(text),
                format!("is not a valid address ({detail})"),
                fix,
            )),
        }
    }
}

/// A backend: IP:port or hostname:port, port 1..=65535. Hostnames are
/// resolved now, once; the first address is used. Reads as the name as
/// written (trimmed) and the address.
pub(in crate::config) struct Backend<'a>(pub Resolve<'a>);

impl Kind for Backend<'_> {
    type Out = (String, SocketAddr);

    fn read(&self, value: &Value) -> Result<(String, SocketAddr), Bad> {
        const FIX: &str = "use host:port, e.g. 127.0.0.1:9001, [::1]:9001 or backend.internal:9001";
        let Value::String(text) = value else {
            return Err(Bad::not_a(value, "an address", FIX));
        };
        let name = text.trim();
        let (host, port) = split(name).map_err(|detail| {
            Bad::new(
                Some(text),
                format!("is not a valid address ({detail})"),
                FIX,
            )
        })?;
        if port == 0 {
            return Err(Bad::new(
                Some(text),
                "is not a valid address (port 0 cannot be connected to)",
                "use the port the backend listens on, 1 to 65535",
            ));
        }
        let addr = match host {
            Host::Ip(ip) => SocketAddr::new(ip, port),
            Host::Name(host) => (self.0)(host, port).map_err(|e| {
                Bad::new(
                    Some(text),
                    format!("could not be resolved ({e})"),
                    "check the hostname and DNS, or use an IP address",
                )
            })?,
        };
        Ok((name.to_owned(), addr))
    }
}

#[derive(Debug, PartialEq)]
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Splits `host:port`, saying precisely what is wrong when it is not one.
fn split(text: &str) -> Result<(Host<'_>, u16), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((Host::Ip(addr.ip()), addr.port()));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "{scheme}:// is a URL scheme; write host:port, e.g. 10.0.0.5:8080"
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("no port".to_owned());
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("port {port} is above 65535"));
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok((Host::Ip(IpAddr::V6(ip)), port)),
            Err(_) => Err(format!("{inner:?} is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, e.g. [::1]:9001".to_owned());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        // Unreachable in practice (the whole string would have parsed), kept
        // so an odd form is never misread as a hostname.
        return Ok((Host::Ip(ip), port));
    }
    if is_hostname(host) {
        Ok((Host::Name(host), port))
    } else {
        Err(format!("{host:?} is neither an IP address nor a hostname"))
    }
}

/// RFC 1123-ish: dot-separated labels of letters, digits, '-' (and '_', which
/// internal DNS often has), and a last label that is not all digits so a
/// mistyped IPv4 address (`10.0.0.300`) is never sent to DNS as a name.
pub(in crate::config) fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    labels_ok
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn addresses_split_with_precise_reasons() {
        let ip = |text: &str| match split(text) {
            Ok((Host::Ip(ip), port)) => SocketAddr::new(ip, port),
            _ => panic!("{text} should be an IP address"),
        };
        assert_eq!(ip("0.0.0.0:8080"), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(ip("[::]:0"), "[::]:0".parse().unwrap());
        assert_eq!(ip("[::1]:9001"), "[::1]:9001".parse().unwrap());
        assert_eq!(
            split("db.internal:5432"),
            Ok((Host::Name("db.internal"), 5432))
        );
        assert_eq!(split("localhost:1"), Ok((Host::Name("localhost"), 1)));

        let reason = |text: &str| match split(text) {
            Err(reason) => reason,
            Ok(_) => panic!("{text} should be refused"),
        };
        assert_eq!(reason("0.0.0.0:99999"), "port 99999 is above 65535");
        assert_eq!(reason("127.0.0.1"), "no port");
        assert_eq!(reason("127.0.0.1:"), "port \"\" is not a number");
        assert_eq!(reason("127.0.0.1:+80"), "port \"+80\" is not a number");
        assert_eq!(reason("127.0.0.1:http"), "port \"http\" is not a number");
        assert!(reason("::1:9001").contains("needs brackets"));
        // Regression: a URL was answered with the IPv6 bracket hint.
        assert!(reason("http://10.0.0.5:8080").contains("write host:port"));
        assert!(reason("https://api.internal").contains("https:// is a URL scheme"));
        assert!(reason("[1.2.3.4]:80").contains("not an IPv6 address"));
        assert!(reason("10.0.0.300:80").contains("neither an IP address nor a hostname"));
        assert!(reason("bad host:80").contains("neither"));
        assert!(reason("-a.b:80").contains("neither"));
        assert!(reason(":80").contains("neither"));
    }

    #[test]
    fn listen_addresses_must_be_ip_literals() {
        let listen = Listen("0.0.0.0:8080");
        assert_eq!(read(&listen, "' [::]:0 '"), Ok("[::]:0".parse().unwrap()));
        assert_eq!(
            read(&listen, "localhost:8080"),
            Err(r#""localhost:8080" is not a valid address (a listen address must be an IP, not a hostname): use IP:port, e.g. 0.0.0.0:8080 or [::]:8080"#.into())
        );
        assert_eq!(
            read(&Listen("127.0.0.1:9090"), "9090"),
            Err(r#""9090" is a number, not an address: use IP:port, e.g. 127.0.0.1:9090 or [::]:9090"#.into())
        );
    }

    #[test]
    fn backend_hostnames_go_through_the_resolver_given() {
        let resolve = |host: &str, port: u16| match host {
            "db.internal" => Ok(SocketAddr::from(([10, 0, 0, 9], port))),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "name not known")),
        };
        let backend = Backend(&resolve);
        assert_eq!(
            read(&backend, "' db.internal:5432 '"),
            Ok(("db.internal:5432".into(), "10.0.0.9:5432".parse().unwrap()))
        );
        assert_eq!(
            read(&backend, "nowhere.invalid:1"),
            Err(r#""nowhere.invalid:1" could not be resolved (name not known): check the hostname and DNS, or use an IP address"#.into())
        );
        assert_eq!(
            read(&backend, "127.0.0.1:0"),
            Err(r#""127.0.0.1:0" is not a valid address (port 0 cannot be connected to): use the port the backend listens on, 1 to 65535"#.into())
        );
    }
}
