//! A pool's balancing `algorithm`: one of [`Algorithm::ALL`] by name, with
//! the names other balancers use for the same thing pointed at ours.

use serde_yaml::Value;

use super::text::string;
use super::{one_of, Bad};
use crate::config::model::Algorithm;
use crate::config::raw::closest;

/// What other balancers call our algorithms, so a config ported from HAProxy,
/// nginx or Envoy is pointed at the right name instead of just refused.
const ALIASES: &[(&str, Algorithm)] = &[
    ("roundrobin", Algorithm::RoundRobin),
    ("wrr", Algorithm::WeightedRoundRobin),
    ("leastconn", Algorithm::LeastConnections),
    ("least_conn", Algorithm::LeastConnections),
    ("source", Algorithm::IpHash),
    ("hash", Algorithm::IpHash),
    ("maglev", Algorithm::IpHash),
    ("ring_hash", Algorithm::IpHash),
    ("consistent_hash", Algorithm::IpHash),
    ("power_of_two", Algorithm::P2c),
    ("power_of_two_choices", Algorithm::P2c),
];

/// An algorithm by its name.
pub(in crate::config) fn algorithm(value: &Value) -> Result<Algorithm, Bad> {
    let name = string(value, "an algorithm name, e.g. round_robin")?;
    if let Some(algorithm) = Algorithm::ALL.iter().find(|a| a.as_str() == name) {
        return Ok(*algorithm);
    }
    let names = Algorithm::ALL.map(Algorithm::as_str);
    let alias = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name.trim()))
        .map(|(_, algorithm)| algorithm.as_str());
    let hint = match alias.or_else(|| closest(name, &names)) {
        Some(near) => format!("did you mean {near}? "),
        None => String::new(),
    };
    Err(Bad::new(
        Some(name),
        "is not a known algorithm",
        format!("{hint}use {}", one_of(&names)),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn every_algorithm_reads_by_its_name() {
        for a in Algorithm::ALL {
            assert_eq!(read(&algorithm, a.as_str()), Ok(a));
        }
    }

    #[test]
    fn other_balancers_names_point_at_ours() {
        let hint = |name: &str| read(&algorithm, name).unwrap_err();
        assert!(hint("leastconn").contains("did you mean least_connections?"));
        assert!(hint("Maglev").contains("did you mean ip_hash?"));
        assert!(hint("round_robbin").contains("did you mean round_robin?"));
        assert_eq!(
            hint("fastest"),
            r#""fastest" is not a known algorithm: use one of round_robin, weighted_round_robin, least_connections, ip_hash, random, p2c"#
        );
        assert!(hint("3").starts_with(r#""3" is a number, not text"#));
    }
}
