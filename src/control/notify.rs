//! systemd's service readiness protocol (`sd_notify`), for units with
//! `Type=notify`: `READY=1` once every listener is bound and the first
//! snapshot is published, `RELOADING=1` … `READY=1` around a reload of the
//! file, `STOPPING=1` when a drain begins. Outside systemd (`NOTIFY_SOCKET`
//! unset) every call does nothing.
//!
//! WHY by hand rather than a crate: the protocol is one datagram of
//! `KEY=VALUE` lines to the socket named in `NOTIFY_SOCKET` (a path, or an
//! abstract name after `@`); std's Unix datagram sockets do it in a few
//! lines, and a failed send must never disturb the balancer.

use std::os::unix::net::UnixDatagram;

use crate::log;
use crate::sys;

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to systemd.
fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &target),
        }
    });
    if let Err(e) = sent {
        log::warn(
            "cannot tell systemd the service state (NOTIFY_SOCKET)",
            &[("state", &state.replace('\n', " ")), ("error", &e)],
        );
    }
}

/// Every listener is bound and traffic is served.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// A reload of the config file starts (systemd waits for `ready` again).
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        sys::monotonic_usec()
    ));
}

/// The reload finished (applied or refused: either way spliced serves).
pub fn reloaded(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// Shutdown began: no new connections, open ones are draining.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}
