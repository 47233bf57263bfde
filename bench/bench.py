#!/usr/bin/env python3
"""spliced vs HAProxy vs nginx (stream) on loopback: throughput, latency, balancer
CPU per unit of work, memory per idle connection, and how many connections one
spliced holds. Run it through bench/run.sh (which installs the tools and builds
spliced and bench/tcpload); bench/README.md explains the method and the figures.

    bench.py                   run (knobs in environment variables, see README)
    bench.py --report OUT      re-render OUT/results.md (and charts) from OUT/summary.json
    bench.py --publish OUT [--to DIR]
                               write DIR/RESULTS.md (default bench/) and DIR/results/
                               (charts, summary.json) from run OUT
    bench.py --publish-https OUT [--to DIR]
                               put run OUT's HTTP-mode section into DIR/RESULTS.md
                               (beside the L4 run there; --publish keeps it)

Everything listens on 127.0.0.1, on ports taken from the kernel at run time (no
fixed ports: see "Ports" in bench/README.md). Every process this script starts
runs in its own session/process group and is killed on exit.
"""

# The entry point only: the command line, which of the asked targets and tests can
# run on this machine, the run directory, and the main loop over the rounds. The
# rest is in bench/lib/ (its __init__.py lists the modules, bottom to top).

import json
import os
import re
import shutil
import signal
import sys
import time

from lib import backends, procs, rounds
from lib.backends import start_backends
from lib.knobs import (ALL_TARGETS, ALL_TESTS, BIG_SIZE, CHARTS, CPU_TESTS, DUR, H2LOAD_TESTS, HERE, HTTPS_TARGETS,
                       HTTPS_TESTS,
                       IPERF_TESTS, LOAD_CPUS, OUT, REPS, SMALL_BODY, SMOKE, SPLICED_BIN, SPLICED_BIN_B, TARGETS,
                       TCP_TESTS, TESTS, WRK_TESTS, log)
from lib.measure import cpu_list, spliced_metrics
from lib.meta import run_meta
from lib.procs import cleanup, have, have_tcpload, on_signal, raise_sysctls
from lib.publish import make_charts, publish, publish_https, rerender
from lib.report import report
from lib.targets import TARGET_PORTS, admin_port, has_https, kind, setup_tls, start_balancer, target_available


def runnable(asked_targets, asked_tests):
    """The asked targets and tests that can run here (tests in their canonical
    order), saying why each other one is skipped. -> (targets, tests)."""
    for t in asked_targets:
        if t not in ALL_TARGETS:
            raise SystemExit(f"unknown target {t!r}; known: {' '.join(ALL_TARGETS)}")
    for t in asked_tests:
        if t not in ALL_TESTS:
            raise SystemExit(f"unknown test {t!r}; known: {' '.join(ALL_TESTS)}")
    tests = [t for t in ALL_TESTS if t in asked_tests]  # canonical order: idle last, maxconn after the rounds
    if not have("wrk") and any(t in WRK_TESTS for t in tests):
        raise SystemExit("wrk is not installed (bench/run.sh installs it)")
    if not have("h2load"):
        skipped = [t for t in tests if t in H2LOAD_TESTS]
        if skipped:
            log(f"h2load is not installed (apt-get install nghttp2-client): skipping {' '.join(skipped)}")
        tests = [t for t in tests if t not in H2LOAD_TESTS]
    if not have("wrk") and "https-new" in tests:
        raise SystemExit("wrk is not installed (bench/run.sh installs it)")
    if not have("openssl"):
        skipped = [t for t in tests if t in HTTPS_TESTS]
        if skipped:
            log(f"openssl is not installed (it makes the certificate): skipping {' '.join(skipped)}")
        tests = [t for t in tests if t not in HTTPS_TESTS]
    if not have("iperf3"):
        skipped = [t for t in tests if t in IPERF_TESTS]
        if skipped:
            log(f"iperf3 is not installed: skipping {' '.join(skipped)}")
        tests = [t for t in tests if t not in IPERF_TESTS]
    if not have_tcpload():
        skipped = [t for t in tests if t in (*TCP_TESTS, "idle", "maxconn")]
        if skipped:
            log(f"no tcpload at {procs.TCPLOAD} (cargo build --release --manifest-path bench/tcpload/Cargo.toml): "
                f"skipping {' '.join(skipped)}")
        tests = [t for t in tests if t not in skipped]
    targets = []
    for t in asked_targets:
        ok, why = target_available(t)
        if ok:
            targets.append(t)
        else:
            log(f"skipping target {t}: {why}")
    if "maxconn" in tests and not target_available("spliced")[0]:
        log("no spliced binary: skipping maxconn")
        tests.remove("maxconn")
    if any(t in HTTPS_TESTS for t in tests) and not any(t in HTTPS_TARGETS for t in targets):
        log(f"no target with an https frontend ({' '.join(HTTPS_TARGETS)}): skipping the HTTPS tests")
        tests = [t for t in tests if t not in HTTPS_TESTS]
    if not targets or not tests:
        raise SystemExit("nothing to run")
    return targets, tests


