"""The report of a run: results.md, rendered from the run's meta and kept records
alone (what summary.json holds), so `bench.py --report` and `--publish` can render
a finished run again; also the figure definitions (which test, which field, which
format, which way is better) that the tables and bench/plot.py's charts share.

Why a module of its own: the report is read long after the run, by people
comparing balancers, and must show every figure the same way whether it was
written by the run or re-rendered; keeping it apart from the code that measures
means re-rendering cannot touch the machine. It reads knobs only as fallbacks for
runs whose summary.json did not record them.
"""

import statistics

from lib import procs
from lib.knobs import (CPU_TESTS, HTTPS_IDLE_CONNS, HTTPS_RATE, HTTPS_TARGETS, HTTPS_TESTS, IDLE_CONNS, IDLE_PING,
                       LB_CPUS, LB_CPUS2, LOAD_CPUS, QUIET_BUDGET, QUIET_LIMIT, QUIET_WAIT, TCP_TESTS, TEST_LABEL)
from lib.targets import SCALE_OF, TARGET_SPEC, kind

# ---------------------------------------------------------------- figures and formats


def med(vals):
    """Median of the values that are there (None: no value)."""
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fnum(v, kind_):
    """A figure as the tables print it: int, ratio, pct, 1 (one decimal) or 3 significant digits."""
    if v is None:
        return "–"
    if kind_ == "int":
        return f"{v:,.0f}"
    if kind_ == "ratio":
        return f"{v:.2f}"
    if kind_ == "pct":
        return f"{v:.0f}%"
    if kind_ == "1":
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def table(header, rows, left=1):
    """Markdown table; the first `left` columns left-aligned, the rest right-aligned."""
    align = ["---"] * min(left, len(header)) + ["---:"] * (len(header) - left)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
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
    ("tcprate_rps", "TCP conn/s", "tcprate", "rps", "int", False),
    ("tcprate_p99", "TCP conn p99 ms", "tcprate", "p99_ms", "g", True),
    ("echo_rps", "echo rt/s", "echo", "rps", "int", False),
    ("echo_p99", "echo p99 ms", "echo", "p99_ms", "g", True),
]
EFFICIENCY = [
    ("ka_cpu", "KA req/CPU-s", "ka", "per_cpu", "int", False),
    ("close_cpu", "close conn/CPU-s", "close", "per_cpu", "int", False),
    ("big_cpu", "1 MiB Gbit/CPU-s", "big", "per_cpu", "g", False),
    ("ip1_cpu", "ip×1 Gbit/CPU-s", "ip1", "per_cpu", "g", False),
    ("ip4_cpu", "ip×4 Gbit/CPU-s", "ip4", "per_cpu", "g", False),
    ("tcprate_cpu", "TCP conn/CPU-s", "tcprate", "per_cpu", "int", False),
    ("echo_cpu", "echo rt/CPU-s", "echo", "per_cpu", "int", False),
]
MEMORY = [
    ("idle_kib", "idle KiB/conn", "idle", "kib_per_conn", "ratio", True),
    ("idle_rss", "RSS @N MiB", "idle", "rss_at_n_mib", "1", True),
]
TCP_DETAIL = [
    ("tcprate_p50", "TCP conn p50 ms", "tcprate", "p50_ms", "g", True),
    ("tcprate_p99", "TCP conn p99 ms", "tcprate", "p99_ms", "g", True),
    ("tcprate_p999", "TCP conn p99.9 ms", "tcprate", "p999_ms", "g", True),
    ("echo_p50", "echo p50 ms", "echo", "p50_ms", "g", True),
    ("echo_p99", "echo p99 ms", "echo", "p99_ms", "g", True),
    ("echo_p999", "echo p99.9 ms", "echo", "p999_ms", "g", True),
]
RATIO_ROWS = [
    ("KA req/s", "ka", "rps", False),
    ("KA req/CPU-s", "ka", "per_cpu", False),
    ("KA p99 (lower is better)", "ka", "p99_ms", True),
    ("close conn/s", "close", "rps", False),
    ("close conn/CPU-s", "close", "per_cpu", False),
    ("close p99 (lower is better)", "close", "p99_ms", True),
    ("1 MiB Gbit/s", "big", "gbps", False),
    ("1 MiB Gbit/CPU-s", "big", "per_cpu", False),
    ("iperf3 ×1 Gbit/s", "ip1", "gbps", False),
    ("iperf3 ×1 Gbit/CPU-s", "ip1", "per_cpu", False),
    ("iperf3 ×4 Gbit/s", "ip4", "gbps", False),
    ("iperf3 ×4 Gbit/CPU-s", "ip4", "per_cpu", False),
    ("TCP conn/s", "tcprate", "rps", False),
    ("TCP conn/CPU-s", "tcprate", "per_cpu", False),
    ("TCP conn p99 (lower is better)", "tcprate", "p99_ms", True),
    ("echo rt/s", "echo", "rps", False),
    ("echo rt/CPU-s", "echo", "per_cpu", False),
    ("echo p99 (lower is better)", "echo", "p99_ms", True),
    ("idle KiB/conn (lower is better)", "idle", "kib_per_conn", True),
]
# HTTP mode (title, test, unit of work): the rows of the HTTPS tables.
HTTPS_ROWS = [
    ("h2 keep-alive, saturation", "https-h2", "req"),
    ("h1 keep-alive, saturation", "https-h1", "req"),
    ("h2 keep-alive, fixed rate", "https-h2-rate", "req"),
    ("h1 keep-alive, fixed rate", "https-h1-rate", "req"),
    ("full handshake + 1 request per connection", "https-new", "conn"),
    ("resumed handshake + 1 request per connection", "https-resume", "conn"),
    ("new connection per request, wrk (resumes)", "https-close", "conn"),
]
# Workers 1 → 2 (title, test, field, format).
SCALING_ROWS = [
    ("KA req/s", "ka", "rps", "int"),
    ("close conn/s", "close", "rps", "int"),
    ("TCP conn/s", "tcprate", "rps", "int"),
    ("echo rt/s", "echo", "rps", "int"),
    ("1 MiB Gbit/s", "big", "gbps", "g"),
    ("iperf3 ×1 Gbit/s", "ip1", "gbps", "g"),
    ("iperf3 ×4 Gbit/s", "ip4", "gbps", "g"),
    ("KA req/CPU-s", "ka", "per_cpu", "int"),
    ("close conn/CPU-s", "close", "per_cpu", "int"),
    ("TCP conn/CPU-s", "tcprate", "per_cpu", "int"),
    ("echo rt/CPU-s", "echo", "per_cpu", "int"),
    ("1 MiB Gbit/CPU-s", "big", "per_cpu", "g"),
    ("ip×4 Gbit/CPU-s", "ip4", "per_cpu", "g"),
]


