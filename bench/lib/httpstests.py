"""The HTTP-mode tests (TLS termination on the targets' https frontend): the load
commands (h2load for h2/h1 keep-alive at saturation and at a fixed offered rate,
`openssl s_time -new` / `-reuse` for a full / resumed handshake per connection,
wrk for a new connection per request as wrk does it, i.e. resumed), reading their figures, and https-idle (memory per idle TLS
connection of a fresh balancer, held by bench/tlshold.py).

Why a module of its own: these tests use other tools than the L4 ones and their
figures come from other outputs (h2load's summary and per-request log, s_time's
per-connection marks), but they are measured the same way: loadtests.run_once
does the CPU accounting around the command given here, rounds does the quiet
waits and retries. Nothing here touches the L4 tests.
"""

import json
import os
import re
import subprocess
import sys
import time

from lib import procs
from lib.knobs import (DUR, H2LOAD_TESTS, HERE, HOST, HTTPS_CLOSE_CONNS, HTTPS_CONNS, HTTPS_IDLE_CONNS,
                       HTTPS_RATE, HTTPS_STIME_CONC, HTTPS_STREAMS, LOAD_CPUS, OUT, log)
from lib.measure import tree_mem, wait_unbound
from lib.procs import LineReader, kill_group, tail
from lib.targets import balancer_ready, https_port, launch_balancer, ports


def h2load_log():
    """Where h2load writes its per-request log (one test at a time, overwritten)."""
    return os.path.join(OUT, "run", "h2load-requests.log")


def https_cmd(test, target):
    port = https_port(target)
    url = f"https://{HOST}:{port}/small.txt"
    if test in H2LOAD_TESTS:
        h1 = test.startswith("https-h1")
        cmd = ["h2load", "-t1", f"-c{HTTPS_CONNS}", f"-m{1 if h1 else HTTPS_STREAMS}", f"-D{DUR}"]
        if h1:
            cmd.append("--h1")
        if test.endswith("-rate"):
            cmd += [f"--rps={max(1, HTTPS_RATE // HTTPS_CONNS)}", f"--log-file={h2load_log()}"]
        return cmd + [url]
    if test == "https-close":
        # wrk keeps each connection's SSL object and its session across reconnects
        # (SSL_clear after a clean shutdown): every request is a new TCP connection,
        # but nearly every handshake RESUMES the last one (checked with nginx's
        # $ssl_session_reused: 1199 of 1200). h2load does the same.
        return ["wrk", "-t1", f"-c{HTTPS_CLOSE_CONNS}", f"-d{DUR}s", "-s", os.path.join(HERE, "report.lua"),
                "-H", "Connection: close", url]
    if test in ("https-new", "https-resume"):
        # s_time -new: a full handshake (ECDHE X25519 + ECDSA P-256) per connection;
        # -reuse: one full handshake, then every connection resumes that session.
        # It prints `*` per full and `r` per resumed connection; an HTTP/1.0 GET, so
        # the connection closes after the response. One connection at a time per
        # process: several in parallel load the proxy.
        # s_time sends "GET PAGE HTTP/1.0\r\n\r\n", no Host (spliced answers that
        # with a 4xx without asking the backend): PAGE carries a whole HTTP/1.1
        # request head, so that every proxy forwards the same request as in the
        # other tests ("X: HTTP/1.0" is then a harmless header).
        page = "/small.txt HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\nX:"
        one = (f"openssl s_time -connect {HOST}:{port} -www \"$page\" "
               f"{'-new' if test == 'https-new' else '-reuse'} -time {DUR}")
        # Each into a file of its own (their marks would interleave on one pipe), then all.
        tmp = os.path.join(OUT, "run", "stime.XXXXXX")
        return ["sh", "-c", f"page=$(printf '{page}') && d=$(mktemp -d {tmp}) && "
                            f"for i in $(seq {HTTPS_STIME_CONC}); do {one} > $d/$i 2>&1 & "
                            "done; wait; cat $d/*; rm -rf $d"]
    raise ValueError(test)


