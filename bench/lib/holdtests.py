"""The tests that hold connections open with `tcpload hold` instead of timing a
load: `idle` (memory per idle connection of a fresh balancer) and `maxconn` (how
many connections one spliced holds, and whether it stays healthy when full).

Why a module of its own: these measure memory and capacity, not time: they do not
wait for a quiet machine, are never repeated, and drive long-lived hold processes
(one per HOLD_MAX connections, since one process cannot have more fds) that must
report `ready`, be checked for liveness and be released. Each test returns its
record; rounds keeps it (results.jsonl).
"""

import json
import math
import os
import re
import socket
import subprocess
import time

from lib import procs
from lib.backends import start_echo_server
from lib.knobs import (ECHO_SIZE, HOLD_MAX, HOLD_TIMEOUT, HOST, IDLE_CONNS, IDLE_PING, LB_CPUS, LOAD_CPUS,
                       MAXCONN_CHUNK, MAXCONN_IN_FLIGHT, MAXCONN_N, MAXCONN_TIMEOUT, OUT, SERVE_MAX, SOURCES, log)
from lib.measure import echo_check, echo_roundtrip, http_status, nofile_limit, spliced_metrics, tree_mem, wait_unbound
from lib.ports import spliced_parser, start_reporting
from lib.procs import LineReader, kill_group, tail, write
from lib.targets import balancer_ready, launch_balancer, ports, spliced_check, spliced_ready

# ---------------------------------------------------------------- hold processes


class Hold:
    """One `tcpload hold` process: opens `conns` connections, reports
    {"event":"ready",...} on stdout, holds them until its stdin closes."""

    def __init__(self, port, conns, logfile, ping=IDLE_PING, timeout=None, in_flight=None):
        self.conns = conns
        self.logfile = logfile
        self.argv = [procs.TCPLOAD, "hold", "--target", f"{HOST}:{port}", "--conns", str(conns),
                     "--sources", SOURCES, "--ping", str(ping)]
        if timeout is not None:
            self.argv += ["--timeout", str(timeout)]  # per connection: connect + ping
        if in_flight is not None:
            self.argv += ["--in-flight", str(in_flight)]
        with open(logfile, "ab") as lf:
            lf.write((" ".join(self.argv) + "\n").encode())
            lf.flush()
            self.p = subprocess.Popen(procs.taskset(LOAD_CPUS) + self.argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=lf, start_new_session=True)
        procs.HELPERS.append(self.p)
        self.reader = LineReader(self.p.stdout)
        self.events = []

    def wait_event(self, name, timeout):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            line = self.reader.readline(left)
            if line is None:
                if self.reader.eof:
                    return None
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                self.events.append(ev)
                if ev.get("event") == name:
                    return ev

    def release(self, timeout=30.0):
        """Close stdin (the hold ends), return its "done" event (or None)."""
        try:
            self.p.stdin.close()
        except OSError:
            pass
        ev = self.wait_event("done", timeout)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        kill_group(self.p)
        if self.p in procs.HELPERS:
            procs.HELPERS.remove(self.p)
        return ev


def open_holds(port, n, label, stop_on_shortfall, chunk=HOLD_MAX, **hold_opts):
    """Hold `n` connections to `port`, split over processes of at most `chunk` each
    (HOLD_MAX: one process cannot have more fds), started one after the other.
    Returns (holds, held, failed, notes)."""
    holds, held, failed, notes = [], 0, 0, []
    remaining, i = n, 0
    while remaining > 0:
        k = min(chunk, remaining)
        h = Hold(port, k, os.path.join(OUT, "run", f"{label}-hold{i}.log"), **hold_opts)
        holds.append(h)
        t0 = time.monotonic()
        ev = h.wait_event("ready", HOLD_TIMEOUT)
        if ev is None:
            why = "exited" if h.p.poll() is not None else f"no ready event within {HOLD_TIMEOUT:.0f} s"
            notes.append(f"hold {i} ({k} conns) {why}: {tail(h.logfile, 3).strip()[-300:]}")
            break
        held += int(ev.get("held", 0))
        failed += int(ev.get("failed", 0))
        log(f"  hold {i}: {ev.get('held')} held, {ev.get('failed')} failed in {time.monotonic() - t0:.1f} s"
            f" (total {held})")
        remaining -= k
        i += 1
        if stop_on_shortfall and int(ev.get("held", 0)) < k:
            break
    return holds, held, failed, notes


