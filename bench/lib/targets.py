"""The targets: what each one is (TARGET_SPEC), the config each balancer is started
with (HAProxy, nginx stream, spliced), starting and restarting a balancer on ports
of its own, and checking end to end that it forwards before it is measured.

Why a module of its own: the configs are the one place where the balancers must be
set up alike (three frontends, round robin over the same backends, the same
limits), so they sit side by side here; the load tests only ask `ports(target)`.
TARGET_PORTS (where each balancer listens now) is assigned here each time one
(re)starts. This module never runs a load test.
"""

import os
import socket
import subprocess
import time

from lib import backends
from lib.backends import nginx_common, start_iperf_server
from lib.knobs import (HOST, HTTPS_TARGETS, LB_CPUS, LB_CPUS2, SMALL_BODY, SPLICED_BIN, SPLICED_BIN_B,
                       SPLICED_REF_B, log)
from lib.measure import (echo_check, http_get, http_status, https_get, listen_sockets, tls_client_context,
                         wait_port, wait_unbound)
from lib.ports import spliced_parser, start_on_free_ports, start_reporting
from lib.procs import have, have_tcpload, write

NGINX_STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"

# Each balancer listens on an http, a bulk and a tcp (echo) port; spliced also has
# its admin API. `direct` goes to the first HTTP backend port, the iperf3 server
# and the first echo port.
TARGET_SPEC = {
    "direct": {"kind": "direct", "workers": 1},
    "haproxy": {"kind": "haproxy", "workers": 1, "splice": False},
    "haproxy-splice": {"kind": "haproxy", "workers": 1, "splice": True},
    "nginx": {"kind": "nginx", "workers": 1},
    "spliced": {"kind": "spliced", "workers": 1},
    # The same config on the epoll engine (`dataplane: epoll`), for where io_uring
    # is refused: its cost beside io_uring, and beside HAProxy (also epoll).
    "spliced-epoll": {"kind": "spliced", "workers": 1, "dataplane": "epoll"},
    "haproxy-t2-splice": {"kind": "haproxy", "workers": 2, "splice": True},
    "nginx-w2": {"kind": "nginx", "workers": 2},
    "spliced-w2": {"kind": "spliced", "workers": 2},
    # The same config as `spliced`, run by the B binary (SPLICED_BIN_B).
    "spliced-b": {"kind": "spliced", "workers": 1, "bin": "b"},
}
# Where each running balancer listens now: target -> {"http", "bulk", "tcp", "admin"}
# (admin: spliced only, else None). Set each time a balancer (re)starts: spliced
# gets new ports from the kernel on every start; HAProxy and nginx try their
# previous ones first.
TARGET_PORTS = {}
# HTTP mode (TLS termination): when the run has HTTPS tests, setup_tls() makes one
# ECDSA P-256 certificate in the run dir and the HTTPS_TARGETS get a fourth
# frontend, "https" (TLS 1.3, ALPN h2 + http/1.1, HTTP proxying to the same nginx
# backends); TARGET_PORTS[t]["https"] is None otherwise.
TLS = {}  # {"cert": PATH, "key": PATH, "pem": cert + key for HAProxy}; empty: no https frontends
# What the end-to-end check found per target: ALPN offered h2 -> chosen, TLS resumption.
TLS_CHECK = {}
# The 1-worker target each 2-worker one is compared with (scaling curve).
SCALE_OF = {"haproxy-t2-splice": "haproxy-splice", "nginx-w2": "nginx", "spliced-w2": "spliced"}


def ports(target):
    """(http, bulk, tcp echo) ports of a target."""
    spec = TARGET_SPEC[target]
    if spec["kind"] == "direct":
        return backends.BACKEND_PORTS[0], backends.IPERF_PORT, backends.ECHO_PORTS[0]
    tp = TARGET_PORTS[target]
    return tp["http"], tp["bulk"], tp["tcp"]


