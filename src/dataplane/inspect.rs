//! Reading a connection before a backend is chosen: an accepted PROXY
//! protocol header (only from `trusted_proxies`), then the TLS ClientHello
//! whose SNI and ALPN pick the pool (TLS passthrough: nothing is decrypted).
//! The bytes read are kept and sent to the backend first, after the PROXY
//! header spliced sends onwards, so the backend sees exactly what the client
//! sent. Parsing is done by the sans-IO parsers in `proto`; this module only
//! feeds them and acts on their answers.

use std::io;
use std::sync::atomic::Ordering;

use super::conn::{Mode, Phase};
use super::token::{Op, B2C, C2B};
use super::worker::Worker;
use crate::clock;
use crate::config::{LimitAction, ProxyProtocolAccept, ProxyProtocolSend};
use crate::counters::bump;
use crate::limits::{self, ClientKey, RejectReason, Verdict};
use crate::outcome::Reject;
use crate::outcome::Termination;
use crate::proto::proxy_protocol::{self, Accept, Parsed};
use crate::proto::sni::{self, Peek, MAX_CLIENT_HELLO};
use crate::sys;

/// Most bytes kept while inspecting: a full ClientHello after a PROXY v2
/// header with TLVs.
const MAX_PEEK: usize = MAX_CLIENT_HELLO + proxy_protocol::MAX_HEADER_LEN;

impl Worker {
    /// Starts a new connection: checks the PROXY source, then either reads
    /// (inspecting listeners) or goes straight to connecting.
    pub(super) fn start(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let snapshot = conn.snapshot.clone();
        let listener = &snapshot.listeners[conn.listener];
        let settings = &listener.settings;
        if settings.accept_proxy_protocol != ProxyProtocolAccept::Off {
            let trusted = conn
                .client_addr
                .is_some_and(|a| settings.trusted_proxies.iter().any(|c| c.contains(a.ip())));
            if !trusted {
                self.reject(slot, Reject::UntrustedProxy);
                return;
            }
        } else {
            conn.proxy_done = true;
            // The socket's peer is the client: apply access lists and limits now.
            if !self.admit(slot) {
                return;
            }
        }
        if listener.inspects() {
            self.conn(slot).phase = Phase::Inspecting;
            self.arm_recv(slot, C2B);
        } else {
            self.connect_next(slot);
        }
    }

    /// Applies the listener's `deny`/`allow` lists and per-client limits to the
    /// connection's client address. Returns false when it was turned away
    /// (closed, or held in the tarpit).
    pub(super) fn admit(&mut self, slot: u32) -> bool {
        let now = self.now;
        let conn = self.conn(slot);
        let snapshot = conn.snapshot.clone();
        let listener = &snapshot.listeners[conn.listener];
        let settings = &listener.settings;
        let Some(ip) = conn.client_addr.map(|a| a.ip()) else {
            return true;
        };
        if let Err(why) = limits::access_allowed(ip, &settings.allow, &settings.deny) {
            let reason = if why == "deny" {
                Reject::Deny
            } else {
                Reject::NotAllowed
            };
            self.reject(slot, reason);
            return false;
        }
        let Some(limits) = &settings.limits else {
            return true;
        };
        let key = ClientKey::in_scope(listener.limit_scope, ip, limits.ipv6_prefix);
        match self.shared.limiter.admit(key, limits, clock::now_ns()) {
            Verdict::Admit(ticket) => {
                self.conn(slot).ticket = Some(ticket);
                true
            }
            Verdict::Reject(why) => {
                let reason = match why {
                    RejectReason::Rate => Reject::Rate,
                    RejectReason::PerIpConnections => Reject::PerIpConnections,
                };
                if limits.action == LimitAction::Tarpit && self.tarpitted < self.tarpit_cap() {
                    // Hold it unread, then close: a flood pays in time, not in
                    // backend connections.
                    let id = self.id;
                    self.tarpitted += 1;
                    let conn = self.conn(slot);
                    bump(&listener.stats.worker(id).rejected[reason.index()], 1);
                    conn.ends_because(Termination::Rejected);
                    conn.phase = Phase::Tarpit;
                    conn.tarpit_until = Some(now + limits.tarpit_delay);
                } else {
                    // A full tarpit closes at once: held clients must not crowd
                    // everyone else out of the connection budget.
                    self.reject(slot, reason);
                }
                false
            }
        }
    }

    /// Most connections this worker holds in the tarpit: a quarter of its
    /// share of the connection budget (at least 16; 1024 without a budget).
    fn tarpit_cap(&self) -> usize {
        let budget = self.shared.conn_budget.load(Ordering::Relaxed);
        if budget == u64::MAX {
            return 1024;
        }
        let workers = self.shared.stats.workers().count() as u64;
        (budget / workers / 4).max(16) as usize
    }

    /// Turns a client away before any backend is involved, counting why.
    pub(super) fn reject(&mut self, slot: u32, reason: Reject) {
        let id = self.id;
        let conn = self.conn(slot);
        bump(
            &conn.snapshot.listeners[conn.listener]
                .stats
                .worker(id)
                .rejected[reason.index()],
            1,
        );
        conn.ends_because(Termination::Rejected);
        self.abort(slot);
    }

    /// Bytes arrived while inspecting (already appended to `conn.peek`).
    pub(super) fn on_inspect_data(&mut self, slot: u32, _unused: usize) {
        if self.conn(slot).peek.len() > MAX_PEEK {
            self.reject(slot, Reject::BadClientHello);
            return;
        }
        self.inspect(slot);
    }

