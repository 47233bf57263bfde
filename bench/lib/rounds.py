"""Running the tests in rounds: the order of the targets in each round, the wait
for a quiet machine before each timed test, repeating a test that foreign load
spoiled and keeping the cleanest attempt, restarting a balancer that died, and
writing every attempt to results.jsonl.

Why a module of its own: this machine is shared, so how a run copes with other
people's load (bench/README.md, "Shared machine" and "Alternation") decides
whether its figures can be compared at all, and it must be the same for every
test and target. bench.py's main loop only says which test runs when.
"""

import json
import os
import time

from lib import holdtests, httpstests, procs
from lib.knobs import GAP, IPERF_TESTS, LOAD_CPUS, OUT, QUIET_BUDGET, QUIET_LIMIT, QUIET_WAIT, RETRIES, log
from lib.loadtests import run_once, test_cmd
from lib.measure import cpu_list, foreign_load
from lib.targets import balancer_ready, launch_balancer, restart_iperf


def wait_quiet(ctx, target):
    """Wait for the machine to be quiet (other people's builds and tests): up to
    QUIET_WAIT s (within what is left of QUIET_BUDGET for the run) while more than
    QUIET_LIMIT cores are busy with processes other than the run's own.
    -> the record's quiet_wait_s, foreign_before and busy_start."""
    our_roots = [p.pid for p in ctx["backends"]] + [p.pid for p in ctx["balancers"].values()]
    t0 = time.monotonic()
    limit = min(QUIET_WAIT, max(0.0, QUIET_BUDGET - ctx["waited"]))
    # `direct` leaves the balancer CPU idle: load there does not touch it, and any
    # CPU-bound job elsewhere on the machine fills it, so only the load CPUs count.
    cpus = cpu_list(LOAD_CPUS) if procs.PIN and target == "direct" else None
    load = foreign_load(our_roots, 0.5, cpus)
    while load > QUIET_LIMIT and time.monotonic() - t0 < limit:
        time.sleep(1)
        load = foreign_load(our_roots, 1.0, cpus)
    waited = time.monotonic() - t0
    ctx["waited"] += waited
    return {
        "quiet_wait_s": round(waited, 1),
        "foreign_before": round(load, 3),
        "busy_start": load > QUIET_LIMIT,  # started on a busy machine (wait timed out)
    }


def ensure_balancer(ctx, target):
    """Restart the balancer of `target` if it died (counted in its `restarts`)."""
    lb = ctx["balancers"].get(target)
    if lb is not None and not lb.alive():
        log(f"{target} is not running (exit code {lb.p.returncode}); restarting it")
        lb.restarts += 1
        _, ok, why = launch_balancer(target, ctx["run"], ctx["bins"], lb)
        if ok:
            ok, why = balancer_ready(target, lb)
        if not ok:
            log(f"{target} restart failed: {why}")


def keep(ctx, rec):
    """Keep a record that has no other attempts (idle, maxconn): its line and a
    kept_ref line in results.jsonl, and in the run's results."""
    ctx["jsonl"].write(json.dumps(rec) + "\n")
    ctx["jsonl"].write(json.dumps({"kept_ref": [rec["round"], rec["test"], rec["target"], rec["attempt"]]}) + "\n")
    ctx["jsonl"].flush()
    rec["kept"] = True
    ctx["results"].append(rec)


def run_test(ctx, target, test, rnd):
    """Run a timed load test, again (up to RETRIES times) while foreign load spoiled
    it, and keep the least contaminated attempt."""
    best = None
    for attempt in range(RETRIES + 1):
        ensure_balancer(ctx, target)
        rec, out = run_once(ctx, target, test, wait_quiet(ctx, target))
        rec.update(round=rnd, attempt=attempt, ts=time.time())
        with open(os.path.join(OUT, "raw", f"{rnd}-{test}-{target}-{attempt}.txt"), "w") as f:
            f.write(" ".join(test_cmd(test, target)) + "\n" + out)
        if rec.get("iperf_restarted"):
            restart_iperf(ctx)
        ctx["jsonl"].write(json.dumps(rec) + "\n")
        ctx["jsonl"].flush()
        unit = {"tcprate": "conn/s", "echo": "rt/s", "https-new": "conn/s", "https-resume": "conn/s",
                "https-close": "conn/s"}.get(test, "req/s")
        summary = (
            f"r{rnd} {test:7} {target:17} "
            + (f"{rec['rps']:>9,.0f} {unit} " if rec.get("rps") is not None and test != "big" else "")
            + (f"p99 {rec['p99_ms']:.2f} ms " if rec.get("p99_ms") is not None and test != "big" else "")
            + (f"{rec['per_cpu']:,.0f}/CPU-s " if test.startswith("https-") and rec.get("per_cpu") else "")
            + (f"{rec['gbps']:6.2f} Gbit/s " if test in ("big", *IPERF_TESTS) and "gbps" in rec else "")
            + f"lb {rec['lb_cores']:.2f} cores, foreign {rec['foreign']:+.2f}"
            + (f" ERR {rec['error']}" if rec.get("error") else "")
            + (f" sockerr {rec['errors']} {rec.get('err_detail') or ''}" if rec.get("errors") else "")
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


def round_order(targets, rnd):
    """Targets in the order round `rnd` runs them: rotated by one each round. In an A/B
    run spliced and spliced-b stay back to back, A first in even rounds, B in odd ones."""
    ab = "spliced" in targets and "spliced-b" in targets
    base = [t for t in targets if t != "spliced-b"] if ab else list(targets)
    order = base[rnd % len(base):] + base[: rnd % len(base)]
    if ab:
        i = order.index("spliced")
        order.insert(i + 1 if rnd % 2 == 0 else i, "spliced-b")
    return order


def run_idle(ctx, target, rnd):
    """The idle test of `target` in round `rnd` (no quiet wait, no repeat), kept."""
    rec = holdtests.run_idle(ctx, target, rnd)
    keep(ctx, rec)
    if "held" in rec:  # it got as far as holding connections: the pause after every test
        time.sleep(GAP)


def run_https_idle(ctx, target, rnd):
    """The https-idle test of `target` in round `rnd` (no quiet wait, no repeat), kept."""
    rec = httpstests.run_https_idle(ctx, target, rnd)
    keep(ctx, rec)
    time.sleep(GAP)


def run_maxconn(ctx, run, spliced_bin):
    """The maxconn test, once after all rounds, kept."""
    keep(ctx, holdtests.run_maxconn(ctx, run, spliced_bin))