# ---------------------------------------------------------------- idle


def run_idle(ctx, target, rnd):
    """RSS of a fresh balancer's process tree before and after IDLE_CONNS connections
    are opened through it (each echoes IDLE_PING bytes end to end, then stays idle).
    -> the record (rounds keeps it)."""
    lb = ctx["balancers"][target]
    _, _, tcp = ports(target)
    rec = {"target": target, "test": "idle", "round": rnd, "attempt": 0, "attempts": 1,
           "ts": time.time(), "asked": IDLE_CONNS, "ping": IDLE_PING}
    # A fresh process, so that what the earlier tests left (buffers, caches, pools)
    # does not count; it then stays up as this target's balancer for the next tests.
    lb.stop()
    # The old listening sockets must be gone first, or new connections can land in a
    # dead SO_REUSEPORT member's queue (io_uring may release them after the exit).
    # (spliced starts again on new ports from the kernel, HAProxy and nginx on
    # their old ones if free; either way the old sockets are waited for.)
    lingered = wait_unbound([p for p in ports(target)])
    if lingered > 0.2:
        rec["listen_linger_s"] = round(lingered, 2)
        log(f"  {target}: its listening sockets outlived the process by {lingered:.1f} s")
    _, ok, why = launch_balancer(target, ctx["run"], ctx["bins"], lb)
    if ok:
        _, _, tcp = ports(target)
        ok, why = balancer_ready(target, lb)
    if not ok:
        rec["error"] = f"fresh {target} did not start: {why}"
        log(f"r{rnd} idle    {target:17} ERR {rec['error']}")
        return rec
    time.sleep(0.5)
    m0 = tree_mem([lb.pid])
    t0 = time.monotonic()
    holds, held, failed, notes = open_holds(tcp, IDLE_CONNS, f"idle-{rnd}-{target}", False)
    rec["hold_s"] = round(time.monotonic() - t0, 2)
    time.sleep(1.0)  # let the balancer settle (deferred frees, lazily returned buffers)
    m1 = tree_mem([lb.pid])
    # Liveness with all of them held: the balancer runs, and a new connection echoes.
    alive = lb.alive()
    ok_new, new_ms = echo_check(tcp)
    done = [h.release() for h in holds]
    rec.update(
        held=held,
        failed=failed,
        rss_before_kib=m0["rss_kib"],
        rss_after_kib=m1["rss_kib"],
        pss_before_kib=m0["pss_kib"],
        pss_after_kib=m1["pss_kib"],
        fds_before=m0["fds"],
        fds_after=m1["fds"],
        procs=m1["procs"],
        rss_at_n_mib=m1["rss_kib"] / 1024,
        alive=alive,
        new_conn_echo=ok_new,
        new_conn_ms=new_ms if ok_new else None,
        hold_events=[h.events for h in holds],
    )
    # At release each hold process pings a random sample of its connections again.
    rec["release"] = done
    done_ok = [d for d in done if d]
    rec["dropped"] = sum(int(d.get("dropped", 0)) for d in done_ok)
    rec["alive_checked"] = sum(int(d.get("alive_checked", 0)) for d in done_ok)
    rec["alive_ok"] = sum(int(d.get("alive_ok", 0)) for d in done_ok)
    if held:
        rec["kib_per_conn"] = (m1["rss_kib"] - m0["rss_kib"]) / held
        rec["pss_kib_per_conn"] = (m1["pss_kib"] - m0["pss_kib"]) / held
    rec["live"] = bool(alive and ok_new and held >= IDLE_CONNS and len(done_ok) == len(holds)
                       and rec["dropped"] == 0 and rec["alive_ok"] == rec["alive_checked"])
    problems = list(notes)
    if len(done_ok) < len(holds):
        problems.append(f"{len(holds) - len(done_ok)} hold process(es) did not report at release")
    if rec["dropped"]:
        problems.append(f"{rec['dropped']} held connections were closed by the balancer while idle")
    if rec["alive_ok"] < rec["alive_checked"]:
        problems.append(f"only {rec['alive_ok']} of {rec['alive_checked']} sampled held connections echoed at release")
    if held < IDLE_CONNS:
        problems.append(f"held only {held} of {IDLE_CONNS} ({failed} failed)")
    if not alive:
        problems.append(f"{target} exited (code {lb.p.returncode})")
        rec["crashed"] = True
    if not ok_new:
        problems.append(f"a new connection did not echo with {held} held: {new_ms}")
    if problems:
        rec["error"] = "; ".join(problems)
    log(f"r{rnd} idle    {target:17} {held} held, RSS {m0['rss_kib'] / 1024:.1f} → {m1['rss_kib'] / 1024:.1f} MiB, "
        + (f"{rec['kib_per_conn']:.2f} KiB/conn (PSS {rec['pss_kib_per_conn']:.2f})" if held else "")
        + (f" ERR {rec['error']}" if rec.get("error") else
           f", live (sample {rec['alive_ok']}/{rec['alive_checked']} echoed at release)"))
    return rec


