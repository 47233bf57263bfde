#!/usr/bin/env python3
"""spliced vs HAProxy vs nginx (stream) on loopback: throughput, latency and
balancer CPU per unit of work. Run it through bench/run.sh (which installs the
tools and builds spliced); bench/README.md explains the method and the figures.

Everything listens on 127.0.0.1, on ports below 32768. Every process this script
starts runs in its own session/process group and is killed on exit.
"""

import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def env(name, default):
    v = os.environ.get(name, "")
    return v if v != "" else default


SMOKE = env("SMOKE", "0") == "1"
REPS = int(env("REPS", "1" if SMOKE else "3"))
DUR = int(env("DUR", "2" if SMOKE else "5"))
ALL_TARGETS = ["direct", "haproxy", "haproxy-splice", "nginx", "spliced"]
ALL_TESTS = ["ka", "close", "big", "ip1", "ip4"]
TARGETS = env("TARGETS", "spliced" if SMOKE else " ".join(ALL_TARGETS)).replace(",", " ").split()
TESTS = env("TESTS", " ".join(ALL_TESTS)).replace(",", " ").split()
LB_CPUS = env("LB_CPUS", "0")  # the balancer under test
LOAD_CPUS = env("LOAD_CPUS", "1")  # backends, load generators, this script
QUIET_LIMIT = float(env("QUIET_LIMIT", "0.3"))  # cores of foreign load tolerated
QUIET_WAIT = float(env("QUIET_WAIT", "0" if SMOKE else "60"))  # s to wait for quiet per test
QUIET_BUDGET = float(env("QUIET_BUDGET", "1200"))  # s of waiting for quiet in the whole run
RETRIES = int(env("RETRIES", "0" if SMOKE else "2"))  # repeats of a contaminated test
GAP = float(env("GAP", "0.5"))  # pause between tests (s)
SYSCTL = env("SYSCTL", "1") == "1"
STAMP = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
OUT = os.path.abspath(env("OUT", os.path.join(HERE, "out", STAMP)))
SPLICED_BIN = env("SPLICED_BIN", os.path.join(ROOT, "target", "release", "spliced"))

HZ = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
BACKEND_PORTS = [18081, 18082, 18083]
IPERF_PORT = 15201
SMALL_BODY = b"Hello, world\n"  # 13 bytes
BIG_SIZE = 1 << 20
# Each balancer: http port, bulk port (+ admin port for spliced). Direct goes to
# the first nginx port and to the iperf3 server.
PORTS = {
    "direct": (BACKEND_PORTS[0], IPERF_PORT),
    "haproxy": (21010, 21011),
    "haproxy-splice": (21020, 21021),
    "nginx": (21030, 21031),
    "spliced": (21040, 21041),
}
SPLICED_ADMIN = 21042
for _p in [*BACKEND_PORTS, IPERF_PORT, SPLICED_ADMIN, *[p for ps in PORTS.values() for p in ps]]:
    assert _p < 32768

TEST_LABEL = {
    "ka": "keep-alive 13 B (wrk -c64)",
    "close": "Connection: close (wrk -c64)",
    "big": "1 MiB GET (wrk -c8)",
    "ip1": "iperf3 -P1",
    "ip4": "iperf3 -P4",
}

