//! The top-level `tls:` list: certificate stores, each some certificate and
//! key files and some names to generate a self-signed certificate for. No
//! file is opened here (validation does no I/O): the TLS module loads them,
//! and checks `default` against what they hold.

use std::collections::HashMap;

use serde_yaml::Value;

use super::fields::Fields;
use crate::config::check::{self, Names};
use crate::config::model::{CertFiles, TlsStoreConfig};
use crate::config::raw::{RawCertFiles, RawTlsStore};
use crate::config::value::http::{cert_name, FilePath};
use crate::config::value::text::{string, Name};
use crate::config::value::{Bad, Kind, ListOf, ReadFn};

/// Every store of `tls:`; absent is none. `None` when one was bad.
pub(super) fn stores(
    raw: Option<&[Option<RawTlsStore>]>,
    f: &mut Fields,
) -> Option<Vec<TlsStoreConfig>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut names = Names::default();
    raw.iter()
        .enumerate()
        .map(|(i, store)| self::store(store.as_ref()?, f.item("tls", i), &mut names))
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}

fn store(s: &RawTlsStore, mut f: Fields, names: &mut Names) -> Option<TlsStoreConfig> {
    let name = f.need("name", &s.name, &Name("main").missing(), Name("main"));
    if let Some(name) = &name {
        let first = names.first("tls store", name, f.at());
        f.keep("name", first);
    }
    let certs = match &s.certs {
        None => Some(Vec::new()),
        Some(certs) => certs
            .iter()
            .enumerate()
            .map(|(i, c)| cert_files(c.as_ref()?, f.item("certs", i)))
            .collect::<Vec<_>>()
            .into_iter()
            .collect(),
    };
    let self_signed = f.or("self_signed", &s.self_signed, Vec::new(), SELF_SIGNED);
    let default = f.opt("default", &s.default, cert_name);
    // Counted as written, so an entry already reported is not missed twice.
    let written = s.certs.as_ref().map_or(0, Vec::len)
        + s.self_signed
            .as_ref()
            .and_then(Value::as_sequence)
            .map_or(0, Vec::len);
    if self_signed.is_some() {
        f.here(check::store_has_certs(written));
    }
    Some(TlsStoreConfig {
        name: name?,
        certs: certs?,
        self_signed: self_signed?,
        default: default?,
    })
}

fn cert_files(c: &RawCertFiles, mut f: Fields) -> Option<CertFiles> {
    let cert = f.need(
        "cert",
        &c.cert,
        "add cert: the PEM file of the certificate chain, e.g. cert: /etc/spliced/site.pem",
        FilePath("/etc/spliced/site.pem"),
    );
    let key = f.need(
        "key",
        &c.key,
        "add key: the PEM file of the certificate's private key, e.g. key: /etc/spliced/site.key",
        FilePath("/etc/spliced/site.key"),
    );
    Some(CertFiles {
        cert: cert?,
        key: key?,
    })
}

/// A store's `self_signed:` names.
const SELF_SIGNED: ListOf<'static, ReadFn<String>> = ListOf {
    item: cert_name,
    not_a_list: &|value| match value {
        Value::String(text) => format!("write a list, e.g. [{text}]"),
        _ => "list the names to generate a certificate for, e.g. [localhost]".to_owned(),
    },
    empty: None,
};

/// Store names as written, for resolving a listener's `tls.store`.
pub(super) struct StoreNames {
    by_name: HashMap<String, usize>,
}

impl StoreNames {
    pub(super) fn new(stores: &[Option<RawTlsStore>]) -> Self {
        let mut by_name = HashMap::new();
        for (i, store) in stores.iter().enumerate() {
            if let Some(Value::String(name)) = store.as_ref().and_then(|s| s.name.as_ref()) {
                by_name.entry(name.clone()).or_insert(i);
            }
        }
        StoreNames { by_name }
    }
}

/// A `store:` reads as the index of the store it names.
impl Kind for &StoreNames {
    type Out = usize;

    fn read(&self, value: &Value) -> Result<usize, Bad> {
        let wanted = string(value, "the name of a store under tls:")?;
        if let Some(&i) = self.by_name.get(wanted) {
            return Ok(i);
        }
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        Err(check::no_such_store(wanted, &names))
    }
}
