//! Rules over a whole typed [`Config`], whoever built it: a file (after
//! `validate`) or an admin API mutation (which edits a running `Config`
//! directly). One place for them, so the API cannot accept what the file
//! refuses: a backend spliced cannot connect to (port 0, the unspecified,
//! broadcast or a multicast address) or one that is spliced itself (one of
//! its listeners or its admin API, which would loop every connection back
//! in). Also the advice that is not an error ([`Config::warnings`]).
//!
//! No I/O; the addresses spliced is bound to at run time are passed in.

use std::net::{IpAddr, SocketAddr};

use super::error::{ConfigError, ConfigErrors};
use super::model::Config;

impl Config {
    /// Checks the rules of this module against the config's own addresses.
    ///
    /// # Errors
    ///
    /// Every backend that breaks a rule, with its path (`pools[0].backends[1]`).
    pub fn check(&self) -> Result<(), ConfigErrors> {
        self.check_with(&[])
    }

    /// As [`Config::check`], also refusing backends at `bound`: the addresses
    /// the running listeners got (a listener on port 0 has its real one).
    ///
    /// # Errors
    ///
    /// As [`Config::check`].
    pub fn check_with(&self, bound: &[SocketAddr]) -> Result<(), ConfigErrors> {
        let own: Vec<(SocketAddr, String)> = self
            .listeners
            .iter()
            .map(|l| (l.listen, format!("listener {:?}", l.name)))
            .chain(bound.iter().map(|&a| (a, "listening socket".to_string())))
            .chain(
                self.admin
                    .iter()
                    .map(|a| (a.listen, "the admin API".to_string())),
            )
            .filter(|(a, _)| a.port() != 0)
            .collect();
        let mut errors = Vec::new();
        for (p, pool) in self.pools.iter().enumerate() {
            for (b, backend) in pool.backends.iter().enumerate() {
                let problem = unusable(backend.addr).map(str::to_string).or_else(|| {
                    own.iter()
                        .find(|(a, _)| reaches(backend.addr, *a))
                        .map(|(_, what)| format!("is spliced's own {what}: every connection would loop back into spliced"))
                });
                if let Some(problem) = problem {
                    errors.push(ConfigError::new(
                        format!("pools[{p}].backends[{b}]"),
                        Some(&backend.name),
                        problem,
                        "give the address and port a backend listens on",
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Things that are allowed but probably not meant, one line each.
    pub fn warnings(&self) -> Vec<String> {
        self.pools
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.backends.is_empty() && p.backends.iter().all(|b| b.weight == 0))
            .map(|(i, p)| {
                format!(
                    "pools[{i}] ({}): every backend has weight 0, so the pool takes no new connections; give one a weight above 0",
                    p.name
                )
            })
            .collect()
    }
}

/// Why no connection can be made to `addr`, if that is so.
fn unusable(addr: SocketAddr) -> Option<&'static str> {
    if addr.port() == 0 {
        return Some("has port 0, which cannot be connected to");
    }
    match addr.ip() {
        ip if ip.is_unspecified() => Some("is the unspecified address, not a backend"),
        ip if ip.is_multicast() => Some("is a multicast address; TCP cannot connect to it"),
        IpAddr::V4(ip) if ip.is_broadcast() => {
            Some("is the broadcast address; TCP cannot connect to it")
        }
        _ => None,
    }
}

/// Whether connecting to `backend` reaches a socket of ours bound to `own`.
fn reaches(backend: SocketAddr, own: SocketAddr) -> bool {
    backend.port() == own.port()
        && (backend.ip() == own.ip() || (own.ip().is_unspecified() && backend.ip().is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_that_cannot_be_connected_to_are_named() {
        for (addr, why) in [
            ("127.0.0.1:0", "port 0"),
            ("0.0.0.0:80", "unspecified"),
            ("[::]:80", "unspecified"),
            ("255.255.255.255:80", "broadcast"),
            ("224.0.0.1:80", "multicast"),
            ("[ff02::1]:80", "multicast"),
        ] {
            let problem = unusable(addr.parse().unwrap()).unwrap_or_else(|| panic!("{addr}"));
            assert!(problem.contains(why), "{addr}: {problem}");
        }
        assert_eq!(unusable("10.0.0.1:80".parse().unwrap()), None);
    }

    #[test]
    fn a_backend_that_is_spliced_itself_is_found() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(reaches("127.0.0.1:8080".parse().unwrap(), any));
        assert!(reaches(
            "127.0.0.1:9090".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        ));
        assert!(!reaches(
            "127.0.0.2:9090".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        ));
        assert!(!reaches("127.0.0.1:8081".parse().unwrap(), any));
    }
}