STARTED = []  # every Proc we started, for cleanup
SYSCTL_RESTORE = {}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Proc:
    """A long-running helper (backend or balancer) in its own process group."""

    def __init__(self, name, argv, cpus, logfile, cwd=None):
        self.name = name
        self.argv = argv
        self.cpus = cpus
        self.logfile = logfile
        self.cwd = cwd
        self.restarts = 0
        self.start()

    def start(self):
        with open(self.logfile, "ab") as lf:
            self.p = subprocess.Popen(
                taskset(self.cpus) + self.argv,
                stdin=subprocess.DEVNULL,
                stdout=lf,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid = self.p.pid
        if self not in STARTED:
            STARTED.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The group may still hold children (nginx workers) even if the leader exited.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n=20):
        try:
            with open(self.logfile, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


def taskset(cpus):
    return ["taskset", "-c", cpus] if cpus and PIN else []


def cleanup():
    for p in reversed(STARTED):
        p.stop()
    STARTED.clear()
    for path, value in SYSCTL_RESTORE.items():
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            pass
    SYSCTL_RESTORE.clear()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


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


# ---------------------------------------------------------------- CPU accounting


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


def tree_ticks(table, roots):
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, [r for r in roots if r in table], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += table[pid][1]
        todo.extend(children.get(pid, []))
    return total


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


# ---------------------------------------------------------------- setup


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def have(cmd):
    return shutil.which(cmd) is not None


NGINX_STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"


def nginx_common(run, name):
    tmp = os.path.join(run, f"{name}-tmp")
    os.makedirs(tmp, exist_ok=True)
    return (
        "daemon off;\nmaster_process on;\nworker_processes 1;\nworker_rlimit_nofile 20000;\n"
        f"pid {run}/{name}.pid;\nerror_log {run}/{name}.err warn;\n",
        tmp,
    )


def start_backends(run, www):
    procs = []
    if have("nginx"):
        head, tmp = nginx_common(run, "nginx-backend")
        listens = "".join(f"        listen {HOST}:{p} backlog=65535;\n" for p in BACKEND_PORTS)
        conf = write(
            os.path.join(run, "nginx-backend.conf"),
            head
            + "events { worker_connections 19900; }\n"
            "http {\n"
            "    access_log off;\n    sendfile on;\n    tcp_nopush on;\n"
            "    keepalive_requests 1000000000;\n    keepalive_timeout 300s;\n"
            "    open_file_cache max=100 inactive=60s;\n"
            "    default_type application/octet-stream;\n"
            + "".join(
                f"    {k}_temp_path {tmp}/{k};\n"
                for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + "    server {\n"
            + listens
            + f"        root {www};\n"
            "    }\n}\n",
        )
        procs.append(
            Proc(
                "nginx-backend",
                ["nginx", "-p", run, "-e", f"{run}/nginx-backend.err", "-c", conf],
                LOAD_CPUS,
                os.path.join(run, "nginx-backend.log"),
            )
        )
        kind = "nginx"
    else:
        log("nginx is not installed: using the slow Python backend (bench/backend.py)")
        procs.append(
            Proc(
                "py-backend",
                [sys.executable, os.path.join(HERE, "backend.py"), www, *map(str, BACKEND_PORTS)],
                LOAD_CPUS,
                os.path.join(run, "py-backend.log"),
            )
        )
        kind = "python"
    if have("iperf3"):
        procs.append(start_iperf_server(run))
    for p in BACKEND_PORTS:
        if not wait_port(p, proc=procs[0]):
            raise SystemExit(f"backend on port {p} did not come up:\n{procs[0].tail()}")
    return procs, kind


def start_iperf_server(run):
    return Proc(
        "iperf3-server",
        ["iperf3", "-s", "-B", HOST, "-p", str(IPERF_PORT)],
        LOAD_CPUS,
        os.path.join(run, "iperf3-server.log"),
    )


def haproxy_conf(target):
    http, bulk = PORTS[target]
    splice = (
        "    option splice-request\n    option splice-response\n"
        if target == "haproxy-splice"
        else ""
    )
    servers = "".join(
        f"    server s{i + 1} {HOST}:{p}\n" for i, p in enumerate(BACKEND_PORTS)
    )
    # maxconn/maxpipes as in research/peer-baseline.md: HAProxy 2.6 refuses to
    # start if its computed fd need exceeds the (unraisable) 20000 limit.
    return (
        "global\n    nbthread 1\n    maxconn 9644\n    maxpipes 256\n"
        "defaults\n    mode tcp\n    balance roundrobin\n    maxconn 9644\n"
        "    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n"
        + splice
        + f"frontend fe_http\n    bind {HOST}:{http}\n    default_backend be_http\n"
        + "backend be_http\n"
        + servers
        + f"frontend fe_bulk\n    bind {HOST}:{bulk}\n    default_backend be_bulk\n"
        + f"backend be_bulk\n    server s1 {HOST}:{IPERF_PORT}\n"
    )


def nginx_stream_conf(run):
    http, bulk = PORTS["nginx"]
    head, _ = nginx_common(run, "nginx-stream")
    ups = " ".join(f"server {HOST}:{p};" for p in BACKEND_PORTS)
    return (
        head
        + f"load_module {NGINX_STREAM_SO};\n"
        "events { worker_connections 19900; }\n"
        "stream {\n"
        f"    upstream be_http {{ {ups} }}\n"
        f"    server {{ listen {HOST}:{http} backlog=65535; proxy_pass be_http; }}\n"
        f"    upstream be_bulk {{ server {HOST}:{IPERF_PORT}; }}\n"
        f"    server {{ listen {HOST}:{bulk} backlog=65535; proxy_pass be_bulk; }}\n"
        "}\n"
    )


def spliced_conf():
    http, bulk = PORTS["spliced"]
    backends = ", ".join(f"{HOST}:{p}" for p in BACKEND_PORTS)
    return (
        "workers: 1\n"
        f"admin: {{listen: {HOST}:{SPLICED_ADMIN}}}\n"
        "listeners:\n"
        f"  - {{name: http, listen: {HOST}:{http}, pool: http, backlog: 65535}}\n"
        f"  - {{name: bulk, listen: {HOST}:{bulk}, pool: bulk, backlog: 65535}}\n"
        "pools:\n"
        f"  - {{name: http, algorithm: round_robin, backends: [{backends}]}}\n"
        f"  - {{name: bulk, algorithm: round_robin, backends: [{HOST}:{IPERF_PORT}]}}\n"
    )


def target_available(target):
    if target == "direct":
        return True, ""
    if target.startswith("haproxy"):
        return (have("haproxy"), "haproxy is not installed")
    if target == "nginx":
        ok = have("nginx") and os.path.exists(NGINX_STREAM_SO)
        return ok, f"nginx or its stream module ({NGINX_STREAM_SO}) is not installed"
    if target == "spliced":
        ok = os.access(SPLICED_BIN, os.X_OK)
        return ok, f"no spliced binary at {SPLICED_BIN} (cargo build --release)"
    return False, "unknown target"


def balancer_argv(target, run, spliced_bin):
    if target.startswith("haproxy"):
        conf = write(os.path.join(run, f"{target}.cfg"), haproxy_conf(target))
        return ["haproxy", "-db", "-f", conf]
    if target == "nginx":
        conf = write(os.path.join(run, "nginx-stream.conf"), nginx_stream_conf(run))
        return ["nginx", "-p", run, "-e", f"{run}/nginx-stream.err", "-c", conf]
    if target == "spliced":
        conf = write(os.path.join(run, "spliced.yaml"), spliced_conf())
        chk = subprocess.run(
            [spliced_bin, "check", "-c", conf], capture_output=True, text=True
        )
        if chk.returncode != 0:
            raise SystemExit(f"spliced check failed:\n{chk.stdout}{chk.stderr}")
        return [spliced_bin, "run", "-c", conf]
    raise ValueError(target)


def balancer_ready(target, proc):
    http, _ = PORTS[target]
    if not wait_port(http, proc=proc):
        return False, "listener did not come up"
    if target == "spliced":
        end = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{SPLICED_ADMIN}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end or not proc.alive():
                return False, "/ready did not answer 200"
            time.sleep(0.1)
    # One real request end to end, checking the body.
    try:
        for _ in range(3):  # hits each backend port once with round robin
            status, body = http_get(http, "/small.txt")
            if status != 200 or body != SMALL_BODY:
                return False, f"GET /small.txt gave status {status}, body {body[:40]!r}"
    except OSError as e:
        return False, f"GET /small.txt failed: {e}"
    return True, ""


def start_balancer(target, run, spliced_bin):
    argv = balancer_argv(target, run, spliced_bin)
    p = Proc(target, argv, LB_CPUS, os.path.join(run, f"{target}.log"))
    ok, why = balancer_ready(target, p)
    if not ok:
        raise SystemExit(f"{target} did not start: {why}\n--- log ---\n{p.tail()}")
    return p


def raise_sysctls():
    if not SYSCTL or os.geteuid() != 0:
        return
    for path, want in (
        ("/proc/sys/net/core/somaxconn", 65535),
        ("/proc/sys/net/ipv4/tcp_max_syn_backlog", 65535),
    ):
        try:
            with open(path) as f:
                old = f.read().strip()
            if int(old) < want:
                with open(path, "w") as f:
                    f.write(str(want))
                SYSCTL_RESTORE[path] = old
        except (OSError, ValueError):
            pass


def spliced_metrics():
    """Selected spliced counters summed over labels: {(name, mode): value}."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{SPLICED_ADMIN}/metrics", timeout=3) as r:
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
        if name not in (
            "spliced_relay_bytes_total",
            "spliced_splice_switches_total",
            "spliced_pipe_pool_exhausted_total",
            "spliced_rejected_connections_total",
            "spliced_connect_errors_total",
            "spliced_listener_accepted_total",
        ):
            continue
        mode = re.search(r'mode="([^"]*)"', labels)
        key = f"{name}{{{mode.group(1)}}}" if mode else name
        try:
            out[key] = out.get(key, 0.0) + float(value)
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------- tests


def test_cmd(test, target):
    http, bulk = PORTS[target]
    lua = os.path.join(HERE, "report.lua")
    if test in ("ka", "close", "big"):
        conns = 8 if test == "big" else 64
        path = "/1m.bin" if test == "big" else "/small.txt"
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{DUR}s", "-s", lua]
        if test == "close":
            cmd += ["-H", "Connection: close"]
        return cmd + [f"http://{HOST}:{http}{path}"]
    n = {"ip1": 1, "ip4": 4}[test]
    return ["iperf3", "-c", HOST, "-p", str(bulk), "-t", str(DUR), f"-P{n}", "-J",
            "--connect-timeout", "3000"]


def parse_result(test, out, rc):
    """-> dict of figures from the load generator's output (error text if any)."""
    r = {"rc": rc}
    if test in ("ka", "close", "big"):
        m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
        if not m:
            r["error"] = "no wrk summary: " + out[-400:]
            return r
        w = json.loads(m.group(1))
        secs = w["duration_us"] / 1e6
        r.update(
            requests=w["requests"],
            bytes=w["bytes"],
            secs=secs,
            rps=w["requests"] / secs if secs else 0.0,
            gbps=w["bytes"] * 8 / secs / 1e9 if secs else 0.0,
            gbit=w["bytes"] * 8 / 1e9,
            p50_ms=w["p50_us"] / 1000,
            p99_ms=w["p99_us"] / 1000,
            p999_ms=w["p999_us"] / 1000,
            errors=w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"],
            non2xx=w["err_status"],
            err_detail={k: w[k] for k in w if k.startswith("err_") and w[k]},
        )
        return r
    try:
        j = json.loads(out)
    except ValueError:
        r["error"] = "iperf3 output is not JSON: " + out[-400:]
        return r
    if j.get("error"):
        r["error"] = "iperf3: " + j["error"]
    s = j.get("end", {}).get("sum_received", {})
    if s:
        r.update(
            bytes=s.get("bytes", 0),
            secs=s.get("seconds", 0.0),
            gbps=s.get("bits_per_second", 0.0) / 1e9,
            gbit=s.get("bytes", 0) * 8 / 1e9,
        )
        snt = j.get("end", {}).get("sum_sent", {})
        r["retransmits"] = snt.get("retransmits")
    return r


def run_once(ctx, target, test):
    lb = ctx["balancers"].get(target)
    backend_roots = [p.pid for p in ctx["backends"]]
    lb_roots = [lb.pid] if lb else []
    our_roots = backend_roots + [p.pid for p in ctx["balancers"].values()]

    rec = {"target": target, "test": test}
    # Wait for the machine to be quiet (other people's builds and tests).
    t0 = time.monotonic()
    limit = min(QUIET_WAIT, max(0.0, QUIET_BUDGET - ctx["waited"]))
    # `direct` leaves the balancer CPU idle: load there does not touch it, and any
    # CPU-bound job elsewhere on the machine fills it, so only the load CPUs count.
    cpus = cpu_list(LOAD_CPUS) if PIN and target == "direct" else None
    load = foreign_load(our_roots, 0.5, cpus)
    while load > QUIET_LIMIT and time.monotonic() - t0 < limit:
        time.sleep(1)
        load = foreign_load(our_roots, 1.0, cpus)
    waited = time.monotonic() - t0
    ctx["waited"] += waited
    rec["quiet_wait_s"] = round(waited, 1)
    rec["foreign_before"] = round(load, 3)
    rec["busy_start"] = load > QUIET_LIMIT  # started on a busy machine (wait timed out)

    m0 = spliced_metrics() if target == "spliced" else None
    cmd = test_cmd(test, target)
    a = Snapshot(lb_roots, backend_roots)
    try:
        cp = subprocess.run(
            taskset(LOAD_CPUS) + cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DUR + 30,
        )
        out, rc = cp.stdout + cp.stderr, cp.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out, rc = out, "timeout"
    b = Snapshot(lb_roots, backend_roots)
    m1 = spliced_metrics() if target == "spliced" else None

    wall = b.t - a.t
    rec.update(parse_result(test, out, rc))
    if rc == "timeout":
        rec["error"] = f"load generator still running after {DUR + 30} s (stall?)"
    elif rc != 0 and "error" not in rec:
        rec["error"] = f"exit code {rc}: {out[-400:]}"
    lb_cpu = b.lb - a.lb
    rec.update(
        wall=round(wall, 3),
        lb_cpu_s=round(lb_cpu, 3),
        lb_cores=round(lb_cpu / wall, 3),
        backend_cores=round((b.backend - a.backend) / wall, 3),
        loadgen_cores=round((b.children - a.children) / wall, 3),
        me_cores=round((b.me - a.me) / wall, 3),
        machine_cores=round(busy_cores(a, b), 3),
        cpu0_cores=round(busy_cores(a, b, [0]), 3) if "cpu0" in b.stat else None,
        cpu1_cores=round(busy_cores(a, b, [1]), 3) if "cpu1" in b.stat else None,
    )
    ours_load = (b.backend - a.backend) + (b.children - a.children) + (b.me - a.me)
    rec["foreign_cores"] = round(rec["machine_cores"] - (lb_cpu + ours_load) / wall, 3)
    if PIN:
        # Pinning is strict, so foreign load can be told apart per CPU group.
        rec["foreign_lb_cpus"] = round(busy_cores(a, b, cpu_list(LB_CPUS)) - lb_cpu / wall, 3)
        rec["foreign_load_cpus"] = round(busy_cores(a, b, cpu_list(LOAD_CPUS)) - ours_load / wall, 3)
    # The figure that decides whether the test was contaminated (see wait above).
    rec["foreign"] = rec["foreign_load_cpus"] if PIN and target == "direct" else rec["foreign_cores"]
    if lb and lb_cpu > 0:
        if "requests" in rec and test in ("ka", "close"):
            rec["per_cpu"] = rec["requests"] / lb_cpu  # requests per balancer CPU-second
        elif "gbit" in rec:
            rec["per_cpu"] = rec["gbit"] / lb_cpu  # Gbit per balancer CPU-second
    if m0 is not None and m1 is not None:
        rec["spliced"] = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1}
    if lb is not None and not lb.alive():
        rec["error"] = (rec.get("error", "") + f" | {target} exited (code {lb.p.returncode})").strip(" |")
        rec["crashed"] = True
    if test.startswith("ip") and rec.get("error"):
        rec["iperf_restarted"] = True
    return rec, out


def run_test(ctx, target, test, rnd):
    best = None
    for attempt in range(RETRIES + 1):
        lb = ctx["balancers"].get(target)
        if lb is not None and not lb.alive():
            log(f"{target} is not running (exit code {lb.p.returncode}); restarting it")
            lb.restarts += 1
            lb.start()
            ok, why = balancer_ready(target, lb)
            if not ok:
                log(f"{target} restart failed: {why}")
        rec, out = run_once(ctx, target, test)
        rec.update(round=rnd, attempt=attempt, ts=time.time())
        with open(os.path.join(OUT, "raw", f"{rnd}-{test}-{target}-{attempt}.txt"), "w") as f:
            f.write(" ".join(test_cmd(test, target)) + "\n" + out)
        if rec.get("iperf_restarted"):
            # A failed iperf3 client can leave the server waiting on a dead test.
            srv = next(p for p in ctx["backends"] if p.name == "iperf3-server")
            srv.stop()
            srv.start()
            wait_port(IPERF_PORT, proc=srv)
        ctx["jsonl"].write(json.dumps(rec) + "\n")
        ctx["jsonl"].flush()
        summary = (
            f"r{rnd} {test:5} {target:15} "
            + (f"{rec['rps']:>9,.0f} req/s p99 {rec['p99_ms']:.2f} ms " if "rps" in rec and test != "big" else "")
            + (f"{rec['gbps']:6.2f} Gbit/s " if test in ("big", "ip1", "ip4") and "gbps" in rec else "")
            + f"lb {rec['lb_cores']:.2f} cores, foreign {rec['foreign']:+.2f}"
            + (f" ERR {rec['error']}" if rec.get("error") else "")
            + (f" sockerr {rec['errors']}" if rec.get("errors") else "")
            + (f" non2xx {rec['non2xx']}" if rec.get("non2xx") else "")
        )
        log(summary)
        if best is None or rec["foreign"] < best["foreign"]:
            best = rec
        if rec["foreign"] <= QUIET_LIMIT or rec.get("error"):
            break
        if rec["busy_start"]:
            # The machine never went quiet: repeating now would be no cleaner.
            break
        if attempt < RETRIES:
            log(f"  {rec['foreign']:.2f} cores of foreign load during the test: repeating it")
        time.sleep(GAP)
    best["kept"] = True
    best["attempts"] = attempt + 1
    ctx["jsonl"].write(json.dumps({"kept_ref": [best["round"], test, target, best["attempt"]]}) + "\n")
    ctx["results"].append(best)
    time.sleep(GAP)


# ---------------------------------------------------------------- report


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fnum(v, kind):
    if v is None:
        return "–"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "ratio":
        return f"{v:.2f}"
    if kind == "pct":
        return f"{v:.0f}%"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# (key, column title, test, field, format, lower_is_better)
FIGURES = [
    ("ka_rps", "KA req/s", "ka", "rps", "int", False),
    ("ka_p50", "KA p50 ms", "ka", "p50_ms", "g", True),
    ("ka_p99", "KA p99 ms", "ka", "p99_ms", "g", True),
    ("close_rps", "close conn/s", "close", "rps", "int", False),
    ("close_p99", "close p99 ms", "close", "p99_ms", "g", True),
    ("big_gbps", "1 MiB Gbit/s", "big", "gbps", "g", False),
    ("ip1_gbps", "iperf3 ×1 Gbit/s", "ip1", "gbps", "g", False),
    ("ip4_gbps", "iperf3 ×4 Gbit/s", "ip4", "gbps", "g", False),
]
EFFICIENCY = [
    ("ka_cpu", "KA req/CPU-s", "ka", "per_cpu", "int", False),
    ("close_cpu", "close conn/CPU-s", "close", "per_cpu", "int", False),
    ("big_cpu", "1 MiB Gbit/CPU-s", "big", "per_cpu", "g", False),
    ("ip1_cpu", "ip×1 Gbit/CPU-s", "ip1", "per_cpu", "g", False),
    ("ip4_cpu", "ip×4 Gbit/CPU-s", "ip4", "per_cpu", "g", False),
]
RATIO_ROWS = [
    ("KA req/s", "ka", "rps"),
    ("KA req/CPU-s", "ka", "per_cpu"),
    ("KA p99 (lower is better)", "ka", "p99_ms"),
    ("close conn/s", "close", "rps"),
    ("close conn/CPU-s", "close", "per_cpu"),
    ("close p99 (lower is better)", "close", "p99_ms"),
    ("1 MiB Gbit/s", "big", "gbps"),
    ("1 MiB Gbit/CPU-s", "big", "per_cpu"),
    ("iperf3 ×1 Gbit/s", "ip1", "gbps"),
    ("iperf3 ×1 Gbit/CPU-s", "ip1", "per_cpu"),
    ("iperf3 ×4 Gbit/s", "ip4", "gbps"),
    ("iperf3 ×4 Gbit/CPU-s", "ip4", "per_cpu"),
]


def report(ctx, meta):
    res = ctx["results"]
    targets = [t for t in ctx["targets"]]

    def vals(target, test, field):
        return [r.get(field) for r in res if r["target"] == target and r["test"] == test]

    def m(target, test, field):
        return med(vals(target, test, field))

    def dirty(r):
        return r.get("foreign", r["foreign_cores"]) > QUIET_LIMIT

    def mark(target, test):
        n = sum(1 for r in res if r["target"] == target and r["test"] == test and dirty(r))
        return "*" * min(n, 3)

    def cell(target, test, field, kind):
        v = m(target, test, field)
        return fnum(v, kind) + (mark(target, test) if v is not None else "")

    md = [f"# spliced benchmark — {meta['date']}", ""]
    md.append(
        f"{meta['reps']} rounds × {meta['dur']} s per test, medians over rounds. "
        f"Balancer pinned to CPU {LB_CPUS}, backends + load generators to CPU {LOAD_CPUS}"
        + ("" if meta.get("pinned", PIN) else " (pinning OFF: fewer than 2 CPUs or no taskset)")
        + f". Backend: {meta['backend']}. Load average at start: {meta['loadavg_start']}."
    )
    md.append("")
    md.append("Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    md.append("")
    md.append("## Throughput and latency")
    md.append("")
    md.append(f"`*` after a figure: one star per round whose test ran with more than {QUIET_LIMIT} cores "
              "of foreign load (other people's work on the machine; see Run hygiene).")
    md.append("")
    rows = []
    for t in targets:
        errs = sum((r.get("errors") or 0) + (r.get("non2xx") or 0) + (1 if r.get("error") else 0)
                   for r in res if r["target"] == t)
        rows.append([t] + [cell(t, test, f, k) for _, _, test, f, k, _ in FIGURES] + [str(errs)])
    md.append(table(["target"] + [c for _, c, *_ in FIGURES] + ["errors"], rows))
    md.append("")
    md.append("## Balancer CPU efficiency (process-tree utime+stime)")
    md.append("")
    rows = []
    for t in targets:
        if t == "direct":
            continue
        busy = "/".join(fnum(m(t, test, "lb_cores"), "ratio") for test in ALL_TESTS if test in TESTS)
        rows.append([t] + [cell(t, test, f, k) for _, _, test, f, k, _ in EFFICIENCY] + [busy])
    md.append(table(["target"] + [c for _, c, *_ in EFFICIENCY]
                    + ["balancer cores busy (" + "/".join(x for x in ALL_TESTS if x in TESTS) + ")"], rows))
    md.append("")
    if "spliced" in targets:
        peers = [t for t in targets if t != "spliced"]
        if peers:
            md.append("## spliced ÷ peer (medians; >1 = spliced higher)")
            md.append("")
            rows = []
            for title, test, field in RATIO_ROWS:
                if test not in TESTS:
                    continue
                row = [title]
                for p in peers:
                    s, o = m("spliced", test, field), m(p, test, field)
                    row.append(fnum(s / o, "ratio") if s is not None and o else "–")
                rows.append(row)
            md.append(table(["figure"] + peers, rows))
            md.append("")
    md.append("## Spread over rounds (min–max, (max−min)/median)")
    md.append("")
    rows = []
    spreads = []
    for t in targets:
        row = [t]
        for _, _, test, f, k, _ in FIGURES + EFFICIENCY:
            if f in ("p50_ms",):
                continue
            v = [x for x in vals(t, test, f) if x is not None]
            if not v:
                row.append("–")
                continue
            mid = statistics.median(v)
            sp = (max(v) - min(v)) / mid * 100 if mid else 0
            spreads.append(sp)
            row.append(f"{fnum(min(v), k)}–{fnum(max(v), k)} ({sp:.0f}%)")
        rows.append(row)
    md.append(table(["target"] + [c for _, c, _, f, *_ in FIGURES + EFFICIENCY if f != "p50_ms"], rows))
    if spreads:
        md.append("")
        md.append(f"Median spread over all cells: {statistics.median(spreads):.0f}% (max {max(spreads):.0f}%).")
    md.append("")
    if "spliced" in targets:
        md.append("## spliced data path (from its /metrics, delta over each test)")
        md.append("")
        rows = []
        for test in ALL_TESTS:
            rs = [r for r in res if r["target"] == "spliced" and r["test"] == test and r.get("spliced")]
            if not rs:
                continue
            sp = [r["spliced"].get("spliced_relay_bytes_total{splice}", 0.0) for r in rs]
            cp = [r["spliced"].get("spliced_relay_bytes_total{copy}", 0.0) for r in rs]
            sw = [r["spliced"].get("spliced_splice_switches_total", 0.0) for r in rs]
            ex = [r["spliced"].get("spliced_pipe_pool_exhausted_total", 0.0) for r in rs]
            rj = [r["spliced"].get("spliced_rejected_connections_total", 0.0) for r in rs]
            ce = [r["spliced"].get("spliced_connect_errors_total", 0.0) for r in rs]
            share = [s / (s + c) * 100 if s + c else 0.0 for s, c in zip(sp, cp)]
            rows.append([test, f"{med(sp) / 1e6:,.0f}", f"{med(cp) / 1e6:,.0f}", fnum(med(share), "pct"),
                         fnum(med(sw), "int"), fnum(med(ex), "int"), fnum(med(rj), "int"), fnum(med(ce), "int")])
        md.append(table(["test", "splice MB", "copy MB", "splice share", "splice switches",
                         "pipe pool exhausted", "rejected conns", "connect errors"], rows))
        md.append("")
    md.append("## Run hygiene")
    md.append("")
    attempts = sum(r.get("attempts", 1) for r in res)
    repeated = sum(1 for r in res if r.get("attempts", 1) > 1)
    fc = [r.get("foreign", r["foreign_cores"]) for r in res]
    waited = [r["quiet_wait_s"] for r in res if r["quiet_wait_s"] > 1]
    dirty_runs = [r for r in res if dirty(r)]
    md.append(
        f"{len(res)} tests kept out of {attempts} run; {repeated} repeated because foreign load "
        f"exceeded {QUIET_LIMIT} cores. Foreign (unaccounted) CPU in kept tests: median "
        f"{fnum(med(fc), 'ratio')}, max {fnum(max(fc) if fc else None, 'ratio')} cores; "
        f"{len(dirty_runs)} kept tests still above {QUIET_LIMIT} cores"
        + (" (by round: " + ", ".join(
            f"r{n}: {sum(1 for r in dirty_runs if r['round'] == n)}/{sum(1 for r in res if r['round'] == n)}"
            for n in sorted({r['round'] for r in res})) + ")" if dirty_runs else "")
        + f". Waited for quiet before {len(waited)} tests"
        + (f" (total {sum(waited):.0f} s)" if waited else "")
        + f"; {sum(1 for r in res if r.get('busy_start'))} started on a still-busy machine "
        f"(wait limit {QUIET_WAIT:.0f} s per test, {QUIET_BUDGET:.0f} s per run)."
    )
    errs = [r for r in res if r.get("error") or r.get("errors") or r.get("non2xx")]
    for r in errs:
        md.append(f"- r{r['round']} {r['test']} {r['target']}: "
                  + ", ".join(x for x in [r.get("error"),
                                          f"socket errors {r['errors']} {r.get('err_detail')}" if r.get("errors") else None,
                                          f"non-2xx {r['non2xx']}" if r.get("non2xx") else None] if x))
    for t, p in ctx["balancers"].items():
        if p.restarts:
            md.append(f"- {t} exited and was restarted {p.restarts} time(s); see {t}.log")
    md.append("")
    md.append(f"Raw data: results.jsonl (one line per test run), raw/ (load generator output), run/ (configs, logs). Took {meta['elapsed']}.")
    return "\n".join(md) + "\n"


# ---------------------------------------------------------------- main


def version(cmd):
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (cp.stdout + cp.stderr).strip()
        m = re.search(r"\d+\.\d+(\.\d+)?([-+~.\w]*)?", text)
        return m.group(0) if m else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


PIN = False


def rerender(out):
    """bench.py --report DIR: rebuild DIR/results.md from DIR/summary.json."""
    global TESTS
    with open(os.path.join(out, "summary.json")) as f:
        data = json.load(f)
    meta = data["meta"]
    TESTS = meta["tests"]
    ctx = {"targets": meta["targets"], "results": data["results"], "balancers": {}}
    md = report(ctx, meta)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


def main():
    global PIN, TARGETS, TESTS
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        return rerender(sys.argv[2])
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    ncpu = os.cpu_count() or 1
    PIN = ncpu >= 2 and have("taskset")
    if PIN:
        os.sched_setaffinity(0, {int(c) for c in LOAD_CPUS.split(",")})
    for t in TARGETS:
        if t not in ALL_TARGETS:
            raise SystemExit(f"unknown target {t!r}; known: {' '.join(ALL_TARGETS)}")
    for t in TESTS:
        if t not in ALL_TESTS:
            raise SystemExit(f"unknown test {t!r}; known: {' '.join(ALL_TESTS)}")
    if not have("wrk"):
        raise SystemExit("wrk is not installed (bench/run.sh installs it)")
    if not have("iperf3"):
        skipped = [t for t in TESTS if t.startswith("ip")]
        if skipped:
            log(f"iperf3 is not installed: skipping {' '.join(skipped)}")
        TESTS = [t for t in TESTS if not t.startswith("ip")]
    targets = []
    for t in TARGETS:
        ok, why = target_available(t)
        if ok:
            targets.append(t)
        else:
            log(f"skipping target {t}: {why}")
    if not targets or not TESTS:
        raise SystemExit("nothing to run")

    os.makedirs(os.path.join(OUT, "raw"), exist_ok=True)
    run = os.path.join(OUT, "run")
    www = os.path.join(run, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "small.txt"), "wb") as f:
        f.write(SMALL_BODY)
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(os.urandom(BIG_SIZE))
    # Freeze the binary: others may rebuild target/ while this runs.
    spliced_bin = SPLICED_BIN
    if "spliced" in targets:
        spliced_bin = os.path.join(run, "spliced")
        shutil.copy2(SPLICED_BIN, spliced_bin)

    git = os.environ.get("SPLICED_GIT") or subprocess.run(
        ["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "reps": REPS,
        "dur": DUR,
        "targets": targets,
        "tests": TESTS,
        "kernel": platform.release(),
        "cpus": ncpu,
        "pinned": PIN,
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "versions": {
            "spliced": version([spliced_bin, "--version"]) + (f" ({git})" if git else "") if "spliced" in targets else "–",
            "haproxy": version(["haproxy", "-v"]),
            "nginx": version(["nginx", "-v"]),
            "wrk": version(["wrk", "-v"]),
            "iperf3": version(["iperf3", "-v"]),
            "kernel": platform.release(),
        },
    }
    meta["loadavg_start"] = " ".join(meta["loadavg_start"])
    log(f"out: {OUT}; targets: {' '.join(targets)}; tests: {' '.join(TESTS)}; {REPS} rounds × {DUR} s")
    log(f"load average now: {meta['loadavg_start']}")

    ctx = {"targets": targets, "balancers": {}, "backends": [], "results": [], "waited": 0.0}
    t_start = time.monotonic()
    interrupted = None
    try:
        raise_sysctls()
        ctx["backends"], meta["backend"] = start_backends(run, www)
        for t in targets:
            if t != "direct":
                ctx["balancers"][t] = start_balancer(t, run, spliced_bin)
        log("backends and balancers up")
        with open(os.path.join(OUT, "results.jsonl"), "w") as jl:
            ctx["jsonl"] = jl
            jl.write(json.dumps({"meta": meta}) + "\n")
            try:
                for rnd in range(REPS):
                    order = targets[rnd % len(targets):] + targets[: rnd % len(targets)]
                    for test in TESTS:
                        for target in order:
                            run_test(ctx, target, test, rnd)
            except (KeyboardInterrupt, SystemExit) as e:
                interrupted = e
                log("interrupted: writing a partial report")
        if "spliced" in targets:
            meta["spliced_metrics_end"] = spliced_metrics()
    finally:
        cleanup()
    el = int(time.monotonic() - t_start)
    meta["elapsed"] = f"{el // 60} min {el % 60} s"
    if interrupted is not None:
        meta["elapsed"] += " (INTERRUPTED: partial results)"
    md = report(ctx, meta)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"meta": meta, "results": ctx["results"]}, f, indent=1)
    print(md)
    log(f"written {OUT}/results.md")

    bad = [r for r in ctx["results"] if r["target"] == "spliced"
           and (r.get("error") or r.get("errors") or r.get("non2xx") or not (r.get("rps") or r.get("gbps")))]
    crashed = any(r.get("crashed") for r in ctx["results"])
    if interrupted is not None:
        return 130
    if crashed:
        log("a balancer exited during the run")
        return 2
    if SMOKE and bad:
        log(f"SMOKE: spliced had {len(bad)} failing test(s)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