def https_port(target):
    """The target's https frontend, or None (no HTTPS tests in the run, or a target without one)."""
    return TARGET_PORTS.get(target, {}).get("https")


def has_https(target):
    return bool(TLS) and target in HTTPS_TARGETS


def setup_tls(run):
    """The run's certificate: ECDSA P-256, self-signed, localhost + 127.0.0.1, made with
    openssl in OUT/run/tls/ (every HTTPS frontend serves this one)."""
    d = os.path.join(run, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key, pem = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "haproxy.pem"))
    cp = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                         "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost",
                         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], capture_output=True, text=True)
    if cp.returncode != 0:
        raise SystemExit(f"openssl req failed: {cp.stderr}")
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    TLS.update(cert=cert, key=key, pem=pem)
    return TLS


def admin_port(target):
    if TARGET_SPEC[target]["kind"] != "spliced":
        return None
    return TARGET_PORTS.get(target, {}).get("admin")


def kind(target):
    return TARGET_SPEC[target]["kind"]


def lb_cpus(target):
    return LB_CPUS2 if TARGET_SPEC[target]["workers"] > 1 else LB_CPUS


# ---------------------------------------------------------------- configs


def haproxy_conf(target, tp):
    http, bulk, tcp = tp["http"], tp["bulk"], tp["tcp"]
    spec = TARGET_SPEC[target]
    splice = "    option splice-request\n    option splice-response\n" if spec["splice"] else ""

    def servers(port_list):
        return "".join(f"    server s{i + 1} {HOST}:{p}\n" for i, p in enumerate(port_list))

    # maxconn/maxpipes as in research/peer-baseline.md: HAProxy 2.6 refuses to
    # start if its computed fd need exceeds the (unraisable) 20000 limit.
    https = ""
    if tp.get("https"):
        # mode http, TLS 1.3 only, tickets on (HAProxy's default: https-resume resumes),
        # backend connections reused (http-reuse safe), as research/l7-peer-baseline.md.
        https = (f"frontend fe_https\n    mode http\n    bind {HOST}:{tp['https']} ssl crt {TLS['pem']} alpn h2,http/1.1\n"
                 "    default_backend be_https\n"
                 "backend be_https\n    mode http\n    http-reuse safe\n" + servers(backends.BACKEND_PORTS))
    return (
        f"global\n    nbthread {spec['workers']}\n    maxconn 9644\n    maxpipes 256\n"
        + ("    ssl-default-bind-options ssl-min-ver TLSv1.3\n" if https else "")
        + "defaults\n    mode tcp\n    balance roundrobin\n    maxconn 9644\n"
        "    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n"
        + splice
        + f"frontend fe_http\n    bind {HOST}:{http}\n    default_backend be_http\n"
        + "backend be_http\n"
        + servers(backends.BACKEND_PORTS)
        + f"frontend fe_bulk\n    bind {HOST}:{bulk}\n    default_backend be_bulk\n"
        + f"backend be_bulk\n    server s1 {HOST}:{backends.IPERF_PORT}\n"
        + f"frontend fe_tcp\n    bind {HOST}:{tcp}\n    default_backend be_tcp\n"
        + "backend be_tcp\n"
        + servers(backends.ECHO_PORTS)
        + https
    )


