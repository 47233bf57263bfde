//! The per-request features of an HTTP route: `sticky:` (cookie affinity)
//! and `rate_limit:` (one limit or a list). Its `match:` and `pool:` are
//! read with the rest of the route in `http`.

use serde_yaml::Value;

use super::fields::Fields;
use crate::config::bounds;
use crate::config::model::{
    MissingKey, RateLimit, RateLimitKey, SameSite, Sticky, StickySecret, DEFAULT_STICKY_HTTP_ONLY,
};
use crate::config::raw::{scalar_text, RawRateLimit, RawRateLimits, RawSticky};
use crate::config::value::count::Count;
use crate::config::value::duration;
use crate::config::value::rate::RequestRate;
use crate::config::value::text::string;
use crate::config::value::word::{Flag, Word};
use crate::config::value::Bad;

const SAME_SITE: Word<'static, SameSite> = Word {
    all: &SameSite::ALL,
    name: SameSite::as_str,
    what: "SameSite value",
};

const MISSING: Word<'static, MissingKey> = Word {
    all: &MissingKey::ALL,
    name: MissingKey::as_str,
    what: "action for a missing header",
};

/// Fewest characters of a `sticky.secret`: a shorter one is a placeholder
/// or guessable. 16 characters of a random base64 string are 96 bits.
const MIN_SECRET_CHARS: usize = 16;

/// A route's `sticky:`; `None` when something in it was bad (and reported).
pub(super) fn sticky(s: &RawSticky, mut f: Fields) -> Option<Sticky> {
    let cookie = f.need(
        "cookie",
        &s.cookie,
        "add cookie: <the cookie's name>, e.g. cookie: SPLICED",
        cookie_name,
    );
    // WHY zero is allowed: `ttl: 0s` is how Envoy and HAProxy users write "a
    // session cookie", the same as leaving ttl out.
    let ttl = f
        .opt("ttl", &s.ttl, duration::ZERO_OK)
        .map(|ttl| ttl.filter(|d| !d.is_zero()));
    let secure = f.or("secure", &s.secure, false, Flag);
    let http_only = f.or("http_only", &s.http_only, DEFAULT_STICKY_HTTP_ONLY, Flag);
    let same_site = f.opt("same_site", &s.same_site, SAME_SITE);
    let secret = f.opt("secret", &s.secret, secret);
    if let (Some(Some(SameSite::None)), Some(false)) = (&same_site, &secure) {
        // Browsers drop a SameSite=None cookie that is not Secure.
        f.report(
            "same_site",
            Bad::new(
                Some("none"),
                "needs secure: true (browsers refuse SameSite=None cookies without Secure)",
                "add secure: true, or use same_site: lax",
            ),
        );
        return None;
    }
    Some(Sticky {
        cookie: cookie?,
        ttl: ttl?,
        secure: secure?,
        http_only: http_only?,
        same_site: same_site?,
        secret: secret?,
    })
}

/// A cookie name: an RFC 6265 token.
fn cookie_name(value: &Value) -> Result<String, Bad> {
    let name = string(value, "a cookie name, e.g. SPLICED")?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(Bad::new(
            Some(name),
            "is not a valid cookie name",
            "use letters, digits and !#$%&'*+-.^_`|~ only, e.g. SPLICED",
        ));
    }
    Ok(name.to_owned())
}

fn secret(value: &Value) -> Result<StickySecret, Bad> {
    let fix = "give at least 16 random characters, e.g. the output of `openssl rand -base64 32`, the same on every instance";
    let text = string(
        value,
        "a secret, e.g. the output of `openssl rand -base64 32`",
    )?;
    if text.chars().count() < MIN_SECRET_CHARS {
        // Never quoted back: it is a secret, even when too short.
        return Err(Bad::new(
            None,
            format!("is shorter than {MIN_SECRET_CHARS} characters"),
            fix,
        ));
    }
    Ok(StickySecret(text.to_owned()))
}

/// RFC 9110 `tchar`: what a header name or cookie name may hold.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A route's `rate_limit:`, one mapping or a list; `None` when something in
/// it was bad (and reported).
pub(super) fn rate_limits(raw: &RawRateLimits, f: &mut Fields) -> Option<Vec<RateLimit>> {
    match raw {
        RawRateLimits::One(one) => rate_limit(one, &mut f.section("rate_limit")).map(|l| vec![l]),
        RawRateLimits::Many(many) => {
            let mut list = Vec::with_capacity(many.len());
            let mut seen: Vec<(RateLimitKey, usize)> = Vec::new();
            for (i, item) in many.iter().enumerate() {
                let Some(item) = item else {
                    list.push(None);
                    continue;
                };
                let mut lf = f.item("rate_limit", i);
                let limit = rate_limit(item, &mut lf);
                // Read again, quietly: a limit bad elsewhere still claims its key.
                let key = item.key.as_ref().and_then(|k| limit_key(k).ok());
                if let Some(key) = key {
                    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                        lf.report(
                            "key",
                            Bad::new(
                                Some(&key.label()),
                                format!("is already the key of rate_limit[{first}]"),
                                "give each limit of a route its own key, or merge the two",
                            ),
                        );
                        list.push(None);
                        continue;
                    }
                    seen.push((key, i));
                }
                list.push(limit);
            }
            list.into_iter().collect()
        }
    }
}

fn rate_limit(l: &RawRateLimit, f: &mut Fields) -> Option<RateLimit> {
    let key = f.need(
        "key",
        &l.key,
        "add key: ip, or key: \"header:X-API-Key\" to count requests by a header",
        limit_key,
    );
    let rate = f.need(
        "rate",
        &l.rate,
        "add rate: <requests per second>, e.g. rate: 100/s",
        RequestRate,
    );
    let burst = f.opt("burst", &l.burst, Count::<u32>::new(bounds::PER_IP));
    let missing = match (&key, &l.missing) {
        (Some(RateLimitKey::Ip), Some(written)) => {
            f.report(
                "missing",
                Bad::new(
                    scalar_text(written).as_deref(),
                    "is only for key: \"header:NAME\" (every request has an address)",
                    "remove missing",
                ),
            );
            None
        }
        (_, missing) => f.or("missing", missing, MissingKey::Ip, MISSING),
    };
    let rate = rate?;
    // Default burst: a second's worth, at least 1, as `per_ip_burst`.
    let burst = burst?.unwrap_or_else(|| (rate.ceil() as u32).max(1));
    Some(RateLimit {
        key: key?,
        rate,
        burst,
        missing: missing?,
    })
}

/// `ip` or `header:NAME`.
fn limit_key(value: &Value) -> Result<RateLimitKey, Bad> {
    const FIX: &str =
        "use ip, or \"header:NAME\" with a request header's name, e.g. \"header:X-API-Key\"";
    let text = string(value, "ip or \"header:NAME\"")?.trim();
    if text == "ip" {
        return Ok(RateLimitKey::Ip);
    }
    let Some(name) = text.strip_prefix("header:") else {
        return Err(Bad::new(Some(text), "is not a rate limit key", FIX));
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(Bad::new(Some(text), "does not name a valid header", FIX));
    }
    Ok(RateLimitKey::Header(name.to_owned()))
}
