//! A listener's `limits:` section: per-client rates, counts and bandwidth.

use super::fields::Fields;
use crate::config::bounds;
use crate::config::check::burst_needs_rate;
use crate::config::model::{
    LimitAction, Limits, DEFAULT_IPV6_PREFIX, DEFAULT_LIMIT_ACTION, DEFAULT_TARPIT_DELAY,
};
use crate::config::raw::{scalar_text, RawLimits};
use crate::config::value::count::Count;
use crate::config::value::duration;
use crate::config::value::rate::{Bandwidth, ConnectionRate};
use crate::config::value::word::Word;

const ACTION: Word<'static, LimitAction> = Word {
    all: &LimitAction::ALL,
    name: LimitAction::as_str,
    what: "limit action",
};

pub(super) fn limits(l: &RawLimits, mut f: Fields) -> Option<Limits> {
    let per_ip_rate = f.opt("per_ip_rate", &l.per_ip_rate, ConnectionRate);
    let rate = l.per_ip_rate.is_some();
    let per_ip_burst = match &l.per_ip_burst {
        Some(burst) if !rate => {
            let rule = burst_needs_rate(rate, scalar_text(burst).as_deref());
            f.keep("per_ip_burst", rule.map(|()| None))
        }
        burst => f.opt("per_ip_burst", burst, Count::new(bounds::PER_IP)),
    };
    let per_ip_connections = f.opt(
        "per_ip_connections",
        &l.per_ip_connections,
        Count::new(bounds::PER_IP),
    );
    let per_ip_bandwidth = f.opt("per_ip_bandwidth", &l.per_ip_bandwidth, Bandwidth);
    let action = f.or("action", &l.action, DEFAULT_LIMIT_ACTION, ACTION);
    let tarpit_delay = f.or(
        "tarpit_delay",
        &l.tarpit_delay,
        DEFAULT_TARPIT_DELAY,
        duration::POSITIVE,
    );
    let ipv6_prefix = f.or(
        "ipv6_prefix",
        &l.ipv6_prefix,
        DEFAULT_IPV6_PREFIX,
        Count::new(bounds::IPV6_PREFIX),
    );
    Some(Limits {
        per_ip_rate: per_ip_rate?,
        per_ip_burst: per_ip_burst?,
        per_ip_connections: per_ip_connections?,
        per_ip_bandwidth: per_ip_bandwidth?,
        action: action?,
        tarpit_delay: tarpit_delay?,
        ipv6_prefix: ipv6_prefix?,
    })
}
