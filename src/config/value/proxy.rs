//! PROXY protocol settings (`proxy_protocol`, `accept_proxy_protocol`): a
//! word whose first choice is `off`, also written as the boolean `false`.

use serde_yaml::Value;

use super::word::Word;
use super::{one_of, Bad, Kind};
use crate::config::model::{ProxyProtocolAccept, ProxyProtocolSend};

/// `proxy_protocol`: the header sent to backends.
pub(in crate::config) const SEND: ProxySetting<ProxyProtocolSend> = ProxySetting {
    all: &ProxyProtocolSend::ALL,
    name: ProxyProtocolSend::as_str,
};
/// `accept_proxy_protocol`: the header expected from balancers in front.
pub(in crate::config) const ACCEPT: ProxySetting<ProxyProtocolAccept> = ProxySetting {
    all: &ProxyProtocolAccept::ALL,
    name: ProxyProtocolAccept::as_str,
};

/// One of `all` (whose first value is off) by name.
pub(in crate::config) struct ProxySetting<T: 'static> {
    pub all: &'static [T],
    pub name: fn(T) -> &'static str,
}

impl<T: Copy> Kind for ProxySetting<T> {
    type Out = T;

    fn read(&self, value: &Value) -> Result<T, Bad> {
        let names: Vec<&str> = self.all.iter().map(|&v| (self.name)(v)).collect();
        let versions = one_of(&names[1..]);
        match value {
            // WHY: YAML 1.1 tools (and habits) write `off` as a boolean false;
            // serde_yaml reads a plain `off` as a string. Both mean off.
            Value::Bool(false) => Ok(self.all[0]),
            Value::Bool(true) => Err(Bad::new(
                Some("true"),
                "does not say which PROXY protocol version",
                format!("use {versions}"),
            )),
            Value::Number(n) if matches!(n.as_u64(), Some(1 | 2)) => Err(Bad::new(
                Some(&n.to_string()),
                "is a number, not a PROXY protocol setting",
                format!("did you mean v{n}? use {}", one_of(&names)),
            )),
            Value::String(text) if !names.contains(&text.as_str()) => {
                // `V2`, `Off`: a case slip is worth naming exactly.
                match names
                    .iter()
                    .find(|word| word.eq_ignore_ascii_case(text.trim()))
                {
                    Some(word) => Err(Bad::new(
                        Some(text),
                        "is not a known PROXY protocol setting",
                        format!("did you mean {word}? use {}", one_of(&names)),
                    )),
                    None => self.word().read(value),
                }
            }
            _ => self.word().read(value),
        }
    }
}

impl<T: Copy> ProxySetting<T> {
    fn word(&self) -> Word<'static, T> {
        Word {
            all: self.all,
            name: self.name,
            what: "PROXY protocol setting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn off_may_be_written_as_false() {
        assert_eq!(read(&SEND, "off"), Ok(ProxyProtocolSend::Off));
        assert_eq!(read(&SEND, "false"), Ok(ProxyProtocolSend::Off));
        assert_eq!(read(&ACCEPT, "false"), Ok(ProxyProtocolAccept::Off));
        assert_eq!(read(&ACCEPT, "any"), Ok(ProxyProtocolAccept::Any));
    }

    #[test]
    fn near_misses_name_the_version_meant() {
        assert_eq!(
            read(&SEND, "true"),
            Err(r#""true" does not say which PROXY protocol version: use v1 or v2"#.into())
        );
        assert_eq!(
            read(&SEND, "2"),
            Err(r#""2" is a number, not a PROXY protocol setting: did you mean v2? use one of off, v1, v2"#.into())
        );
        assert_eq!(
            read(&SEND, "V2"),
            Err(r#""V2" is not a known PROXY protocol setting: did you mean v2? use one of off, v1, v2"#.into())
        );
        assert_eq!(
            read(&SEND, "v3"),
            Err(r#""v3" is not a known PROXY protocol setting: use one of off, v1, v2"#.into())
        );
        assert!(read(&ACCEPT, "true")
            .unwrap_err()
            .ends_with("use one of v1, v2, any"));
    }
}
