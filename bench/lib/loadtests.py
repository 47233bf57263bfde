"""The timed load tests (ka, close, big: wrk; ip1, ip4: iperf3; tcprate, echo:
tcpload): the command line of each, reading its figures from the tool's output,
and one measured run of a test with the CPU accounting around it.

Why a module of its own: this is where a test's figures are defined (requests,
Gbit, latency percentiles, errors, work per balancer CPU-second, foreign load),
the same way for every target; retrying a spoiled run and choosing which to keep
is rounds' business, the held-connection tests (idle, maxconn) are holdtests'.
"""

import json
import os
import re
import subprocess

from lib import procs
from lib.knobs import (DUR, ECHO_CONNS, ECHO_SIZE, HERE, HOST, IPERF_TESTS, LB_CPUS, LOAD_CPUS, RATE_CONC,
                       RATE_PAYLOAD, RATE_TESTS, SOURCES, TCP_TESTS, WRK_TESTS)
from lib.measure import Snapshot, busy_cores, cpu_list, spliced_metrics
from lib.httpstests import https_cmd, parse_https
from lib.targets import admin_port, lb_cpus, ports


def test_cmd(test, target):
    if test.startswith("https-"):
        return https_cmd(test, target)
    http, bulk, tcp = ports(target)
    lua = os.path.join(HERE, "report.lua")
    if test in WRK_TESTS:
        conns = 8 if test == "big" else 64
        path = "/1m.bin" if test == "big" else "/small.txt"
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{DUR}s", "-s", lua]
        if test == "close":
            cmd += ["-H", "Connection: close"]
        return cmd + [f"http://{HOST}:{http}{path}"]
    if test == "tcprate":
        return [procs.TCPLOAD, "rate", "--target", f"{HOST}:{tcp}", "--duration", str(DUR),
                "--concurrency", str(RATE_CONC), "--sources", SOURCES, "--payload", str(RATE_PAYLOAD)]
    if test == "echo":
        return [procs.TCPLOAD, "echo", "--target", f"{HOST}:{tcp}", "--conns", str(ECHO_CONNS),
                "--size", str(ECHO_SIZE), "--duration", str(DUR)]
    n = {"ip1": 1, "ip4": 4}[test]
    return ["iperf3", "-c", HOST, "-p", str(bulk), "-t", str(DUR), f"-P{n}", "-J",
            "--connect-timeout", "3000"]


def last_json(out):
    """The last line of `out` that is a JSON object."""
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if isinstance(j, dict):
                return j
    return None


def parse_result(test, out, rc):
    """-> dict of figures from the load generator's output (error text if any)."""
    if test.startswith("https-"):
        return parse_https(test, out, rc)
    r = {"rc": rc}
    if test in WRK_TESTS:
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
    if test in TCP_TESTS:
        j = last_json(out)
        if j is None:
            r["error"] = "no tcpload summary: " + out[-400:]
            return r
        lat = j.get("lat_us") or {}
        errs = j.get("errors") or {}
        if not isinstance(errs, dict):
            errs = {"errors": errs}
        count = j.get("connections") if test == "tcprate" else j.get("round_trips")
        r.update(
            requests=count,
            secs=j.get("secs"),
            rps=j.get("rate"),
            bytes=j.get("bytes"),
            p50_ms=lat["p50"] / 1000 if "p50" in lat else None,
            p90_ms=lat["p90"] / 1000 if "p90" in lat else None,
            p99_ms=lat["p99"] / 1000 if "p99" in lat else None,
            p999_ms=lat["p999"] / 1000 if "p999" in lat else None,
            max_ms=lat["max"] / 1000 if "max" in lat else None,
            errors=int(sum(v for v in errs.values() if isinstance(v, (int, float)))),
            err_detail={k: v for k, v in errs.items() if v},
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


def run_once(ctx, target, test, quiet):
    """One run of a timed load test against `target`: the load generator's figures, the
    CPU time of the balancer, backends, load generator and machine over it, and
    spliced's counter deltas. `quiet`: what the wait for a quiet machine found.
    -> (record, load generator output)."""
    lb = ctx["balancers"].get(target)
    backend_roots = [p.pid for p in ctx["backends"]]
    lb_roots = [lb.pid] if lb else []
    # The quiet-machine wait before it (rounds.wait_quiet) is recorded first.
    rec = {"target": target, "test": test, **quiet}

    admin = admin_port(target)
    m0 = spliced_metrics(admin) if admin else None
    cmd = test_cmd(test, target)
    a = Snapshot(lb_roots, backend_roots)
    try:
        cp = subprocess.run(
            procs.taskset(LOAD_CPUS) + cmd,
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
    m1 = spliced_metrics(admin) if admin else None

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
    if procs.PIN and target != "direct" and lb_cpus(target) == LB_CPUS:
        # Pinning is strict, so foreign load can be told apart per CPU group.
        rec["foreign_lb_cpus"] = round(busy_cores(a, b, cpu_list(LB_CPUS)) - lb_cpu / wall, 3)
        rec["foreign_load_cpus"] = round(busy_cores(a, b, cpu_list(LOAD_CPUS)) - ours_load / wall, 3)
    if procs.PIN and target == "direct":
        rec["foreign_load_cpus"] = round(busy_cores(a, b, cpu_list(LOAD_CPUS)) - ours_load / wall, 3)
    # The figure that decides whether the test was contaminated (see rounds.wait_quiet).
    rec["foreign"] = rec["foreign_load_cpus"] if procs.PIN and target == "direct" else rec["foreign_cores"]
    if lb and lb_cpu > 0:
        if rec.get("requests") is not None and test in RATE_TESTS:
            rec["per_cpu"] = rec["requests"] / lb_cpu  # operations per balancer CPU-second
        elif "gbit" in rec:
            rec["per_cpu"] = rec["gbit"] / lb_cpu  # Gbit per balancer CPU-second
    if m0 is not None and m1 is not None:
        rec["spliced"] = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1}
    if lb is not None and not lb.alive():
        rec["error"] = (rec.get("error", "") + f" | {target} exited (code {lb.p.returncode})").strip(" |")
        rec["crashed"] = True
    if test in IPERF_TESTS and rec.get("error"):
        rec["iperf_restarted"] = True
    return rec, out
