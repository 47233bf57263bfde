//! The `admin:` section: where the admin API listens and who may use it.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
#[allow(unused_imports)]
use super::*;

pub(super) fn admin_section(
    admin: &RawAdmin,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<AdminConfig> {
    let listen_path = path.key("listen");
    let listen = required(
        admin.listen.as_ref(),
        &listen_path,
        "add listen: 127.0.0.1:9090",
        errors,
    )
    .and_then(|v| listen_address(v, &listen_path, "127.0.0.1:9090", errors));
    let token_path = path.key("token_file");
    let token_file = match admin.token_file.as_ref() {
        None => Some(None),
        Some(v) => string(
            v,
            &token_path,
            "a file path, e.g. /etc/spliced/admin.token",
            errors,
        )
        .and_then(|text| {
            if text.trim().is_empty() {
                errors.push(
                    &token_path,
                    Some(text),
                    "is an empty path",
                    "give the path of a file holding the token, or remove token_file",
                );
                None
            } else {
                Some(Some(PathBuf::from(text)))
            }
        }),
    };
    let allowed_hosts = host_names(
        admin.allowed_hosts.as_ref(),
        &path.key("allowed_hosts"),
        errors,
    );
    let allow_unauthenticated = boolean(
        admin.allow_unauthenticated.as_ref(),
        &path.key("allow_unauthenticated"),
        false,
        errors,
    );
    // Beyond loopback and without a token, anyone who reaches the port can
    // add a backend (hijacking traffic) or replace the config: refuse that
    // unless the operator says so in writing.
    if let (Some(listen), Some(None), Some(false)) = (listen, &token_file, allow_unauthenticated) {
        if !listen.ip().is_loopback() {
            errors.push(
                &listen_path,
                Some(&listen.to_string()),
                "is reachable from other machines, and without admin.token_file anyone who reaches it can change backends and the config",
                "set admin.token_file, listen on 127.0.0.1, or set admin.allow_unauthenticated: true if a firewall already guards this port",
            );
        }
    }
    Some(AdminConfig {
        listen: listen?,
        token_file: token_file?,
        allowed_hosts: allowed_hosts?,
        allow_unauthenticated: allow_unauthenticated?,
    })
}

/// `admin.allowed_hosts`: DNS names the admin API may be reached by (besides
/// its IP addresses and `localhost`), as a browser would send them in `Host`.
pub(super) fn host_names(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<String>> {
    let list = ListOf {
        item: host_name,
        not_a_list: &|_| HOST_NAMES_FIX.to_owned(),
        empty: None,
    };
    read_or(list, value, Vec::new(), path, errors)
}
