"""What the run reads off the machine: CPU time of process trees and of each CPU,
memory and fds of process trees, LISTEN sockets per port, and small probes
through a port (an HTTP GET, a 16-byte echo, spliced's /metrics).

Why a module of its own: these readings are the figures (balancer CPU per unit of
work, foreign load, memory per idle connection) and the setup checks (who listens
where) that every other part leans on, and they should read the same way for
every target. Everything here reads /proc or opens a client connection; it never
starts, stops or configures a process.
"""

import os
import re
import resource
import socket
import ssl
import time
import urllib.error
import urllib.request

from lib.knobs import HOST, HZ

# ---------------------------------------------------------------- CPU and memory accounting


def proc_table():
    """pid -> (ppid, utime+stime ticks) for every process (whole thread groups)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def tree_pids(table, roots):
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo, seen = [r for r in roots if r in table], []
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def tree_ticks(table, roots):
    return sum(table[pid][1] for pid in tree_pids(table, roots))


def tree_mem(roots):
    """RSS and PSS (KiB) of the process trees under `roots`, from /proc/PID/smaps_rollup;
    also their open fd count."""
    rss = pss = fds = 0
    pids = tree_pids(proc_table(), roots)
    for pid in pids:
        vals = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("Rss", "Pss"):
                        vals[k] = int(v.split()[0])
        except (OSError, ValueError):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            vals["Rss"] = int(line.split()[1])
            except OSError:
                pass
        rss += vals.get("Rss", 0)
        pss += vals.get("Pss", 0)
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return {"rss_kib": rss, "pss_kib": pss, "fds": fds, "procs": len(pids)}


def nofile_limit(pid):
    """(soft, hard) 'Max open files' of a process."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return int(soft), int(hard)
    except (OSError, ValueError):
        pass
    return None, None