def nginx_stream_conf(run, target, tp):
    http, bulk, tcp = tp["http"], tp["bulk"], tp["tcp"]
    head, tmp = nginx_common(run, target, TARGET_SPEC[target]["workers"])

    def ups(port_list):
        return " ".join(f"server {HOST}:{p};" for p in port_list)

    https = ""
    if tp.get("https"):
        # proxy_pass to a keepalive upstream, TLS 1.3 only, tickets on (nginx's
        # default), no request limit per client connection (keepalive_requests also
        # bounds h2 in 1.22: its default 1000 would add handshakes to the h1/h2 tests).
        https = (
            "http {\n    access_log off;\n    keepalive_requests 1000000000;\n    keepalive_timeout 300s;\n"
            + "".join(f"    {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"    upstream be_https {{ {ups(backends.BACKEND_PORTS)} keepalive 64; }}\n"
            f"    server {{\n        listen {HOST}:{tp['https']} ssl http2 backlog=65535;\n"
            f"        ssl_certificate {TLS['cert']};\n        ssl_certificate_key {TLS['key']};\n"
            "        ssl_protocols TLSv1.3;\n        ssl_session_tickets on;\n"
            "        location / { proxy_pass http://be_https; proxy_http_version 1.1;"
            " proxy_set_header Connection \"\"; }\n    }\n}\n")

    # worker_connections counts both sides of a proxied connection: 19900 covers
    # the idle test's 9000 held connections (18000) in one worker.
    return (
        head
        + f"load_module {NGINX_STREAM_SO};\n"
        "events { worker_connections 19900; }\n"
        "stream {\n"
        f"    upstream be_http {{ {ups(backends.BACKEND_PORTS)} }}\n"
        f"    server {{ listen {HOST}:{http} backlog=65535; proxy_pass be_http; }}\n"
        f"    upstream be_bulk {{ server {HOST}:{backends.IPERF_PORT}; }}\n"
        f"    server {{ listen {HOST}:{bulk} backlog=65535; proxy_pass be_bulk; }}\n"
        f"    upstream be_tcp {{ {ups(backends.ECHO_PORTS)} }}\n"
        f"    server {{ listen {HOST}:{tcp} backlog=65535; proxy_pass be_tcp; }}\n"
        "}\n"
        + https
    )


def spliced_conf(target):
    # Port 0 everywhere: the kernel picks, spliced logs where (spliced_parser).
    def addrs(port_list):
        return ", ".join(f"{HOST}:{p}" for p in port_list)

    https = has_https(target)
    return (
        f"workers: {TARGET_SPEC[target]['workers']}\n"
        f"dataplane: {TARGET_SPEC[target].get('dataplane', 'auto')}\n"
        f"admin: {{listen: {HOST}:0}}\n"
        # HTTP mode: the run's certificate (served for no SNI too: clients of
        # 127.0.0.1 send none), TLS 1.3, ALPN h2 + http/1.1, pooled h1 backends.
        + (f"tls:\n  - {{name: bench, certs: [{{cert: {TLS['cert']}, key: {TLS['key']}}}], default: localhost}}\n"
           if https else "")
        + "listeners:\n"
        f"  - {{name: http, listen: {HOST}:0, pool: http, backlog: 65535}}\n"
        f"  - {{name: bulk, listen: {HOST}:0, pool: bulk, backlog: 65535}}\n"
        f"  - {{name: tcp, listen: {HOST}:0, pool: tcp, backlog: 65535}}\n"
        + (f"  - {{name: https, listen: {HOST}:0, mode: http, pool: web, backlog: 65535,"
           " tls: {store: bench, alpn: [h2, http/1.1], min_version: \"1.3\"}}\n" if https else "")
        + "pools:\n"
        f"  - {{name: http, algorithm: round_robin, backends: [{addrs(backends.BACKEND_PORTS)}]}}\n"
        f"  - {{name: bulk, algorithm: round_robin, backends: [{HOST}:{backends.IPERF_PORT}]}}\n"
        f"  - {{name: tcp, algorithm: round_robin, backends: [{addrs(backends.ECHO_PORTS)}]}}\n"
        + (f"  - {{name: web, algorithm: round_robin, backends: [{addrs(backends.BACKEND_PORTS)}]}}\n"
           if https else "")
    )


# ---------------------------------------------------------------- starting and checking a balancer


def target_available(target):
    k = kind(target)
    if k == "direct":
        return True, ""
    if k == "haproxy":
        return (have("haproxy"), "haproxy is not installed")
    if k == "nginx":
        ok = have("nginx") and os.path.exists(NGINX_STREAM_SO)
        return ok, f"nginx or its stream module ({NGINX_STREAM_SO}) is not installed"
    if k == "spliced" and TARGET_SPEC[target].get("bin") == "b":
        if not SPLICED_BIN_B:
            return False, ("no B binary: set SPLICED_BIN_B, or SPLICED_REF_B with bench/run.sh"
                           if not SPLICED_REF_B else "SPLICED_REF_B is built by bench/run.sh, not bench.py")
        return os.access(SPLICED_BIN_B, os.X_OK), f"SPLICED_BIN_B={SPLICED_BIN_B} is not an executable"
    if k == "spliced":
        ok = os.access(SPLICED_BIN, os.X_OK)
        return ok, f"no spliced binary at {SPLICED_BIN} (cargo build --release)"
    return False, "unknown target"


def spliced_check(spliced_bin, conf):
    chk = subprocess.run([spliced_bin, "check", "-c", conf], capture_output=True, text=True)
    if chk.returncode != 0:
        raise SystemExit(f"spliced check failed:\n{chk.stdout}{chk.stderr}")


def spliced_bin_of(target, spliced_bin):
    """The binary a spliced target runs: `spliced_bin` is one path (build A) or
    {"a": path, "b": path} (the frozen copies of both builds)."""
    if isinstance(spliced_bin, dict):
        return spliced_bin[TARGET_SPEC[target].get("bin", "a")]
    return spliced_bin


def launch_balancer(target, run, spliced_bin, lb=None):
    """Start balancer `target` (lb=None) or restart `lb`, with a config generated for
    the ports it gets: spliced listens on port 0 and its log says which ports the
    kernel gave; HAProxy and nginx get ports picked just before they start (a
    restart tries its previous ones first) and are started again on new ones if they
    do not listen there alone. Sets TARGET_PORTS[target]. -> (proc, ok, why)."""
    k = kind(target)
    logfile = os.path.join(run, f"{target}.log")
    cpus = lb_cpus(target)
    if k == "spliced":
        conf = write(os.path.join(run, f"{target}.yaml"), spliced_conf(target))
        exe = spliced_bin_of(target, spliced_bin)
        spliced_check(exe, conf)
        names = ("http", "bulk", "tcp", "admin") + (("https",) if has_https(target) else ())
        lb, found, why = start_reporting(lb, target, [exe, "run", "-c", conf], cpus, logfile,
                                         spliced_parser(names))
        if found is None:
            return lb, False, why
        TARGET_PORTS[target] = {n: found.get(n) for n in ("http", "bulk", "tcp", "admin", "https")}
        return lb, True, ""

    nports = 4 if has_https(target) else 3

    def argv_for(pp):
        tp = {"http": pp[0], "bulk": pp[1], "tcp": pp[2], "admin": None, "https": pp[3] if nports == 4 else None}
        if k == "haproxy":
            conf = write(os.path.join(run, f"{target}.cfg"), haproxy_conf(target, tp))
            return ["haproxy", "-db", "-f", conf]
        conf = write(os.path.join(run, f"{target}.conf"), nginx_stream_conf(run, target, tp))
        return ["nginx", "-p", run, "-e", f"{run}/{target}.err", "-c", conf]

    old = TARGET_PORTS.get(target)
    first = [old["http"], old["bulk"], old["tcp"]] + ([old["https"]] if nports == 4 else []) if old else None
    try:
        lb, pp = start_on_free_ports(target, nports, argv_for, logfile, cpus=cpus, proc=lb, first=first)
    except SystemExit as e:
        return lb, False, str(e)
    TARGET_PORTS[target] = {"http": pp[0], "bulk": pp[1], "tcp": pp[2], "admin": None,
                            "https": pp[3] if nports == 4 else None}
    return lb, True, ""


def spliced_ready(admin, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while True:
        if http_status(admin, "/ready", timeout=2) == 200:
            return True
        if time.monotonic() > end or not proc.alive():
            return False
        time.sleep(0.1)


def balancer_ready(target, proc):
    http, _, tcp = ports(target)
    if not wait_port(http, proc=proc):
        return False, "listener did not come up"
    if kind(target) == "spliced" and not spliced_ready(admin_port(target), proc):
        return False, "/ready did not answer 200"
    # One real request end to end, checking the body.
    try:
        for _ in range(3):  # hits each backend port once with round robin
            status, body = http_get(http, "/small.txt")
            if status != 200 or body != SMALL_BODY:
                return False, f"GET /small.txt gave status {status}, body {body[:40]!r}"
    except OSError as e:
        return False, f"GET /small.txt failed: {e} (LISTEN sockets on {http}, accept queues: {listen_sockets(http)})"
    if https_port(target):
        ok, why = https_ready(target)
        if not ok:
            return False, why
    if have_tcpload():
        for _ in range(3):  # each echo backend once
            ok, why = echo_check(tcp)
            if not ok:
                return False, f"echo through port {tcp} failed: {why} (LISTEN sockets, accept queues: {listen_sockets(tcp)})"
    return True, ""


def https_ready(target):
    """Through the https frontend: GET /small.txt over h1 (each backend once, the body
    checked), a resumed TLS 1.3 handshake (a ticket of the first connection) and
    ALPN h2 chosen when offered. Resumption and h2 are recorded in TLS_CHECK (a
    missing one is logged: https-resume/https-h2 then measure something else)."""
    port = https_port(target)
    ctx = tls_client_context()
    sess, resumed = None, []
    try:
        for _ in range(4):
            status, body, sess, reused, _ = https_get(port, "/small.txt", ctx, session=sess)
            if status != 200 or body != SMALL_BODY:
                return False, f"https GET /small.txt gave status {status}, body {body[:60]!r}"
            resumed.append(reused)
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with tls_client_context(("h2", "http/1.1")).wrap_socket(raw, server_hostname="localhost") as s:
                alpn = s.selected_alpn_protocol()
        # The request s_time sends in https-new/https-resume (see httpstests.https_cmd).
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX: HTTP/1.0\r\n\r\n")
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    data += chunk
        if not data.startswith(b"HTTP/1.1 200") or not data.endswith(SMALL_BODY):
            return False, f"the s_time request through https gave {data[:80]!r}"
    except OSError as e:
        return False, f"https GET /small.txt failed: {e}"
    TLS_CHECK[target] = {"resumed": resumed[1:], "alpn_h2": alpn}
    if not all(resumed[1:]) or alpn != "h2":
        log(f"{target} https: resumption {resumed[1:]}, ALPN with h2 offered: {alpn}")
    return True, ""


def start_balancer(target, run, spliced_bin):
    p, ok, why = launch_balancer(target, run, spliced_bin)
    if ok:
        ok, why = balancer_ready(target, p)
    if not ok:
        raise SystemExit(f"{target} did not start: {why}\n--- log ---\n{p.tail() if p else ''}")
    return p


def restart_iperf(ctx):
    """A failed iperf3 client can leave the server waiting on a dead test: restart
    it, on its port if it can get it back, else on a new one, and then restart the
    balancers too, with configs that point at it."""
    srv = next(p for p in ctx["backends"] if p.name == "iperf3-server")
    srv.stop()
    _, (port,) = start_iperf_server(ctx["run"], proc=srv, first=[backends.IPERF_PORT])
    if port != backends.IPERF_PORT:
        log(f"iperf3 server moved from port {backends.IPERF_PORT} to {port}: restarting the balancers")
        backends.IPERF_PORT = port
        for t, lb in ctx["balancers"].items():
            old = ports(t)
            lb.stop()
            wait_unbound(old)
            _, ok, why = launch_balancer(t, ctx["run"], ctx["bins"], lb)
            if ok:
                ok, why = balancer_ready(t, lb)
            if not ok:
                log(f"{t} restart failed: {why}")