    /// Asks the parsers about what was read so far and acts on the answer.
    fn inspect(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let snapshot = conn.snapshot.clone();
        let listener = &snapshot.listeners[conn.listener];
        let settings = &listener.settings;
        if !conn.proxy_done {
            let accept = match settings.accept_proxy_protocol {
                ProxyProtocolAccept::V1 => Accept::V1,
                ProxyProtocolAccept::V2 => Accept::V2,
                _ => Accept::Any,
            };
            match proxy_protocol::parse(&conn.peek, accept) {
                Parsed::Header { header, consumed } => {
                    if let Some(src) = header.source {
                        conn.client_addr = Some(src);
                    }
                    conn.original_dst = header.destination;
                    conn.peek.drain(..consumed);
                    conn.proxy_done = true;
                    // The header named the client: apply access lists and limits now.
                    if !self.admit(slot) {
                        return;
                    }
                    if listener.settings.sni_routes.is_empty() {
                        self.finish_inspecting(slot);
                        return;
                    }
                }
                Parsed::NeedMore => {
                    self.arm_recv(slot, C2B);
                    return;
                }
                Parsed::Invalid(_) => {
                    self.reject(slot, Reject::BadProxyHeader);
                    return;
                }
            }
        }
        let conn = self.conn(slot);
        if !settings.sni_routes.is_empty() {
            if conn.peek.is_empty() {
                self.arm_recv(slot, C2B);
                return;
            }
            let (sni, alpn) = match sni::peek(&conn.peek) {
                Peek::Hello(info) => (info.sni, info.alpn),
                Peek::NeedMore => {
                    self.arm_recv(slot, C2B);
                    return;
                }
                Peek::NotTls => (None, Vec::new()),
                Peek::Malformed(_) => {
                    self.reject(slot, Reject::BadClientHello);
                    return;
                }
            };
            if sni.is_none() && settings.require_sni {
                self.reject(slot, Reject::NoSni);
                return;
            }
            conn.pool = listener.route(sni.as_deref(), &alpn);
            conn.sni = sni;
            conn.alpn = alpn;
        }
        self.finish_inspecting(slot);
    }

    /// Inspection is over: what the client sent so far goes to the backend first.
    fn finish_inspecting(&mut self, slot: u32) {
        let conn = self.conn(slot);
        conn.preface = std::mem::take(&mut conn.peek);
        conn.preface_client = conn.preface.len();
        conn.phase = Phase::Connecting;
        self.connect_next(slot);
    }

    /// Closes connections that have not finished their header or ClientHello in time.
    pub(super) fn inspect_timeout(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let reason = if conn.proxy_done {
            Reject::TlsInspectTimeout
        } else {
            Reject::ProxyHeaderTimeout
        };
        self.reject(slot, reason);
    }

    /// The backend connected: build the PROXY header if the listener sends
    /// one, then send it and the peeked bytes before relaying.
    pub(super) fn begin_relay(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let snapshot = conn.snapshot.clone();
        let settings = &snapshot.listeners[conn.listener].settings;
        if settings.proxy_protocol != ProxyProtocolSend::Off {
            let local = socket2::SockRef::from(&conn.client)
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket());
            if let (Some(src), Some(dst)) = (conn.client_addr, conn.original_dst.or(local)) {
                let mut header = Vec::with_capacity(64 + conn.preface.len());
                match settings.proxy_protocol {
                    ProxyProtocolSend::V1 => proxy_protocol::encode_v1(src, dst, &mut header),
                    _ => {
                        // Only an ALPN the client offered alone is known for sure.
                        let alpn = match conn.alpn.as_slice() {
                            [one] => Some(one.as_bytes()),
                            _ => None,
                        };
                        proxy_protocol::encode_v2(src, dst, conn.sni.as_deref(), alpn, &mut header)
                    }
                }
                header.extend_from_slice(&conn.preface);
                conn.preface = header;
            }
        }
        if self.conn(slot).preface.is_empty() {
            self.start_relay(slot);
        } else {
            self.flush_preface(slot);
        }
    }

    /// Sends what remains of the preface; relaying starts once it is all out.
    pub(super) fn flush_preface(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let fd = conn.backend_fd();
        while conn.preface_sent < conn.preface.len() {
            match sys::send(fd, &conn.preface[conn.preface_sent..]) {
                Ok(n) => conn.preface_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let t = self.token(Op::PollOut(C2B), slot);
                    self.conn(slot).inflight += 1;
                    self.ring.poll(fd, libc::POLLOUT as u32, false, t);
                    return;
                }
                Err(_) => {
                    self.conn(slot).ends_because(Termination::BackendError);
                    self.abort(slot);
                    return;
                }
            }
        }
        conn.preface = Vec::new();
        let client_bytes = std::mem::take(&mut conn.preface_client);
        conn.dirs[C2B].bytes += client_bytes as u64;
        self.count_bytes(slot, C2B, client_bytes as u64, Mode::Copy);
        self.start_relay(slot);
    }

    /// Whether a connection still has preface bytes to send.
    pub(super) fn preface_pending(&mut self, slot: u32) -> bool {
        !self.conn(slot).preface.is_empty()
    }

    fn start_relay(&mut self, slot: u32) {
        self.arm_recv(slot, C2B);
        self.arm_recv(slot, B2C);
    }
}
