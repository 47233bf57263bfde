//! A listener's `limits:` section: per-client rates, counts and bandwidth.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
#[allow(unused_imports)]
use super::*;

pub(super) fn limits_section(
    limits: &RawLimits,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Limits> {
    let per_ip_rate = match &limits.per_ip_rate {
        None => Some(None),
        Some(value) => read(ConnectionRate, value, &path.key("per_ip_rate"), errors).map(Some),
    };
    let burst_path = path.key("per_ip_burst");
    let per_ip_burst = match &limits.per_ip_burst {
        None => Some(None),
        Some(value) if limits.per_ip_rate.is_none() => {
            errors.push(
                &burst_path,
                scalar_text(value).as_deref(),
                "only applies with per_ip_rate",
                "add per_ip_rate, e.g. per_ip_rate: 50/s, or remove per_ip_burst",
            );
            None
        }
        Some(value) => integer(Some(value), &burst_path, 1, 1..=u32::MAX.into(), errors)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some),
    };
    let per_ip_connections = match &limits.per_ip_connections {
        None => Some(None),
        Some(value) => integer(
            Some(value),
            &path.key("per_ip_connections"),
            1,
            1..=u32::MAX.into(),
            errors,
        )
        .and_then(|n| u32::try_from(n).ok())
        .map(Some),
    };
    let per_ip_bandwidth = match &limits.per_ip_bandwidth {
        None => Some(None),
        Some(value) => read(Bandwidth, value, &path.key("per_ip_bandwidth"), errors).map(Some),
    };
    let action = match &limits.action {
        None => Some(DEFAULT_LIMIT_ACTION),
        Some(value) => {
            let names = LimitAction::ALL.map(LimitAction::as_str);
            keyword(value, &path.key("action"), &names, "limit action", errors)
                .and_then(|word| LimitAction::ALL.into_iter().find(|a| a.as_str() == word))
        }
    };
    let tarpit_delay = duration(
        limits.tarpit_delay.as_ref(),
        &path.key("tarpit_delay"),
        DEFAULT_TARPIT_DELAY,
        POSITIVE,
        errors,
    );
    let ipv6_prefix = integer(
        limits.ipv6_prefix.as_ref(),
        &path.key("ipv6_prefix"),
        DEFAULT_IPV6_PREFIX.into(),
        1..=128,
        errors,
    );
    Some(Limits {
        per_ip_rate: per_ip_rate?,
        per_ip_burst: per_ip_burst?,
        per_ip_connections: per_ip_connections?,
        per_ip_bandwidth: per_ip_bandwidth?,
        action: action?,
        tarpit_delay: tarpit_delay?,
        // The range checked above fits in u8.
        ipv6_prefix: u8::try_from(ipv6_prefix?).ok()?,
    })
}