def cpu_stat():
    """{'cpu': (busy, total), 'cpu0': ..., ...} in ticks from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            parts = line.split()
            vals = [int(x) for x in parts[1:9]]  # user..steal (guest is inside user)
            idle = vals[3] + vals[4]
            out[parts[0]] = (sum(vals) - idle, sum(vals))
    return out


def rusage_s(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class Snapshot:
    def __init__(self, lb_roots, backend_roots):
        self.t = time.monotonic()
        table = proc_table()
        self.lb = tree_ticks(table, lb_roots) / HZ
        self.backend = tree_ticks(table, backend_roots) / HZ
        self.children = rusage_s(resource.RUSAGE_CHILDREN)
        self.me = rusage_s(resource.RUSAGE_SELF)
        self.stat = cpu_stat()


def cpu_list(text):
    """'0-1,3' -> [0, 1, 3]"""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def busy_cores(a, b, cpus=None):
    """Cores busy between two snapshots: the whole machine, or the CPUs listed."""
    wall = b.t - a.t
    names = ["cpu"] if cpus is None else [f"cpu{c}" for c in cpus]
    ticks = sum(b.stat[n][0] - a.stat[n][0] for n in names if n in b.stat and n in a.stat)
    return ticks / HZ / wall if wall > 0 else 0.0


def foreign_load(our_roots, seconds=0.5, cpus=None):
    """Cores busy over `seconds` (whole machine or `cpus`), minus what our processes used."""
    a = Snapshot(our_roots, [])
    time.sleep(seconds)
    b = Snapshot(our_roots, [])
    wall = b.t - a.t
    ours = (b.lb - a.lb) + (b.me - a.me) + (b.children - a.children)
    return busy_cores(a, b, cpus) - ours / wall


# ---------------------------------------------------------------- listening sockets


def _hex_addrs():
    """The /proc/net/tcp{,6} spellings of the local addresses whose listeners take
    connections to HOST: HOST itself and the wildcards."""
    v4 = socket.inet_aton(HOST)
    return {
        "tcp": {v4[::-1].hex().upper(), "00000000"},
        "tcp6": {"0" * 32, "0000000000000000FFFF0000" + v4[::-1].hex().upper()},
    }


def listen_inodes(port):
    """Socket inodes of every LISTEN socket that takes connections to HOST:`port`
    (bound to HOST or to a wildcard address, IPv4 or IPv6)."""
    inodes = set()
    for name, addrs in _hex_addrs().items():
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    addr, _, hport = parts[1].partition(":")
                    if parts[3] == "0A" and int(hport, 16) == port and addr in addrs:
                        inodes.add(parts[9])
        except (OSError, StopIteration, IndexError, ValueError):
            pass
    return inodes


def socket_inodes(roots):
    """Socket inodes open in the process trees under `roots`."""
    out = set()
    for pid in tree_pids(proc_table(), roots):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
    return out


def listen_sockets(port):
    """Accept-queue lengths of the LISTEN sockets bound to 127.0.0.1:`port` (from
    /proc/net/tcp): one per SO_REUSEPORT member."""
    want = f"0100007F:{port:04X}"
    out = []
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    out.append(int(parts[4].split(":")[1], 16))
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return out


def wait_unbound(port_list, timeout=10.0):
    """Wait until no LISTEN socket is left on any of the ports: seconds waited."""
    t0 = time.monotonic()
    while any(listen_sockets(p) for p in port_list) and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return time.monotonic() - t0


# ---------------------------------------------------------------- probes through a port


def wait_port(port, timeout=10.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def http_get(port, path, timeout=5.0):
    """One HTTP/1.1 GET with Connection: close on a raw socket; returns (status, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def tls_client_context(alpn=("http/1.1",)):
    """A TLS 1.3 client context that does not verify (the bench's certificate is
    self-signed) and offers `alpn`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def https_get(port, path, ctx, session=None, timeout=5.0):
    """One HTTP/1.1 GET over TLS with Connection: close, resuming `session` if given.
    -> (status, body, session to resume next, whether this one was resumed, ALPN)."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ssl.SSLZeroReturnError:
                    break
                except ssl.SSLError as e:  # a close without close_notify, after the body
                    if data:
                        break
                    raise OSError(f"TLS: {e}") from e
                if not chunk:
                    break
                data += chunk
            # The TLS 1.3 ticket arrives after the handshake: it is there once data was read.
            sess, reused, alpn = s.session, s.session_reused, s.selected_alpn_protocol()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body, sess, reused, alpn


def dechunk(body):
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def echo_roundtrip(sock, size=16):
    """Send `size` bytes on a connected socket and read them back: latency in ms."""
    payload = os.urandom(size)
    t0 = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            raise OSError(f"connection closed after {len(got)} of {size} echoed bytes")
        got += chunk
    if got != payload:
        raise OSError("echoed bytes differ from the bytes sent")
    return (time.monotonic() - t0) * 1000


def echo_check(port, timeout=3.0):
    """A new connection to `port`, one 16-byte echo: (True, ms) or (False, why)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            return True, round(echo_roundtrip(s), 3)
    except OSError as e:
        return False, str(e) or type(e).__name__


def http_status(port, path, timeout=3.0):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return f"error: {e}"


METRICS_KEPT = (
    "spliced_relay_bytes_total",
    "spliced_splice_switches_total",
    "spliced_pipe_pool_exhausted_total",
    "spliced_rejected_connections_total",
    "spliced_connect_errors_total",
    "spliced_listener_accepted_total",
    "spliced_accept_resource_errors_total",
    "spliced_active_connections",
    "spliced_idle_timeouts_total",
    "spliced_http_requests_total",
    "spliced_tls_handshakes_total",
)


def spliced_metrics(port, by_label="mode|code_class|result"):
    """Selected spliced counters summed over labels but `by_label` (a regex alternation
    of label names: the first one a sample has counts): {name{value}: sum}
    (port: a spliced admin API's; targets.admin_port says which)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        if name not in METRICS_KEPT:
            continue
        lab = re.search(r'(?:' + by_label + r')="([^"]*)"', labels)
        key = f"{name}{{{lab.group(1)}}}" if lab else name
        try:
            out[key] = out.get(key, 0.0) + float(value)
        except ValueError:
            pass
    return out