# ---------------------------------------------------------------- results.md


def is_timed(r):
    """A load test with CPU accounting and a foreign-load figure (not idle/maxconn)."""
    return r.get("foreign", r.get("foreign_cores")) is not None and r["test"] in CPU_TESTS


def report(ctx, meta, charts=None, chart_note=None, chart_prefix="charts/", title=True, versions=True):
    """results.md of a run (also the body of RESULTS.md: publish) from its meta and kept records."""
    res = ctx["results"]
    targets = list(ctx["targets"])
    tests = meta["tests"]
    quiet_limit = meta.get("knobs", {}).get("QUIET_LIMIT", QUIET_LIMIT)

    def vals(target, test, field):
        return [r.get(field) for r in res if r["target"] == target and r["test"] == test]

    def m(target, test, field):
        return med(vals(target, test, field))

    def dirty(r):
        return is_timed(r) and r.get("foreign", r.get("foreign_cores")) > quiet_limit

    def mark(target, test):
        n = sum(1 for r in res if r["target"] == target and r["test"] == test and dirty(r))
        return "*" * min(n, 3)

    def cell(target, test, field, kind_):
        v = m(target, test, field)
        return fnum(v, kind_) + (mark(target, test) if v is not None else "")

    def cols(spec):
        return [c for c in spec if c[2] in tests]

    # The https-*.png charts go into the HTTP-mode section, the others under Charts
    # (and the note there, unless the run has only HTTPS tests).
    charts = list(charts or [])
    https_charts = [c for c in charts if c[0].startswith("https-")]
    charts = [c for c in charts if not c[0].startswith("https-")]
    only_https = all(t in HTTPS_TESTS for t in tests)

    md = []
    if title:
        md += [f"# spliced benchmark — {meta['date']}", ""]
    lb2 = meta.get("knobs", {}).get("LB_CPUS2", LB_CPUS2)
    has_w2 = any(TARGET_SPEC.get(t, {}).get("workers", 1) > 1 for t in targets)
    md.append(
        f"{meta['reps']} rounds × {meta['dur']} s per test, medians over rounds. "
        f"Balancer pinned to CPU {meta.get('knobs', {}).get('LB_CPUS', LB_CPUS)}"
        + (f" (2-thread/worker variants: CPUs {lb2})" if has_w2 else "")
        + f", backends + load generators to CPU {meta.get('knobs', {}).get('LOAD_CPUS', LOAD_CPUS)}"
        + ("" if meta.get("pinned", procs.PIN) else " (pinning OFF: fewer than 2 CPUs or no taskset)")
        + f". Backend: {meta['backend']}. Load average at start: {meta['loadavg_start']}."
    )
    md.append("")
    if versions:
        md.append("Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()))
        md.append("")
    timed_tests = [t for t in tests if t in CPU_TESTS]
    fig_cols = cols(FIGURES)
    if fig_cols:
        md.append("## Throughput and latency")
        md.append("")
        md.append(f"`*` after a figure: one star per round whose test ran with more than {quiet_limit} cores "
                  "of foreign load (other people's work on the machine; see Run hygiene).")
        md.append("")
        rows = []
        for t in targets:
            errs = sum((r.get("errors") or 0) + (r.get("non2xx") or 0) + (1 if r.get("error") else 0)
                       for r in res if r["target"] == t and r["test"] in CPU_TESTS)
            rows.append([t] + [cell(t, test, f, k) for _, _, test, f, k, _ in fig_cols] + [str(errs)])
        md.append(table(["target"] + [c for _, c, *_ in fig_cols] + ["errors"], rows))
        md.append("")
    eff_cols = cols(EFFICIENCY)
    mem_cols = cols(MEMORY)
    idle_n = meta.get("knobs", {}).get("IDLE_CONNS", IDLE_CONNS)
    if eff_cols or mem_cols:
        md.append("## Balancer CPU efficiency (process-tree utime+stime) and memory")
        md.append("")
        rows = []
        for t in targets:
            if t == "direct":
                continue
            busy = "/".join(fnum(m(t, test, "lb_cores"), "ratio") for test in timed_tests)
            rows.append([t] + [cell(t, test, f, k) for _, _, test, f, k, _ in eff_cols]
                        + [fnum(m(t, test, f), k) for _, _, test, f, k, _ in mem_cols]
                        + ([busy] if timed_tests else []))
        md.append(table(["target"] + [c for _, c, *_ in eff_cols]
                        + [c.replace("@N", f"@{idle_n}") for _, c, *_ in mem_cols]
                        + ([f"balancer cores busy ({'/'.join(timed_tests)})"] if timed_tests else []), rows))
        md.append("")
    if any(t in tests for t in TCP_TESTS):
        md.append("## Raw TCP (tcpload): latency percentiles")
        md.append("")
        md.append(f"`tcprate`: {TEST_LABEL['tcprate']}; latency = connect + echo. "
                  f"`echo`: {TEST_LABEL['echo']}; latency = one round trip.")
        md.append("")
        det = cols(TCP_DETAIL)
        rows = [[t] + [cell(t, test, f, k) for _, _, test, f, k, _ in det] for t in targets]
        md.append(table(["target"] + [c for _, c, *_ in det], rows))
        md.append("")
    if "idle" in tests:
        md.append(f"## Idle connections ({idle_n} held through a fresh balancer process)")
        md.append("")
        md.append("RSS/PSS of the balancer's process tree (`/proc/PID/smaps_rollup`, all processes) before and "
                  "after the connections were opened and had each echoed "
                  f"{meta.get('knobs', {}).get('IDLE_PING', IDLE_PING)} byte(s); KiB/conn = difference ÷ held. "
                  "Live = the balancer still ran and a new connection echoed with all of them held.")
        md.append("")
        rows = []
        for t in targets:
            rs = [r for r in res if r["target"] == t and r["test"] == "idle"]
            if not rs:
                continue
            live = sum(1 for r in rs if r.get("live"))
            rows.append([t, fnum(med([r.get("held") for r in rs]), "int"),
                         fnum(med([r.get("rss_before_kib", 0) / 1024 for r in rs]), "1"),
                         fnum(med([r.get("rss_after_kib", 0) / 1024 for r in rs]), "1"),
                         fnum(med([r.get("kib_per_conn") for r in rs]), "ratio"),
                         fnum(med([r.get("pss_kib_per_conn") for r in rs]), "ratio"),
                         fnum(med([r.get("fds_after") for r in rs]), "int"),
                         fnum(med([r.get("hold_s") for r in rs]), "1"),
                         f"{live}/{len(rs)}"])
        md.append(table(["target", "held", "RSS before MiB", f"RSS @{idle_n} MiB", "KiB/conn (RSS)",
                         "KiB/conn (PSS)", "fds", "open s", "live"], rows))
        md.append("")
    if any(t in tests for t in HTTPS_TESTS):
        md += https_section(res, meta, targets, tests, m, cell, https_charts,
                            chart_note if only_https else None, chart_prefix)
    one = [t for t in targets if t.startswith("spliced")]
    for s in one:
        w = TARGET_SPEC.get(s, {}).get("workers", 1)
        peers = [t for t in targets if kind(t) in ("haproxy", "nginx") and TARGET_SPEC[t]["workers"] == w]
        if not peers:
            continue
        rows = []
        for title_, test, field, _ in RATIO_ROWS:
            if test not in tests:
                continue
            row = [title_]
            for p in peers:
                sv, o = m(s, test, field), m(p, test, field)
                row.append(fnum(sv / o, "ratio") if sv is not None and o else "–")
            rows.append(row)
        if not rows:
            continue  # no L4 test in this run (the HTTPS section has its own ratios)
        md.append(f"## {s} ÷ peer (medians; >1 = {s} higher)")
        md.append("")
        md.append(table(["figure"] + peers, rows))
        md.append("")
    if "spliced" in targets and "spliced-epoll" in targets:
        # The io_uring engine's lead over the epoll one (same config, same CPU).
        rows = []
        for title_, test, field, _ in RATIO_ROWS:
            if test not in tests:
                continue
            a, b = m("spliced", test, field), m("spliced-epoll", test, field)
            rows.append([title_, cell("spliced", test, field, "g"), cell("spliced-epoll", test, field, "g"),
                         fnum(a / b, "ratio") if a is not None and b else "–"])
        if rows:
            md.append("## io_uring ÷ epoll engine (spliced ÷ spliced-epoll, medians; >1 = io_uring higher)")
            md.append("")
            md.append(table(["figure", "spliced (io_uring)", "spliced-epoll", "io_uring ÷ epoll"], rows))
            md.append("")
    if "spliced" in targets and "spliced-b" in targets:
        md += ab_section(res, meta, tests, m, cell)
    pairs = [(SCALE_OF[t], t) for t in targets if t in SCALE_OF and SCALE_OF[t] in targets]
    if pairs:
        md.append("## Scaling: 1 → 2 threads/workers")
        md.append("")
        md.append(f"1-worker targets on CPU {meta.get('knobs', {}).get('LB_CPUS', LB_CPUS)}, 2-worker on CPUs {lb2} "
                  "(the second CPU is shared with the load generators and backends). Cells: 1 → 2 (×ratio).")
        md.append("")
        rows = []
        for title_, test, field, k in SCALING_ROWS:
            if test not in tests:
                continue
            row = [title_]
            for a, b in pairs:
                va, vb = m(a, test, field), m(b, test, field)
                row.append(f"{fnum(va, k)} → {fnum(vb, k)}" + (f" (×{vb / va:.2f})" if va and vb is not None else ""))
            rows.append(row)
        md.append(table(["figure"] + [f"{a} → {b}" for a, b in pairs], rows))
        md.append("")
    rows = []
    spreads = []
    spread_cols = [c for c in cols(FIGURES) + cols(EFFICIENCY) if c[3] not in ("p50_ms",)]
    for t in targets if spread_cols else []:
        row = [t]
        for _, _, test, f, k, _ in spread_cols:
            v = [x for x in vals(t, test, f) if x is not None]
            if not v:
                row.append("–")
                continue
            mid = statistics.median(v)
            sp = (max(v) - min(v)) / mid * 100 if mid else 0
            spreads.append(sp)
            row.append(f"{fnum(min(v), k)}–{fnum(max(v), k)} ({sp:.0f}%)")
        rows.append(row)
    if rows:
        md.append("## Spread over rounds (min–max, (max−min)/median)")
        md.append("")
        md.append(table(["target"] + [c for _, c, *_ in spread_cols], rows))
        md.append("")
    if spreads:
        md.append(f"Median spread over all cells: {statistics.median(spreads):.0f}% (max {max(spreads):.0f}%).")
        md.append("")
    dp_targets = [t for t in ("spliced", "spliced-b") if t in targets]
    l4_cpu_tests = [t for t in CPU_TESTS if t not in HTTPS_TESTS]
    if dp_targets and any(t in timed_tests for t in l4_cpu_tests):
        md.append(f"## {' and '.join(dp_targets)} data path (from {'its' if len(dp_targets) == 1 else 'their'} "
                  "/metrics, delta over each test)")
        md.append("")
        rows = []
        for test, t in [(test, t) for test in l4_cpu_tests for t in dp_targets]:
            rs = [r for r in res if r["target"] == t and r["test"] == test and r.get("spliced")]
            if not rs:
                continue
            sp = [r["spliced"].get("spliced_relay_bytes_total{splice}", 0.0) for r in rs]
            cp = [r["spliced"].get("spliced_relay_bytes_total{copy}", 0.0) for r in rs]
            sw = [r["spliced"].get("spliced_splice_switches_total", 0.0) for r in rs]
            ex = [r["spliced"].get("spliced_pipe_pool_exhausted_total", 0.0) for r in rs]
            rj = [r["spliced"].get("spliced_rejected_connections_total", 0.0) for r in rs]
            ce = [r["spliced"].get("spliced_connect_errors_total", 0.0) for r in rs]
            share = [s / (s + c) * 100 if s + c else 0.0 for s, c in zip(sp, cp)]
            rows.append([test] + ([t] if len(dp_targets) > 1 else [])
                        + [f"{med(sp) / 1e6:,.0f}", f"{med(cp) / 1e6:,.0f}", fnum(med(share), "pct"),
                           fnum(med(sw), "int"), fnum(med(ex), "int"), fnum(med(rj), "int"), fnum(med(ce), "int")])
        md.append(table(["test"] + (["target"] if len(dp_targets) > 1 else [])
                        + ["splice MB", "copy MB", "splice share", "splice switches",
                           "pipe pool exhausted", "rejected conns", "connect errors"],
                        rows, left=2 if len(dp_targets) > 1 else 1))
        md.append("")
    mc = [r for r in res if r["test"] == "maxconn"]
    if mc:
        r = mc[-1]
        md.append(f"## maxconn: how many connections one spliced holds (asked {r['asked']:,})")
        md.append("")
        if r.get("held") is None:
            md.append(f"Failed before holding anything: {r.get('error')}")
        else:
            mf = r.get("metrics_full") or {}
            ma = r.get("metrics_after") or {}
            rows = [
                ["held at once", f"{r['held']:,} of {r['asked']:,} ({r.get('hold_processes')} hold processes, "
                                 f"{r.get('fill_s')} s)"],
                ["stopped by", r.get("stopped_by", "–")],
                ["spliced RLIMIT_NOFILE (soft/hard)", f"{r.get('nofile_soft')}/{r.get('nofile_hard')}"],
                ["fds in use (start → full)", f"{r.get('fds_base')} → {r.get('fds_full')}"],
                ["spliced_active_connections when full",
                 fnum(mf.get("spliced_active_connections"), "int") if mf else "admin API did not answer (no fd left)"],
                ["accept out of fds (spliced_accept_resource_errors_total, read after release)",
                 fnum(ma.get("spliced_accept_resource_errors_total"), "int")],
                ["refused: over the fd budget or no fd for the backend side (rejected{reason=resources}, read after release)",
                 fnum(ma.get("spliced_rejected_connections_total{resources}"), "int")],
                ["RSS when full", f"{fnum(r.get('rss_full_mib'), '1')} MiB "
                                  f"({fnum(r.get('kib_per_conn'), 'ratio')} KiB/conn)"],
                ["existing connections echo when full", f"{r.get('probe_ok')}/{r.get('probe_ok', 0) + len(r.get('probe_failed') or [])}"
                                                        f" probes opened first (max {fnum(r.get('probe_ms_max'), 'g')} ms)"],
                ["held connections echo at release (random sample per hold process)",
                 "/".join(str(x) for x in r.get("release_sample") or []) or "–"],
                ["held connections closed by spliced while held", fnum(r.get("dropped"), "int")],
                ["/ready when full / after release", f"{r.get('ready_full')} / {r.get('ready_after')}"],
                ["new connection echoes after release", "yes" if r.get("recovered") else f"no: {r.get('recovered_detail')}"],
                ["process alive throughout", "yes" if r.get("alive_full") and r.get("alive_after") else "NO"],
                ["fd warnings in spliced's log", fnum(r.get("log_fd_warnings"), "int")],
            ]
            md.append(table(["", "maxconn"], rows, left=2))
            if r.get("log_excerpt"):
                md.append("")
                md.append("spliced's log: `" + r["log_excerpt"][0].replace("`", "'") + "`")
            if r.get("error"):
                md.append("")
                md.append(f"Errors: {r['error']}")
        md.append("")
    if charts:
        md.append("## Charts")
        md.append("")
        for name, caption in charts:
            md.append(f"![{caption}]({chart_prefix}{name})")
            md.append("")
    elif chart_note and not only_https:
        md.append(f"Charts: {chart_note}")
        md.append("")
    md.append("## Run hygiene")
    md.append("")
    timed = [r for r in res if is_timed(r)]
    attempts = sum(r.get("attempts", 1) for r in timed)
    repeated = sum(1 for r in timed if r.get("attempts", 1) > 1)
    fc = [r.get("foreign", r.get("foreign_cores")) for r in timed]
    waited = [r["quiet_wait_s"] for r in timed if r.get("quiet_wait_s", 0) > 1]
    dirty_runs = [r for r in timed if dirty(r)]
    md.append(
        f"{len(timed)} load tests kept out of {attempts} run; {repeated} repeated because foreign load "
        f"exceeded {quiet_limit} cores. Foreign (unaccounted) CPU in kept tests: median "
        f"{fnum(med(fc), 'ratio')}, max {fnum(max(fc) if fc else None, 'ratio')} cores; "
        f"{len(dirty_runs)} kept tests still above {quiet_limit} cores"
        + (" (by round: " + ", ".join(
            f"r{n}: {sum(1 for r in dirty_runs if r['round'] == n)}/{sum(1 for r in timed if r['round'] == n)}"
            for n in sorted({r['round'] for r in timed})) + ")" if dirty_runs else "")
        + f". Waited for quiet before {len(waited)} tests"
        + (f" (total {sum(waited):.0f} s)" if waited else "")
        + f"; {sum(1 for r in timed if r.get('busy_start'))} started on a still-busy machine "
        f"(wait limit {meta.get('knobs', {}).get('QUIET_WAIT', QUIET_WAIT):.0f} s per test, "
        f"{meta.get('knobs', {}).get('QUIET_BUDGET', QUIET_BUDGET):.0f} s per run). "
        "The idle and maxconn tests measure memory and capacity, not CPU: they do not wait for quiet."
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


def ab_section(res, meta, tests, m, cell):
    """The "spliced-b ÷ spliced" table: two builds of spliced, same config, same CPU,
    back to back in every round. Per-round ratios pair the two runs of one round
    (seconds apart), so slow drifts of the machine cancel out in them."""
    v = meta.get("versions", {})
    sha = meta.get("spliced_sha256", {})
    md = ["## spliced-b ÷ spliced (A/B of two builds, medians; >1 = spliced-b higher)", ""]
    md.append(f"A = `spliced` {v.get('spliced', '?')}, B = `spliced-b` {v.get('spliced-b', '?')}: the same "
              "config, both 1 worker on the same CPU, run back to back in each round (A first in even rounds, "
              "B in odd ones). \"per round\": B ÷ A of the same round, min–max over rounds; \"B better\": "
              "rounds in which B's figure was better (higher, or lower for p99 and KiB/conn). A difference is "
              "real only if it holds in (nearly) every round and exceeds the spread of an A/A run "
              "(`SPLICED_REF_B` = `SPLICED_REF`).")
    md.append("")
    if sha.get("spliced") and sha.get("spliced") == sha.get("spliced-b"):
        md.append(f"The two binaries are identical (sha256 {sha['spliced'][:12]}): this is an A/A run, the "
                  "ratios show the noise floor.")
        md.append("")
    rows = []
    for title_, test, field, lower in RATIO_ROWS:
        if test not in tests:
            continue
        a, b = m("spliced", test, field), m("spliced-b", test, field)
        by_round = {}
        for r in res:
            if r["test"] == test and r["target"] in ("spliced", "spliced-b") and r.get(field) is not None:
                by_round.setdefault(r["round"], {})[r["target"]] = r[field]
        per = [(x["spliced-b"], x["spliced"]) for x in by_round.values() if "spliced" in x and "spliced-b" in x]
        ratios = [vb / va for vb, va in per if va]
        better = sum(1 for vb, va in per if (vb < va if lower else vb > va))
        rows.append([title_, cell("spliced", test, field, "g"), cell("spliced-b", test, field, "g"),
                     fnum(b / a, "ratio") if a and b is not None else "–",
                     (f"{min(ratios):.2f}–{max(ratios):.2f}" if len(ratios) > 1 else
                      fnum(ratios[0], "ratio") if ratios else "–"),
                     f"{better}/{len(per)}" if per else "–"])
    md.append(table(["figure", "spliced (A)", "spliced-b (B)", "B ÷ A", "per round", "B better"], rows))
    md.append("")
    return md


def https_section(res, meta, targets, tests, m, cell, charts=(), chart_note=None, chart_prefix="charts/"):
    """HTTP mode (TLS termination): per-CPU-second work, throughput and p99 of each
    HTTPS test by target, spliced ÷ the best peer (HAProxy or nginx) for each, idle
    TLS memory, the https-*.png charts (CHARTS: [(file, caption)] of plot.py, linked
    as CHART_PREFIX + file; else CHART_NOTE, why there are none) and spliced's own
    HTTP/TLS counters."""
    kn = meta.get("knobs", {})
    ts = [t for t in targets if t in HTTPS_TARGETS]
    peers = [t for t in ts if kind(t) in ("haproxy", "nginx")]
    sp = [t for t in ts if kind(t) == "spliced"]
    rows_t = [row for row in HTTPS_ROWS if row[1] in tests]
    md = ["## HTTP mode (TLS termination)", ""]
    md.append(
        "Each proxy terminates TLS 1.3 on its https frontend (the run's ECDSA P-256 certificate, ALPN h2 + "
        "http/1.1, session tickets on) and proxies `GET /small.txt` (13 bytes) over pooled keep-alive "
        "HTTP/1.1 to the same nginx backends: HAProxy `mode http` + `http-reuse safe`, nginx `proxy_pass` to a "
        "`keepalive 64` upstream, spliced `mode: http` (pool `protocol: http1`). Load: "
        + "; ".join(f"`{t}` {TEST_LABEL.get(t, t)}" for _, t, _ in rows_t)
        + (f"; `https-idle` {TEST_LABEL['https-idle']}" if "https-idle" in tests else "")
        + (f". Offered rate of the -rate tests: {kn.get('HTTPS_RATE', HTTPS_RATE)} req/s in total"
           if any(t.endswith("-rate") for t in tests) else "")
        + ". "
        "spliced ÷ best = spliced's median ÷ the better of the peers' medians (higher is better, "
        "except p99 and KiB/conn).")
    md.append("")

    def best(test, field, lower):
        vs = [(m(p, test, field), p) for p in peers if m(p, test, field) is not None]
        if not vs:
            return None, None
        return (min if lower else max)(vs)

    def ratio_cols(test, field, lower):
        out = []
        for s in sp:
            bv, bp = best(test, field, lower)
            sv = m(s, test, field)
            out.append(f"{sv / bv:.2f} ({bp})" if sv is not None and bv else "–")
        return out

    for title_, field, k, lower, what in (
            ("Work per proxy CPU-second (requests or connections per CPU-second of the proxy's process tree)",
             "per_cpu", "int", False, "/CPU-s"),
            ("Throughput (requests or connections per second)", "rps", "int", False, "/s"),
            ("Latency p99 (ms; h2load's per-request log for the -rate tests, wrk's for https-close)",
             "p99_ms", "g", True, "p99")):
        rows = []
        for label, test, unit in rows_t:
            if field == "p99_ms" and not any(m(t, test, field) is not None for t in ts):
                continue
            rows.append([f"{label} (`{test}`)", unit] + [cell(t, test, field, k) for t in ts]
                        + ratio_cols(test, field, lower))
        if rows:
            md.append(f"### {title_}")
            md.append("")
            md.append(table(["test", "unit"] + ts + [f"{s} ÷ best" for s in sp], rows, left=2))
            md.append("")
    rows = []
    for label, test, _ in rows_t:
        row = [f"`{test}`"]
        for t in ts:
            v = [r.get("per_cpu") for r in res if r["target"] == t and r["test"] == test and r.get("per_cpu")]
            mid = statistics.median(v) if v else None
            row.append(f"{fnum(min(v), 'int')}–{fnum(max(v), 'int')} ({(max(v) - min(v)) / mid * 100:.0f}%)"
                       if v else "–")
        row.append("/".join(fnum(m(t, test, "lb_cores"), "ratio") for t in ts))
        rows.append(row)
    if rows:
        md.append("### Spread of the per-CPU-second figures over rounds (min–max, (max−min)/median), proxy cores busy")
        md.append("")
        md.append(table(["test"] + ts + [f"cores busy ({'/'.join(ts)})"], rows))
        md.append("")
    if "https-idle" in tests:
        n = kn.get("HTTPS_IDLE_CONNS", HTTPS_IDLE_CONNS)
        md.append(f"### Idle TLS connections ({n} held through a fresh proxy process)")
        md.append("")
        md.append("Each connection: a full TLS 1.3 handshake, one h1 `GET /small.txt`, then idle (bench/tlshold.py). "
                  "KiB/conn = (RSS with them held − RSS before) ÷ held, RSS of the proxy's process tree.")
        md.append("")
        rows = []
        for t in ts:
            rs = [r for r in res if r["target"] == t and r["test"] == "https-idle"]
            if not rs:
                continue
            rows.append([t, fnum(med([r.get("held") for r in rs]), "int"),
                         fnum(med([r.get("rss_before_kib", 0) / 1024 for r in rs]), "1"),
                         fnum(med([r.get("rss_after_kib", 0) / 1024 for r in rs]), "1"),
                         fnum(med([r.get("kib_per_conn") for r in rs]), "ratio"),
                         fnum(med([r.get("pss_kib_per_conn") for r in rs]), "ratio"),
                         f"{sum(1 for r in rs if r.get('live'))}/{len(rs)}"])
        bv, bp = best("https-idle", "kib_per_conn", True)
        md.append(table(["target", "held", "RSS before MiB", "RSS after MiB", "KiB/conn (RSS)", "KiB/conn (PSS)",
                         "live"], rows))
        for s in sp:
            sv = m(s, "https-idle", "kib_per_conn")
            if sv is not None and bv:
                md.append("")
                md.append(f"{s} ÷ best ({bp}): {sv / bv:.2f} KiB/conn ratio (lower is better).")
        md.append("")
    if charts:
        md.append("### Charts")
        md.append("")
        for name, caption in charts:
            md.append(f"![{caption}]({chart_prefix}{name})")
            md.append("")
    elif chart_note:
        md.append(f"Charts: {chart_note}")
        md.append("")
    for s in sp:
        rows = []
        for label, test, _ in rows_t:
            rs = [r for r in res if r["target"] == s and r["test"] == test and r.get("spliced")]
            if not rs:
                continue

            def d(key):
                return fnum(med([r["spliced"].get(key, 0.0) for r in rs]), "int")

            rows.append([f"`{test}`", d("spliced_http_requests_total{2xx}"),
                         d("spliced_http_requests_total{4xx}"), d("spliced_http_requests_total{5xx}"),
                         d("spliced_tls_handshakes_total{ok}"), d("spliced_tls_handshakes_total{failed}"),
                         d("spliced_tls_handshakes_total{timeout}"), d("spliced_listener_accepted_total")])
        if rows:
            md.append(f"### {s}'s own counters (/metrics, delta over each test, medians)")
            md.append("")
            md.append(table(["test", "2xx", "4xx", "5xx", "handshakes ok", "failed", "timeout", "accepted"], rows))
            md.append("")
    return md


def https_block(ctx, meta, charts=(), chart_note=None, chart_prefix="results/"):
    """The HTTP-mode section of a run on its own, with the method line and its run
    hygiene, for RESULTS.md beside an L4 run (publish.publish_https); charts as in
    https_section."""
    res = [x for x in ctx["results"] if x["test"] in HTTPS_TESTS]
    targets = list(ctx["targets"])
    tests = [t for t in meta["tests"] if t in HTTPS_TESTS]
    kn = meta.get("knobs", {})
    quiet_limit = kn.get("QUIET_LIMIT", QUIET_LIMIT)

    def m(target, test, field):
        return med([r.get(field) for r in res if r["target"] == target and r["test"] == test])

    def cell(target, test, field, kind_):
        v = m(target, test, field)
        n = sum(1 for r in res if r["target"] == target and r["test"] == test and is_timed(r)
                and r.get("foreign", 0) > quiet_limit)
        return fnum(v, kind_) + ("*" * min(n, 3) if v is not None else "")

    md = []
    v = meta.get("versions", {})
    st = meta.get("spliced_start", {})
    timed = [r for r in res if is_timed(r)]
    fc = [r.get("foreign") for r in timed]
    dirty = [r for r in timed if r.get("foreign", 0) > quiet_limit]
    body = https_section(res, meta, targets, tests, m, cell, charts, chart_note, chart_prefix)
    md.append(body[0])
    md.append("")
    md.append(
        f"Method: run `{meta.get('out_name', '?')}`, {meta['date']}, {meta['reps']} rounds × {meta['dur']} s, targets "
        "alternated (the first one rotates each round), medians over rounds. "
        f"spliced {v.get('spliced', '?')} (TLS provider {st.get('tls_provider', '?')}, rustls; engine "
        f"{st.get('engine', '?')}); HAProxy {v.get('haproxy', '?')} and nginx {v.get('nginx', '?')} with Debian's "
        f"OpenSSL {v.get('openssl', '?')}; h2load {v.get('h2load', '?')}, wrk {v.get('wrk', '?')}; kernel "
        f"{meta.get('kernel', '?')}, {meta.get('cpus', '?')} vCPUs. Pinning: each proxy alone on CPU "
        f"{kn.get('LB_CPUS', LB_CPUS)} (spliced `workers: 1`, HAProxy `nbthread 1`, nginx 1 worker; `taskset`), "
        f"load tool + nginx backend (1 worker) on CPU {kn.get('LOAD_CPUS', LOAD_CPUS)}. Proxy CPU = utime+stime "
        "of its process tree over the test (/proc). Command: `" + meta.get("command", "TESTS=https bench/run.sh") + "`."
        + (f" {meta['note']}" if meta.get("note") else ""))
    md.append("")
    md.append(
        f"Run hygiene: {len(timed)} load tests kept, {sum(1 for r in timed if r.get('attempts', 1) > 1)} repeated; "
        f"foreign CPU (other people's work on the machine) in kept tests median {fnum(med(fc), 'ratio')}, max "
        f"{fnum(max(fc) if fc else None, 'ratio')} cores; {len(dirty)} of {len(timed)} above {quiet_limit} cores "
        "(a `*` per such round after a figure). Load average at start / end: "
        f"{meta.get('loadavg_start', '?')} / {meta.get('loadavg_end', '?')}.")
    errs = [r for r in res if r.get("error") or r.get("errors") or r.get("non2xx")]
    for r in errs:
        md.append(f"- r{r['round']} {r['test']} {r['target']}: " + ", ".join(
            x for x in [r.get("error"), f"socket errors {r['errors']} {r.get('err_detail')}" if r.get("errors") else None,
                        f"non-2xx {r['non2xx']}" if r.get("non2xx") else None] if x))
    md.append("")
    md += body[2:]
    return md
