//! A pool's `health_check:` section: tcp or http probes and their timing.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
#[allow(unused_imports)]
use super::*;

/// Upper bound for a health check's `rise` and `fall`: at the shortest sane
/// interval, more than 100 probes is minutes of ignoring a change of state.
pub(super) const MAX_HEALTH_COUNT: u64 = 100;

pub(super) fn health_check(
    check: &RawHealthCheck,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<HealthCheck> {
    let kind_path = path.key("kind");
    let kind = required(
        check.kind.as_ref(),
        &kind_path,
        "add kind: tcp (connect, optionally send and expect bytes) or kind: http (GET a path)",
        errors,
    )
    .and_then(|value| {
        keyword(
            value,
            &kind_path,
            &["tcp", "http"],
            "health check kind",
            errors,
        )
    });

    let interval = duration(
        check.interval.as_ref(),
        &path.key("interval"),
        DEFAULT_HEALTH_INTERVAL,
        POSITIVE,
        errors,
    );
    let timeout_path = path.key("timeout");
    let timeout = match check.timeout.as_ref() {
        // WHY: the default shrinks to a shorter interval rather than make a
        // file that only sets `interval: 500ms` fail on a key it never wrote.
        None => Some(interval.map_or(DEFAULT_HEALTH_TIMEOUT, |i| i.min(DEFAULT_HEALTH_TIMEOUT))),
        Some(value) => duration(
            Some(value),
            &timeout_path,
            DEFAULT_HEALTH_TIMEOUT,
            POSITIVE,
            errors,
        )
        .and_then(|timeout| match interval {
            Some(interval) if timeout > interval => {
                errors.push(
                    &timeout_path,
                    scalar_text(value).as_deref(),
                    format!("is longer than interval ({})", format_duration(interval)),
                    format!(
                        "a probe must end before the next one starts: use at most {}, or raise interval",
                        format_duration(interval)
                    ),
                );
                None
            }
            _ => Some(timeout),
        }),
    };
    let rise = integer(
        check.rise.as_ref(),
        &path.key("rise"),
        DEFAULT_HEALTH_RISE.into(),
        1..=MAX_HEALTH_COUNT,
        errors,
    );
    let fall = integer(
        check.fall.as_ref(),
        &path.key("fall"),
        DEFAULT_HEALTH_FALL.into(),
        1..=MAX_HEALTH_COUNT,
        errors,
    );

    let tcp_keys = [("send", &check.send), ("expect", &check.expect)];
    let http_keys = [
        ("path", &check.path),
        ("host", &check.host),
        ("expect_status", &check.expect_status),
    ];
    let kind = match kind {
        // Errors follow the order of the keys above, whichever kind is wrong.
        Some("tcp") => {
            let kind = tcp_check(check, path, errors);
            wrong_kind(&http_keys, "tcp", "http", path, errors);
            kind
        }
        Some("http") => {
            wrong_kind(&tcp_keys, "http", "tcp", path, errors);
            http_check(check, path, errors)
        }
        // The kind is missing or wrong (reported): still check the values of
        // both kinds' keys, so the next run has nothing new to say.
        _ => {
            tcp_check(check, path, errors);
            http_check(check, path, errors);
            None
        }
    };

    Some(HealthCheck {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        // The ranges checked above fit in u32.
        rise: u32::try_from(rise?).ok()?,
        fall: u32::try_from(fall?).ok()?,
    })
}

/// Reports each key in `keys` that is set, as belonging to the other kind.
pub(super) fn wrong_kind(
    keys: &[(&str, &Option<Value>)],
    kind: &str,
    other: &str,
    path: &YamlPath,
    errors: &mut Collector,
) {
    for (key, value) in keys {
        if value.is_some() {
            errors.push(
                &path.key(key),
                None,
                format!("is only for kind: {other}, and this check is kind: {kind}"),
                format!("remove {key}, or change kind to {other}"),
            );
        }
    }
}

pub(super) fn tcp_check(
    check: &RawHealthCheck,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<HealthKind> {
    let send = match check.send.as_ref() {
        None => Some(None),
        Some(value) => string(
            value,
            &path.key("send"),
            "the bytes to send, e.g. \"PING\\r\\n\"",
            errors,
        )
        // Sending nothing is the same as not setting `send`.
        .map(|text| (!text.is_empty()).then(|| text.as_bytes().to_vec())),
    };
    let expect_path = path.key("expect");
    let expect = match check.expect.as_ref() {
        None => Some(None),
        Some(value) => string(
            value,
            &expect_path,
            "the bytes the reply must contain, e.g. \"+PONG\"",
            errors,
        )
        .and_then(|text| {
            if text.is_empty() {
                // Every reply contains nothing: the check could never fail.
                errors.push(
                    &expect_path,
                    Some(text),
                    "is empty, so every reply would match",
                    "give the bytes the reply must contain, or remove expect to only check the connect",
                );
                None
            } else {
                Some(Some(text.as_bytes().to_vec()))
            }
        }),
    };
    Some(HealthKind::Tcp {
        send: send?,
        expect: expect?,
    })
}

pub(super) fn http_check(
    check: &RawHealthCheck,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<HealthKind> {
    let path_path = path.key("path");
    let http_path = match check.path.as_ref() {
        None => Some(DEFAULT_HEALTH_PATH.to_owned()),
        Some(value) => string(value, &path_path, "a URL path, e.g. /healthz", errors)
            .and_then(|text| {
                if !text.starts_with('/') {
                    errors.push(
                        &path_path,
                        Some(text),
                        "does not start with '/'",
                        "write the path from its leading slash, e.g. /healthz (the host goes in host:)",
                    );
                    None
                } else if let Some(bad) = header_breaker(text) {
                    errors.push(
                        &path_path,
                        Some(text),
                        format!("contains {bad}, which cannot go in a request line"),
                        "percent-encode it, e.g. %20 for a space",
                    );
                    None
                } else {
                    Some(text.to_owned())
                }
            }),
    };
    let host_path = path.key("host");
    let host = match check.host.as_ref() {
        None => Some(None),
        Some(value) => string(value, &host_path, "a host name, e.g. app.internal", errors)
            .and_then(|text| {
                let problem = if text.is_empty() {
                    Some("is empty".to_owned())
                } else {
                    header_breaker(text).map(|bad| format!("contains {bad}"))
                };
                match problem {
                    Some(problem) => {
                        errors.push(
                            &host_path,
                            Some(text),
                            problem,
                            "write the Host header value, e.g. app.internal or app.internal:8080, or remove host to send the backend's address",
                        );
                        None
                    }
                    None => Some(Some(text.to_owned())),
                }
            }),
    };
    let expect_status = expect_status(
        check.expect_status.as_ref(),
        &path.key("expect_status"),
        errors,
    );
    Some(HealthKind::Http {
        path: http_path?,
        host: host?,
        expect_status: expect_status?,
    })
}
