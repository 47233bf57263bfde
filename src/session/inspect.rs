//! Reading a connection before a backend is chosen: an accepted PROXY
//! protocol header (only from `trusted_proxies`), then the TLS ClientHello
//! whose SNI and ALPN pick the pool (TLS passthrough: nothing is decrypted).
//! The bytes read are kept and sent to the backend first, after the PROXY
//! header spliced sends onwards, so the backend sees exactly what the client
//! sent. Parsing is done by the sans-IO parsers in `proto`; this module only
//! feeds them and acts on their answers. Also admission: access lists,
//! per-client limits and the tarpit, applied once the client is known.

use std::io;

use super::{Ctx, Io, Mode, Phase, Session, C2B};
use crate::clock;
use crate::config::{LimitAction, ProxyProtocolAccept, ProxyProtocolSend};
use crate::counters::bump;
use crate::limits::{self, ClientKey, Verdict};
use crate::outcome::{Reject, Termination};
use crate::proto::proxy_protocol::{self, Accept, Parsed};
use crate::proto::sni::{self, Peek, MAX_CLIENT_HELLO};

/// Most bytes kept while inspecting: a full ClientHello after a PROXY v2
/// header with TLVs.
pub const MAX_PEEK: usize = MAX_CLIENT_HELLO + proxy_protocol::MAX_HEADER_LEN;

impl Session {
    /// Starts a new connection: checks the PROXY source, then either reads
    /// (inspecting listeners) or goes straight to connecting.
    pub fn start(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        let listener = &self.snapshot.listeners[self.listener];
        let settings = &listener.settings;
        let inspects = listener.inspects();
        if settings.accept_proxy_protocol != ProxyProtocolAccept::Off {
            let trusted = self
                .client_addr
                .is_some_and(|a| settings.trusted_proxies.iter().any(|c| c.contains(a.ip())));
            if !trusted {
                self.reject(Reject::UntrustedProxy, ctx, io);
                return;
            }
        } else {
            self.proxy_done = true;
            // The socket's peer is the client: apply access lists and limits now.
            if !self.admit(ctx, io) {
                return;
            }
        }
        if inspects {
            self.phase = Phase::Inspecting;
            io.recv(C2B, false);
        } else {
            self.connect_next(ctx, io);
        }
    }

    /// Applies the listener's `deny`/`allow` lists and per-client limits to the
    /// connection's client address. Returns false when it was turned away
    /// (closed, or held in the tarpit).
    fn admit(&mut self, ctx: &mut Ctx, io: &mut impl Io) -> bool {
        let listener = &self.snapshot.listeners[self.listener];
        let settings = &listener.settings;
        let Some(ip) = self.client_addr.map(|a| a.ip()) else {
            return true;
        };
        if let Err(reason) = limits::access_allowed(ip, &settings.allow, &settings.deny) {
            self.reject(reason, ctx, io);
            return false;
        }
        let Some(limits) = &settings.limits else {
            return true;
        };
        let key = ClientKey::in_scope(listener.limit_scope, ip, limits.ipv6_prefix);
        match ctx.shared.limiter.admit(key, limits, clock::now_ns()) {
            Verdict::Admit(ticket) => {
                self.ticket = Some(ticket);
                true
            }
            Verdict::Reject(reason) => {
                if limits.action == LimitAction::Tarpit && *ctx.tarpitted < ctx.tarpit_cap {
                    // Hold it unread, then close: a flood pays in time, not in
                    // backend connections.
                    *ctx.tarpitted += 1;
                    bump(
                        &listener.stats.worker(ctx.worker).rejected[reason.index()],
                        1,
                    );
                    // Fields, not `ends_because`: `limits` still borrows the snapshot.
                    self.termination.get_or_insert(Termination::Rejected);
                    self.phase = Phase::Tarpit;
                    self.tarpit_until = Some(ctx.now + limits.tarpit_delay);
                } else {
                    // A full tarpit closes at once: held clients must not crowd
                    // everyone else out of the connection budget.
                    self.reject(reason, ctx, io);
                }
                false
            }
        }
    }

    /// Bytes the client sent while it is inspected. The engine has already
    /// given its receive buffer back.
    pub fn on_inspect_data(&mut self, data: &[u8], ctx: &mut Ctx, io: &mut impl Io) {
        if self.peek.capacity() == 0 {
            self.peek.reserve(4096);
        }
        self.peek.extend_from_slice(data);
        self.last_active = ctx.now;
        if self.peek.len() > MAX_PEEK {
            self.reject(Reject::BadClientHello, ctx, io);
            return;
        }
        self.inspect(ctx, io);
    }