def h2load_latency(path):
    """p50/p99/p99.9 (ms) of the per-request durations in h2load's --log-file."""
    try:
        with open(path) as f:
            d = sorted(int(line.split("\t")[2]) for line in f if line.count("\t") >= 2)
    except (OSError, ValueError, IndexError):
        return {}
    if not d:
        return {}

    def pct(p):
        return d[min(len(d) - 1, int(len(d) * p / 100))] / 1000

    return {"p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "p999_ms": pct(99.9), "max_ms": d[-1] / 1000}


def parse_https(test, out, rc):
    """-> dict of figures of an HTTPS test from its tool's output (error text if any)."""
    r = {"rc": rc}
    if test in H2LOAD_TESTS:
        fin = re.search(r"^finished in ([\d.]+)(m?s), ([\d.]+) req/s", out, re.M)
        req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                        r"(\d+) errored, (\d+) timeout", out, re.M)
        codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
        if not (fin and req and codes):
            r["error"] = "no h2load summary: " + out[-400:]
            return r
        secs = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
        ok = int(req.group(4))
        r.update(requests=ok, secs=secs, rps=ok / secs if secs else 0.0,
                 errors=int(req.group(5)) + int(req.group(6)) + int(req.group(7)),
                 non2xx=sum(int(codes.group(i)) for i in (2, 3, 4)),
                 err_detail={k: int(req.group(i)) for k, i in (("failed", 5), ("errored", 6), ("timeout", 7))
                             if int(req.group(i))})
        if test.endswith("-rate"):
            r["offered_rps"] = max(1, HTTPS_RATE // HTTPS_CONNS) * HTTPS_CONNS
            r.update(h2load_latency(h2load_log()))
        return r
    if test == "https-close":
        m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
        if not m:
            r["error"] = "no wrk summary: " + out[-400:]
            return r
        w = json.loads(m.group(1))
        secs = w["duration_us"] / 1e6
        r.update(requests=w["requests"], secs=secs, rps=w["requests"] / secs if secs else 0.0,
                 p50_ms=w["p50_us"] / 1000, p99_ms=w["p99_us"] / 1000, p999_ms=w["p999_us"] / 1000,
                 errors=w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"],
                 non2xx=w["err_status"], err_detail={k: w[k] for k in w if k.startswith("err_") and w[k]})
        return r
    # https-new / https-resume: per s_time process "N connections in T real seconds,
    # B bytes read per connection" (of the -new or -reuse pass), one mark per connection.
    runs = re.findall(r"^(\d+) connections in (\d+) real seconds, (\d+) bytes read per connection", out, re.M)
    if len(runs) < HTTPS_STIME_CONC:
        r["error"] = f"{len(runs)} of {HTTPS_STIME_CONC} s_time summaries: " + out[-400:]
        if not runs:
            return r
    conns = sum(int(n) for n, _, _ in runs)
    marks = "".join(re.findall(r"^[r*t123]+$", out, re.M))
    secs = DUR  # s_time's "real seconds" is whole seconds of time(): coarser than -time
    r.update(requests=conns, secs=secs, rps=conns / secs, resumed=marks.count("r"), full=marks.count("*"),
             bytes_per_conn=[int(b) for _, _, b in runs], errors=out.count("ERROR") + out.count("Unable to"))
    if test == "https-resume" and conns and r["resumed"] < 0.99 * conns:
        r["error"] = f"only {r['resumed']} of {conns} connections were resumed (s_time marks)"
    if test == "https-new" and r["resumed"]:
        r["error"] = f"{r['resumed']} of {conns} connections were resumed (s_time marks), not full handshakes"
    return r


# ---------------------------------------------------------------- https-idle


class TlsHold:
    """One bench/tlshold.py process (see its docstring): ready / done events on stdout."""

    def __init__(self, port, conns, logfile):
        self.argv = [sys.executable, os.path.join(HERE, "tlshold.py"), HOST, str(port), str(conns)]
        with open(logfile, "ab") as lf:
            lf.write((" ".join(self.argv) + "\n").encode())
            lf.flush()
            self.p = subprocess.Popen(procs.taskset(LOAD_CPUS) + self.argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=lf, start_new_session=True)
        self.logfile = logfile
        procs.HELPERS.append(self.p)
        self.reader = LineReader(self.p.stdout)

    def event(self, name, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.reader.readline(end - time.monotonic())
            if line is None:
                if self.reader.eof:
                    return None
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == name:
                return ev
        return None

    def release(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        ev = self.event("done", 60)
        kill_group(self.p)
        if self.p in procs.HELPERS:
            procs.HELPERS.remove(self.p)
        return ev


def run_https_idle(ctx, target, rnd):
    """RSS of a fresh balancer's process tree before and after HTTPS_IDLE_CONNS TLS
    connections are opened through its https frontend (each a full handshake and one
    h1 GET, then idle). -> the record (rounds keeps it)."""
    lb = ctx["balancers"][target]
    rec = {"target": target, "test": "https-idle", "round": rnd, "attempt": 0, "attempts": 1,
           "ts": time.time(), "asked": HTTPS_IDLE_CONNS}
    lb.stop()
    wait_unbound([p for p in ports(target)] + [https_port(target)])
    _, ok, why = launch_balancer(target, ctx["run"], ctx["bins"], lb)
    if ok:
        ok, why = balancer_ready(target, lb)
    if not ok:
        rec["error"] = f"fresh {target} did not start: {why}"
        log(f"r{rnd} https-idle {target:17} ERR {rec['error']}")
        return rec
    time.sleep(0.5)
    m0 = tree_mem([lb.pid])
    t0 = time.monotonic()
    h = TlsHold(https_port(target), HTTPS_IDLE_CONNS, os.path.join(OUT, "run", f"https-idle-{rnd}-{target}.log"))
    ev = h.event("ready", 120) or {}
    rec["hold_s"] = round(time.monotonic() - t0, 2)
    time.sleep(1.0)
    m1 = tree_mem([lb.pid])
    alive = lb.alive()
    done = h.release() or {}
    held = int(ev.get("held", 0))
    rec.update(held=held, failed=ev.get("failed"), hold_errors=ev.get("errors"),
               rss_before_kib=m0["rss_kib"], rss_after_kib=m1["rss_kib"],
               pss_before_kib=m0["pss_kib"], pss_after_kib=m1["pss_kib"],
               fds_before=m0["fds"], fds_after=m1["fds"], rss_at_n_mib=m1["rss_kib"] / 1024, alive=alive,
               dropped=done.get("dropped"), alive_checked=done.get("alive_checked"), alive_ok=done.get("alive_ok"))
    if held:
        rec["kib_per_conn"] = (m1["rss_kib"] - m0["rss_kib"]) / held
        rec["pss_kib_per_conn"] = (m1["pss_kib"] - m0["pss_kib"]) / held
    rec["live"] = bool(alive and held >= HTTPS_IDLE_CONNS and done and not done.get("dropped")
                       and done.get("alive_ok") == done.get("alive_checked"))
    if not rec["live"]:
        rec["error"] = (f"held {held} of {HTTPS_IDLE_CONNS} ({ev.get('errors') or tail(h.logfile, 3).strip()[-300:]}), "
                        f"alive {alive}, at release {done or 'no report'}")
        if not alive:
            rec["crashed"] = True
    log(f"r{rnd} https-idle {target:14} {held} held, RSS {m0['rss_kib'] / 1024:.1f} → {m1['rss_kib'] / 1024:.1f} MiB"
        + (f", {rec['kib_per_conn']:.2f} KiB/conn (PSS {rec['pss_kib_per_conn']:.2f})" if held else "")
        + (f" ERR {rec['error']}" if rec.get("error") else
           f", live ({done.get('alive_ok')}/{done.get('alive_checked')} answered at release)"))
    return rec