def prepare_run_dir(targets, tests):
    """OUT/raw, OUT/run with the files the HTTP backend serves, and frozen copies of
    the binaries: others may rebuild target/ while this runs. Points procs.TCPLOAD
    at its copy. -> (run, www, spliced_bin, spliced_bins, with_spliced)."""
    os.makedirs(os.path.join(OUT, "raw"), exist_ok=True)
    run = os.path.join(OUT, "run")
    www = os.path.join(run, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "small.txt"), "wb") as f:
        f.write(SMALL_BODY)
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(os.urandom(BIG_SIZE))
    spliced_bin = SPLICED_BIN
    with_spliced = any(kind(t) == "spliced" and t != "spliced-b" for t in targets) or "maxconn" in tests
    if with_spliced:
        spliced_bin = os.path.join(run, "spliced")
        shutil.copy2(SPLICED_BIN, spliced_bin)
    spliced_bins = {"a": spliced_bin}
    if "spliced-b" in targets:
        spliced_bins["b"] = os.path.join(run, "spliced-b")
        shutil.copy2(SPLICED_BIN_B, spliced_bins["b"])
    if have_tcpload():
        frozen = os.path.join(run, "tcpload")
        shutil.copy2(procs.TCPLOAD, frozen)
        procs.TCPLOAD = frozen
    return run, www, spliced_bin, spliced_bins, with_spliced


def smoke_failures(results):
    """spliced's records that make SMOKE=1 fail: any error, or a load test with no figure."""
    bad = []
    for r in results:
        if r["target"] != "spliced":
            continue
        if r.get("error") or r.get("errors") or r.get("non2xx"):
            bad.append(r)
        elif r["test"] in CPU_TESTS and not (r.get("rps") or r.get("gbps")):
            bad.append(r)
    return bad


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--report":
        return rerender(args[1])
    if args and args[0] == "--publish" and len(args) in (2, 4) and (len(args) == 2 or args[2] == "--to"):
        return publish(args[1], os.path.abspath(args[3]) if len(args) == 4 else HERE)
    if args and args[0] == "--publish-https" and len(args) in (2, 4) and (len(args) == 2 or args[2] == "--to"):
        return publish_https(args[1], os.path.abspath(args[3]) if len(args) == 4 else HERE)
    if args:
        raise SystemExit(__doc__)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    ncpu = os.cpu_count() or 1
    procs.PIN = ncpu >= 2 and have("taskset")
    if procs.PIN:
        os.sched_setaffinity(0, set(cpu_list(LOAD_CPUS)))
    targets, tests = runnable(TARGETS, TESTS)
    run, www, spliced_bin, spliced_bins, with_spliced = prepare_run_dir(targets, tests)
    if any(t in HTTPS_TESTS for t in tests):
        setup_tls(run)  # before the balancers start: it gives the HTTPS_TARGETS their https frontend
    meta = run_meta(targets, tests, ncpu, spliced_bin, spliced_bins, with_spliced)
    log(f"out: {OUT}; targets: {' '.join(targets)}; tests: {' '.join(tests)}; {REPS} rounds × {DUR} s")
    log(f"load average now: {meta['loadavg_start']}")

    ctx = {"targets": targets, "balancers": {}, "backends": [], "results": [], "waited": 0.0,
           "run": run, "bins": spliced_bins}
    t_start = time.monotonic()
    interrupted = None
    try:
        raise_sysctls()
        ctx["backends"], meta["backend"] = start_backends(run, www)
        for t in targets:
            if t != "direct":
                ctx["balancers"][t] = start_balancer(t, run, spliced_bins)
        if "spliced" in ctx["balancers"]:
            # spliced's start line says which data-plane engine and TLS provider it runs.
            with open(os.path.join(run, "spliced.log"), errors="replace") as f:
                start = next((line for line in f if " spliced started " in line), "")
            meta["spliced_start"] = {k: v for k, v in re.findall(r"(engine|tls_provider)=(\S+)", start)}
        # The ports the kernel gave (spliced gets new ones at each restart: the
        # command lines in raw/ and the logs in run/ say which).
        meta["ports"] = {"backend_http": list(backends.BACKEND_PORTS), "backend_echo": list(backends.ECHO_PORTS),
                         "iperf3": backends.IPERF_PORT, **{t: dict(TARGET_PORTS[t]) for t in ctx["balancers"]}}
        log("backends and balancers up: " + "; ".join(
            f"{t} {' '.join(str(v) for v in TARGET_PORTS[t].values() if v)}" for t in ctx["balancers"]))
        with open(os.path.join(OUT, "results.jsonl"), "w") as jl:
            ctx["jsonl"] = jl
            jl.write(json.dumps({"meta": meta}) + "\n")
            try:
                for rnd in range(REPS):
                    order = rounds.round_order(targets, rnd)
                    for test in tests:
                        if test == "maxconn":
                            continue
                        for target in order:
                            if test in HTTPS_TESTS and not has_https(target):
                                continue
                            if test == "https-idle":
                                rounds.run_https_idle(ctx, target, rnd)
                            elif test == "idle":
                                if target != "direct":
                                    rounds.run_idle(ctx, target, rnd)
                            else:
                                rounds.run_test(ctx, target, test, rnd)
                if "maxconn" in tests:
                    rounds.run_maxconn(ctx, run, spliced_bin)
            except (KeyboardInterrupt, SystemExit) as e:
                interrupted = e
                log("interrupted: writing a partial report")
        if "spliced" in targets:
            meta["spliced_metrics_end"] = spliced_metrics(admin_port("spliced"))
        if "spliced-b" in targets:
            meta["spliced_b_metrics_end"] = spliced_metrics(admin_port("spliced-b"))
    finally:
        cleanup()
    el = int(time.monotonic() - t_start)
    meta["elapsed"] = f"{el // 60} min {el % 60} s"
    meta["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    if interrupted is not None:
        meta["elapsed"] += " (INTERRUPTED: partial results)"
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"meta": meta, "results": ctx["results"]}, f, indent=1)
    charts, note = make_charts(OUT) if CHARTS else ([], "off (CHARTS=0)")
    md = report(ctx, meta, charts, note)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    print(md)
    log(f"written {OUT}/results.md")

    bad = smoke_failures(ctx["results"])
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