    /// Asks the parsers about what was read so far and acts on the answer.
    fn inspect(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        // A clone: `admit` below needs all of `self` while the listener's
        // settings are still read (inspecting listeners only).
        let snapshot = self.snapshot.clone();
        let listener = &snapshot.listeners[self.listener];
        let settings = &listener.settings;
        if !self.proxy_done {
            let accept = match settings.accept_proxy_protocol {
                ProxyProtocolAccept::V1 => Accept::V1,
                ProxyProtocolAccept::V2 => Accept::V2,
                _ => Accept::Any,
            };
            match proxy_protocol::parse(&self.peek, accept) {
                Parsed::Header { header, consumed } => {
                    if let Some(src) = header.source {
                        self.client_addr = Some(src);
                    }
                    self.original_dst = header.destination;
                    self.peek.drain(..consumed);
                    self.proxy_done = true;
                    // The header named the client: apply access lists and limits now.
                    if !self.admit(ctx, io) {
                        return;
                    }
                    if settings.sni_routes.is_empty() {
                        self.finish_inspecting(ctx, io);
                        return;
                    }
                }
                Parsed::NeedMore => {
                    io.recv(C2B, false);
                    return;
                }
                Parsed::Invalid(_) => {
                    self.reject(Reject::BadProxyHeader, ctx, io);
                    return;
                }
            }
        }
        if !settings.sni_routes.is_empty() {
            if self.peek.is_empty() {
                io.recv(C2B, false);
                return;
            }
            let (sni, alpn) = match sni::peek(&self.peek) {
                Peek::Hello(info) => (info.sni, info.alpn),
                Peek::NeedMore => {
                    io.recv(C2B, false);
                    return;
                }
                Peek::NotTls => (None, Vec::new()),
                Peek::Malformed(_) => {
                    self.reject(Reject::BadClientHello, ctx, io);
                    return;
                }
            };
            if sni.is_none() && settings.require_sni {
                self.reject(Reject::NoSni, ctx, io);
                return;
            }
            self.pool = listener.route(sni.as_deref(), &alpn);
            self.sni = sni;
            self.alpn = alpn;
        }
        self.finish_inspecting(ctx, io);
    }

    /// Inspection is over: what the client sent so far goes to the backend first.
    fn finish_inspecting(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        self.preface = std::mem::take(&mut self.peek);
        self.preface_client = self.preface.len();
        self.phase = Phase::Connecting;
        self.connect_next(ctx, io);
    }

    /// The client hung up before its header or ClientHello was complete:
    /// there is nothing to route, so close now rather than at the timeout.
    pub(super) fn inspect_eof(&mut self, io: &mut impl Io) {
        self.ends_because(Termination::ClientClosed);
        self.abort(io);
    }

    /// Closes a connection that has not finished its header or ClientHello in time.
    pub(super) fn inspect_timeout(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        let reason = if self.proxy_done {
            Reject::TlsInspectTimeout
        } else {
            Reject::ProxyHeaderTimeout
        };
        self.reject(reason, ctx, io);
    }

    /// The backend connected: build the PROXY header if the listener sends
    /// one, then send it and the peeked bytes before relaying.
    pub(super) fn begin_relay(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        let snapshot = &*self.snapshot;
        let settings = &snapshot.listeners[self.listener].settings;
        if settings.proxy_protocol != ProxyProtocolSend::Off {
            if let (Some(src), Some(dst)) = (
                self.client_addr,
                self.original_dst.or_else(|| io.local_addr()),
            ) {
                let mut header = Vec::with_capacity(64 + self.preface.len());
                match settings.proxy_protocol {
                    ProxyProtocolSend::V1 => proxy_protocol::encode_v1(src, dst, &mut header),
                    _ => {
                        // Only an ALPN the client offered alone is known for sure.
                        let alpn = match self.alpn.as_slice() {
                            [one] => Some(one.as_bytes()),
                            _ => None,
                        };
                        proxy_protocol::encode_v2(src, dst, self.sni.as_deref(), alpn, &mut header)
                    }
                }
                header.extend_from_slice(&self.preface);
                self.preface = header;
            }
        }
        if self.preface.is_empty() {
            self.start_relay(io);
        } else {
            self.flush_preface(ctx, io);
        }
    }

    /// Whether preface bytes are still to be sent before relaying.
    pub(super) fn preface_pending(&self) -> bool {
        !self.preface.is_empty()
    }

    /// Sends what remains of the preface; relaying starts once it is all out.
    pub(super) fn flush_preface(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        while self.preface_sent < self.preface.len() {
            match io.write_backend_now(&self.preface[self.preface_sent..]) {
                Ok(n) => self.preface_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.wait_writable(C2B);
                    return;
                }
                Err(_) => {
                    self.ends_because(Termination::BackendError);
                    self.abort(io);
                    return;
                }
            }
        }
        self.preface = Vec::new();
        let client_bytes = std::mem::take(&mut self.preface_client);
        self.dirs[C2B].bytes += client_bytes as u64;
        self.count_bytes(ctx, C2B, client_bytes as u64, Mode::Copy);
        self.start_relay(io);
    }

    fn start_relay(&mut self, io: &mut impl Io) {
        io.recv(C2B, false);
        io.recv(super::B2C, false);
    }
}