# ---------------------------------------------------------------- maxconn


def maxconn_conf(n, backend_ports):
    # Port 0: the kernel picks, spliced logs where (spliced_parser).
    backends = ", ".join(f"{HOST}:{p}" for p in backend_ports)
    return (
        "workers: 1\n"
        f"admin: {{listen: {HOST}:0}}\n"
        "listeners:\n"
        f"  - {{name: hold, listen: {HOST}:0, pool: hold, backlog: 65535,"
        f" max_connections: {2 * n}}}\n"
        "pools:\n"
        f"  - {{name: hold, algorithm: round_robin, backends: [{backends}]}}\n"
    )


def run_maxconn(ctx, run, spliced_bin):
    """Try to hold MAXCONN_N connections through one fresh spliced (1 worker) and
    report how many it held, what stopped it, and whether it stayed healthy.
    -> the record (rounds keeps it)."""
    n = MAXCONN_N
    rec = {"target": "spliced", "test": "maxconn", "round": 0, "attempt": 0, "attempts": 1,
           "ts": time.time(), "asked": n}
    nserve = max(1, math.ceil(n / SERVE_MAX))
    # One tcpload serve per SERVE_MAX connections, each on a port from the kernel.
    bports, serves = [], []
    for i in range(min(nserve, 64)):
        s, pp, why = start_echo_server(run, f"maxconn-serve{i}", 1)
        serves.append(s)
        if pp is None:
            rec["error"] = f"tcpload serve {i} did not come up: {why}"
            break
        bports.append(pp[0])
    logfile = os.path.join(run, "spliced-maxconn.log")
    log_start = os.path.getsize(logfile) if os.path.exists(logfile) else 0
    lb = None
    try:
        if "error" in rec:
            raise RuntimeError(rec["error"])
        conf = write(os.path.join(run, "spliced-maxconn.yaml"), maxconn_conf(n, bports))
        spliced_check(spliced_bin, conf)
        lb, found, why = start_reporting(None, "spliced-maxconn", [spliced_bin, "run", "-c", conf], LB_CPUS,
                                         logfile, spliced_parser(("hold", "admin")))
        if found is None:
            raise RuntimeError(f"spliced-maxconn did not start: {why}")
        port, admin = found["hold"], found["admin"]
        rec["ports"] = {"listener": port, "admin": admin, "backends": bports}
        if not spliced_ready(admin, lb):
            raise RuntimeError(f"spliced-maxconn did not start: {lb.tail(5)}")
        rec["nofile_soft"], rec["nofile_hard"] = nofile_limit(lb.pid)
        m0 = tree_mem([lb.pid])
        rec["fds_base"] = m0["fds"]
        if rec["nofile_soft"]:
            rec["fd_bound"] = (rec["nofile_soft"] - m0["fds"]) // 2
        # Probes opened first: they must still echo once the table is full.
        probes = []
        for _ in range(8):
            s = socket.create_connection((HOST, port), timeout=5)
            echo_roundtrip(s, ECHO_SIZE)
            probes.append(s)
        log(f"maxconn: trying {n} connections through spliced (RLIMIT_NOFILE {rec['nofile_soft']}/"
            f"{rec['nofile_hard']}, {m0['fds']} fds in use; on port {port}, backends on ports "
            f"{' '.join(map(str, bports))})")
        t0 = time.monotonic()
        holds, held, failed, notes = open_holds(port, n - len(probes), "maxconn", True,
                                                chunk=min(MAXCONN_CHUNK, HOLD_MAX), timeout=MAXCONN_TIMEOUT,
                                                in_flight=MAXCONN_IN_FLIGHT)
        rec["fill_s"] = round(time.monotonic() - t0, 1)
        time.sleep(1.0)
        mem = tree_mem([lb.pid])
        metrics = spliced_metrics(admin, by_label="reason")
        rec.update(held=held + len(probes), failed=failed, hold_processes=len(holds),
                   hold_notes=notes, fds_full=mem["fds"], rss_full_mib=mem["rss_kib"] / 1024,
                   alive_full=lb.alive(), ready_full=http_status(admin, "/ready"),
                   metrics_full=metrics)
        if held:
            rec["kib_per_conn"] = (mem["rss_kib"] - m0["rss_kib"]) / rec["held"]
        # Existing connections still echo?
        lat, bad = [], []
        for s in probes:
            try:
                s.settimeout(5)
                lat.append(echo_roundtrip(s, ECHO_SIZE))
            except OSError as e:
                bad.append(str(e) or type(e).__name__)
        rec["probe_ok"], rec["probe_failed"] = len(lat), bad
        rec["probe_ms_max"] = round(max(lat), 3) if lat else None
        for s in probes:
            s.close()
        done = [h.release() for h in holds]
        done_ok = [d for d in done if d]
        rec["release_sample"] = [sum(int(d.get("alive_ok", 0)) for d in done_ok),
                                 sum(int(d.get("alive_checked", 0)) for d in done_ok)]
        rec["dropped"] = sum(int(d.get("dropped", 0)) for d in done_ok)
        # Accept resumes once fds are free again.
        time.sleep(1.5)
        ok, ms = echo_check(port, timeout=5)
        rec.update(recovered=ok, recovered_detail=ms, ready_after=http_status(admin, "/ready"),
                   alive_after=lb.alive(),
                   metrics_after=spliced_metrics(admin, by_label="reason"))
        with open(lb.logfile, "rb") as f:
            f.seek(log_start)
            logtext = f.read().decode("utf-8", "replace")
        fd_lines = [line for line in logtext.splitlines()
                    if "file descriptors" in line or "fd limit" in line]
        rec["log_fd_warnings"] = len(fd_lines)
        rec["log_excerpt"] = [line[:300] for line in fd_lines][:3]
        # spliced logs the connection budget it derived from the fd limit at start.
        with open(lb.logfile, "rb") as f:
            m_budget = re.search(rb"max_connections_by_fds=(\d+)", f.read())
        rec["conn_budget"] = int(m_budget.group(1)) if m_budget else None
        # The admin API needs an fd per request too: when the table is full it may
        # not answer, so the counters are read after the release (they only grow).
        m = rec["metrics_after"] or metrics or {}
        res_rej = m.get("spliced_rejected_connections_total{resources}", 0)
        acc_err = m.get("spliced_accept_resource_errors_total", 0)
        if rec["held"] >= n:
            rec["stopped_by"] = "nothing: all held"
        elif acc_err or res_rej or rec["log_fd_warnings"]:
            rec["stopped_by"] = (
                f"spliced's fd limit: RLIMIT_NOFILE {rec['nofile_soft']} (hard {rec['nofile_hard']}), "
                f"2 fds per proxied connection + {rec['fds_base']} of its own → at most "
                f"{rec.get('fd_bound')} connections; spliced's own budget under that limit "
                f"(max_connections_by_fds, keeping fds for its admin API): {rec.get('conn_budget')}; "
                f"accept ran out of fds {acc_err:.0f} times, {res_rej:.0f} connections refused "
                f"(rejected{{reason=resources}})")
        else:
            rec["stopped_by"] = "client side or timeout: " + "; ".join(notes)
        rec["healthy"] = bool(rec["alive_full"] and rec["alive_after"] and rec["probe_ok"] == len(probes)
                              and rec["recovered"] and rec["ready_after"] == 200
                              and rec["release_sample"][0] == rec["release_sample"][1])
        log(f"maxconn: held {rec['held']} of {n}; stopped by {rec['stopped_by']}; probes {rec['probe_ok']}/"
            f"{len(probes)} echoed; /ready {rec['ready_full']} when full, {rec['ready_after']} after; "
            f"recovered {ok}")
    except (RuntimeError, OSError) as e:
        rec["error"] = str(e)
        log(f"maxconn: ERR {e}")
    finally:
        if lb is not None:
            lb.stop()
        for s in serves:
            s.stop()
    if rec.get("alive_full") is False or rec.get("alive_after") is False:
        rec["crashed"] = True
        rec["error"] = (rec.get("error", "") + " | spliced-maxconn exited").strip(" |")
    return rec
