//! A pool's `health_check:` section: tcp or http probes and their timing.
//! Which keys a check may have depends on the *value* of its `kind`, so the
//! raw struct takes every key of both kinds and this file sorts them out.

use std::time::Duration;

use serde_yaml::Value;

use super::fields::Fields;
use crate::config::bounds;
use crate::config::check;
use crate::config::model::{
    HealthCheck, HealthKind, DEFAULT_EXPECT_STATUS, DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_PATH, DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_TIMEOUT,
};
use crate::config::raw::RawHealthCheck;
use crate::config::value::count::Count;
use crate::config::value::duration;
use crate::config::value::text::{header_breaker, string};
use crate::config::value::word::Word;
use crate::config::value::{status, Bad};

const KIND: Word<'static, &str> = Word {
    all: &["tcp", "http"],
    name: |kind| kind,
    what: "health check kind",
};

pub(super) fn health_check(c: &RawHealthCheck, mut f: Fields) -> Option<HealthCheck> {
    let kind = f.need(
        "kind",
        &c.kind,
        "add kind: tcp (connect, optionally send and expect bytes) or kind: http (GET a path)",
        KIND,
    );
    let interval = f.or(
        "interval",
        &c.interval,
        DEFAULT_HEALTH_INTERVAL,
        duration::POSITIVE,
    );
    // A shorter interval brings the default timeout down with it.
    let fit = (interval, Duration::min as fn(_, _) -> _);
    let timeout = f.fitted(
        "timeout",
        &c.timeout,
        DEFAULT_HEALTH_TIMEOUT,
        fit,
        check::probe_fits,
    );
    let rise = f.or(
        "rise",
        &c.rise,
        DEFAULT_HEALTH_RISE,
        Count::new(bounds::HEALTH_COUNT),
    );
    let fall = f.or(
        "fall",
        &c.fall,
        DEFAULT_HEALTH_FALL,
        Count::new(bounds::HEALTH_COUNT),
    );

    let tcp_keys = [("send", &c.send), ("expect", &c.expect)];
    let http_keys = [
        ("path", &c.path),
        ("host", &c.host),
        ("expect_status", &c.expect_status),
    ];
    let kind = match kind {
        // Errors follow the order of the keys above, whichever kind is wrong.
        Some("tcp") => {
            let kind = tcp_check(c, &mut f);
            wrong_kind(&http_keys, "tcp", "http", &mut f);
            kind
        }
        Some("http") => {
            wrong_kind(&tcp_keys, "http", "tcp", &mut f);
            http_check(c, &mut f)
        }
        // The kind is missing or wrong (reported): still check the values of
        // both kinds' keys, so the next run has nothing new to say.
        _ => {
            tcp_check(c, &mut f);
            http_check(c, &mut f);
            None
        }
    };

    Some(HealthCheck {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
    })
}

/// Reports each key in `keys` that is set, as belonging to the other kind.
fn wrong_kind(keys: &[(&str, &Option<Value>)], kind: &str, other: &str, f: &mut Fields) {
    for (key, value) in keys {
        if value.is_some() {
            f.report(
                key,
                Bad::new(
                    None,
                    format!("is only for kind: {other}, and this check is kind: {kind}"),
                    format!("remove {key}, or change kind to {other}"),
                ),
            );
        }
    }
}

fn tcp_check(c: &RawHealthCheck, f: &mut Fields) -> Option<HealthKind> {
    let send = f.opt("send", &c.send, send);
    let expect = f.opt("expect", &c.expect, expect);
    Some(HealthKind::Tcp {
        // Sending nothing is the same as not setting `send`.
        send: send?.flatten(),
        expect: expect?,
    })
}

fn http_check(c: &RawHealthCheck, f: &mut Fields) -> Option<HealthKind> {
    let path = f.or(
        "path",
        &c.path,
        DEFAULT_HEALTH_PATH.to_owned(),
        request_path,
    );
    let host = f.opt("host", &c.host, host);
    let expect_status = f.or(
        "expect_status",
        &c.expect_status,
        vec![DEFAULT_EXPECT_STATUS],
        status::expect_status,
    );
    Some(HealthKind::Http {
        path: path?,
        host: host?,
        expect_status: expect_status?,
    })
}

/// `send`: the bytes to write after connecting (`None` when empty).
fn send(value: &Value) -> Result<Option<Vec<u8>>, Bad> {
    let text = string(value, "the bytes to send, e.g. \"PING\\r\\n\"")?;
    Ok((!text.is_empty()).then(|| text.as_bytes().to_vec()))
}

/// `expect`: the bytes the reply must contain.
fn expect(value: &Value) -> Result<Vec<u8>, Bad> {
    let text = string(value, "the bytes the reply must contain, e.g. \"+PONG\"")?;
    if text.is_empty() {
        // Every reply contains nothing: the check could never fail.
        return Err(Bad::new(
            Some(text),
            "is empty, so every reply would match",
            "give the bytes the reply must contain, or remove expect to only check the connect",
        ));
    }
    Ok(text.as_bytes().to_vec())
}

/// `path`: what goes in the request line.
fn request_path(value: &Value) -> Result<String, Bad> {
    let text = string(value, "a URL path, e.g. /healthz")?;
    if !text.starts_with('/') {
        return Err(Bad::new(
            Some(text),
            "does not start with '/'",
            "write the path from its leading slash, e.g. /healthz (the host goes in host:)",
        ));
    }
    if let Some(bad) = header_breaker(text) {
        return Err(Bad::new(
            Some(text),
            format!("contains {bad}, which cannot go in a request line"),
            "percent-encode it, e.g. %20 for a space",
        ));
    }
    Ok(text.to_owned())
}

/// `host`: the `Host` header sent instead of the backend's address.
fn host(value: &Value) -> Result<String, Bad> {
    let text = string(value, "a host name, e.g. app.internal")?;
    let problem = if text.is_empty() {
        "is empty".to_owned()
    } else if let Some(bad) = header_breaker(text) {
        format!("contains {bad}")
    } else {
        return Ok(text.to_owned());
    };
    Err(Bad::new(
        Some(text),
        problem,
        "write the Host header value, e.g. app.internal or app.internal:8080, or remove host to send the backend's address",
    ))
}
