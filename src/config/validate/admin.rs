//! The `admin:` section: where the admin API listens and who may use it.

use std::path::PathBuf;

use serde_yaml::Value;

use super::fields::Fields;
use crate::config::check;
use crate::config::model::AdminConfig;
use crate::config::raw::RawAdmin;
use crate::config::value::address::Listen;
use crate::config::value::text::{host_name, string, HOST_NAMES_FIX};
use crate::config::value::word::Flag;
use crate::config::value::{Bad, ListOf, ReadFn};

pub(super) fn admin(admin: &RawAdmin, mut f: Fields) -> Option<AdminConfig> {
    let listen = f.need(
        "listen",
        &admin.listen,
        "add listen: 127.0.0.1:9090",
        Listen("127.0.0.1:9090"),
    );
    let token_file = f.opt("token_file", &admin.token_file, token_file);
    let allowed_hosts = f.or("allowed_hosts", &admin.allowed_hosts, Vec::new(), HOSTS);
    let allow_unauthenticated = f.or(
        "allow_unauthenticated",
        &admin.allow_unauthenticated,
        false,
        Flag,
    );
    if let (Some(listen), Some(token), Some(allow)) = (listen, &token_file, allow_unauthenticated) {
        f.keep(
            "listen",
            check::admin_exposed(listen, token.is_some(), allow),
        );
    }
    Some(AdminConfig {
        listen: listen?,
        token_file: token_file?,
        allowed_hosts: allowed_hosts?,
        allow_unauthenticated: allow_unauthenticated?,
    })
}

/// `allowed_hosts`: DNS names the admin API may be reached by (besides its IP
/// addresses and `localhost`), as a browser would send them in `Host`.
const HOSTS: ListOf<'static, ReadFn<String>> = ListOf {
    item: host_name,
    not_a_list: &|_| HOST_NAMES_FIX.to_owned(),
    empty: None,
};

fn token_file(value: &Value) -> Result<PathBuf, Bad> {
    let text = string(value, "a file path, e.g. /etc/spliced/admin.token")?;
    if text.trim().is_empty() {
        return Err(Bad::new(
            Some(text),
            "is an empty path",
            "give the path of a file holding the token, or remove token_file",
        ));
    }
    Ok(PathBuf::from(text))
}
