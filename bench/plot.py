#!/usr/bin/env python3
"""Charts of a bench run: spliced against HAProxy and nginx.

    plot.py OUT                  reads OUT/summary.json, writes OUT/charts/*.png
    plot.py SUMMARY.json DIR     reads that file (e.g. bench/results/https-summary.json),
                                 writes DIR/*.png (removing no other file there)

The L4 charts (efficiency, throughput, latency, idle, scaling) for the L4 tests of
the run, the https-*.png ones (https-efficiency, https-latency, https-idle) for its
HTTP-mode tests; a chart whose figures the run lacks is not drawn.

Prints one line per chart written: `file<TAB>caption` (bench.py links them from
results.md and RESULTS.md). Needs matplotlib (Debian: python3-matplotlib); uses
the Agg backend, so no display is needed. Figures are medians over rounds, as in
the tables; the definitions (which test, which field) come from bench/lib/report.py.
A chart that fails is reported on stderr and the others are still drawn.
"""

import json
import os
import statistics
import sys
import traceback

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import knobs, report  # noqa: E402
from lib.knobs import HTTPS_TARGETS, HTTPS_TESTS  # noqa: E402
from lib.targets import SCALE_OF, TARGET_SPEC, kind  # noqa: E402

COLORS = {
    "direct": "#bdbdbd",
    "haproxy": "#9ecae1",
    "haproxy-splice": "#3182bd",
    "haproxy-t2-splice": "#08519c",
    "nginx": "#74c476",
    "nginx-w2": "#238b45",
    "spliced": "#e6550d",
    "spliced-w2": "#a63603",
    "spliced-b": "#fdae6b",
}
PEER_KINDS = ("haproxy", "nginx")
DPI = 110


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


class Run:
    def __init__(self, summary):
        with open(summary) as f:
            data = json.load(f)
        self.meta = data["meta"]
        self.results = data["results"]
        self.targets = self.meta["targets"]
        self.tests = self.meta["tests"]

    def m(self, target, test, field):
        return median(r.get(field) for r in self.results if r["target"] == target and r["test"] == test)

    def workers(self, target):
        return TARGET_SPEC.get(target, {}).get("workers", 1)

    def one_worker(self, with_direct=True):
        return [t for t in self.targets if self.workers(t) == 1 and (with_direct or t != "direct")]

    def peers(self):
        return [t for t in self.one_worker(False) if kind(t) in PEER_KINDS]

    def https_targets(self):
        """The targets with an https frontend that have an HTTP-mode record."""
        return [t for t in self.targets if t in HTTPS_TARGETS
                and any(r["target"] == t and r["test"] in HTTPS_TESTS for r in self.results)]

    def https_peers(self):
        return [t for t in self.https_targets() if kind(t) in PEER_KINDS]

    def dirty_note(self, tests):
        """"k of n load tests ran with foreign CPU above QUIET_LIMIT" for these tests, or None."""
        limit = self.meta.get("knobs", {}).get("QUIET_LIMIT", knobs.QUIET_LIMIT)
        timed = [r for r in self.results if r["test"] in tests and report.is_timed(r)]
        dirty = [r for r in timed if r.get("foreign", r.get("foreign_cores")) > limit]
        if not dirty:
            return None
        return (f"{len(dirty)} of {len(timed)} load tests ran with more than {limit} cores of foreign CPU "
                "(a * in the tables): noisy")


def title_suffix(run):
    return f"({run.meta['date']}, {run.meta['reps']} rounds × {run.meta['dur']} s, medians)"


def bar_labels(ax, bars, fmt):
    for b in bars:
        h = b.get_height()
        if h:
            ax.annotate(fmt(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 1), textcoords="offset points")


def short(v):
    if v is None:
        return ""
    if abs(v) >= 10000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k"
    if abs(v) >= 10:
        return f"{v:.0f}"
    return f"{v:.2g}"


def dec(v):
    """A bar label with decimals (ms, KiB): 8.99, 12.3, 178."""
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def axis_short(ax):
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: short(v) if v else "0"))


def small_multiples(run, specs, targets, title, path, note=None, fmt=short):
    """One subplot per (label, test, field) with a bar per target (fmt: the bar labels)."""
    specs = [s for s in specs if s[1] in run.tests and any(run.m(t, s[1], s[2]) is not None for t in targets)]
    if not specs:
        return False
    ncol = min(4, len(specs))
    nrow = (len(specs) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.9 * nrow), squeeze=False)
    for ax, (label, test, field) in zip(axes.flat, specs):
        vals = [run.m(t, test, field) for t in targets]
        bars = ax.bar(range(len(targets)), [v or 0 for v in vals], color=[COLORS.get(t, "#999") for t in targets])
        for t, b in zip(targets, bars):
            if t.startswith("spliced"):
                b.set_edgecolor("black")
                b.set_linewidth(1.2)
        bar_labels(ax, bars, fmt)
        ax.set_title(label, fontsize=9)
        ax.set_xticks(range(len(targets)))
        ax.set_xticklabels(targets, rotation=35, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        axis_short(ax)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    fig.suptitle(f"{title} {title_suffix(run)}", fontsize=10)
    if note:
        fig.text(0.5, 0.005, note, ha="center", fontsize=7, style="italic")
    fig.tight_layout(rect=(0, 0.02 * (1 + note.count("\n") if note else 1), 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def ratio_chart(run, specs, targets, peers, title, path, note=None):
    """Grouped bars, one group per (label, test, field) and a bar per target: its
    median ÷ the best peer's median (1.0 = the best peer; higher is better)."""
    rows = []
    for label, test, field in specs:
        best = max((v for v in (run.m(p, test, field) for p in peers) if v), default=None)
        if not best:
            continue
        rows.append((label, [(run.m(t, test, field) or 0) / best for t in targets]))
    if not rows or not peers:
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.2))
    width = 0.8 / len(targets)
    for i, t in enumerate(targets):
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(rows))]
        bars = ax.bar(xs, [r[1][i] for r in rows], width, label=t, color=COLORS.get(t, "#999"),
                      edgecolor="black" if t.startswith("spliced") else None,
                      linewidth=1.0 if t.startswith("spliced") else 0)
        if t.startswith("spliced"):
            bar_labels(ax, bars, lambda h: f"×{h:.2f}")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r[0] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("÷ best of " + " / ".join(peers), fontsize=8)
    ax.set_title(f"{title} {title_suffix(run)}", fontsize=9)
    ax.legend(fontsize=7, ncol=len(targets))
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    if note:
        fig.text(0.5, 0.005, note, ha="center", fontsize=7, style="italic")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def efficiency_chart(run, path):
    """Per CPU-second figures normalized to the best peer (1.0)."""
    specs = [(label, test, field) for _, label, test, field, _, _ in report.EFFICIENCY if test in run.tests]
    return ratio_chart(run, specs, run.one_worker(False), run.peers(),
                       "Work per balancer CPU-second, relative to the best peer", path)


def https_efficiency_chart(run, path):
    """HTTP mode: requests or connections per proxy CPU-second ÷ the best peer's, per test."""
    specs = [(f"{test}\n{unit}/CPU-s", test, "per_cpu") for _, test, unit in report.HTTPS_ROWS
             if test in run.tests]
    return ratio_chart(run, specs, run.https_targets(), run.https_peers(),
                       "HTTPS: work per proxy CPU-second, relative to the best peer", path,
                       run.dirty_note([t for _, t, _ in specs]))


def https_latency_chart(run, path):
    """HTTP mode: p99 of the fixed-rate tests and of https-close, a bar per proxy."""
    rate = run.meta.get("knobs", {}).get("HTTPS_RATE", knobs.HTTPS_RATE)
    specs = [(f"{t}: p99 ms at {rate} req/s", t, "p99_ms") for t in ("https-h2-rate", "https-h1-rate")]
    specs.append(("https-close: p99 ms (saturating)", "https-close", "p99_ms"))
    note = ("p99 from h2load's per-request log (-rate tests, offered rate below every peer's saturation) and "
            "wrk's histogram (https-close: a new TLS connection per request, resumed)")
    dirty = run.dirty_note([t for _, t, _ in specs])
    return small_multiples(run, specs, run.https_targets(), "HTTPS: p99 latency, ms (lower is better)", path,
                           note + (f"\n{dirty}" if dirty else ""), dec)


def idle_chart(run, path, test="idle", targets=None, n=None, title="Idle connections", target_kib=2.0):
    """KiB per idle connection and RSS with them held, a bar per target (lower is better)."""
    targets = [t for t in (run.targets if targets is None else targets)
               if t != "direct" and run.m(t, test, "kib_per_conn") is not None]
    if not targets:
        return False
    if n is None:
        n = run.meta.get("knobs", {}).get("IDLE_CONNS", knobs.IDLE_CONNS)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, field, label in ((ax1, "kib_per_conn", "KiB per idle connection (RSS)"),
                             (ax2, "rss_at_n_mib", f"RSS with {n} connections held, MiB")):
        vals = [run.m(t, test, field) for t in targets]
        bars = ax.bar(range(len(targets)), [v or 0 for v in vals], color=[COLORS.get(t, "#999") for t in targets])
        for t, b in zip(targets, bars):
            if t.startswith("spliced"):
                b.set_edgecolor("black")
                b.set_linewidth(1.2)
        bar_labels(ax, bars, dec)
        ax.set_xticks(range(len(targets)))
        ax.set_xticklabels(targets, rotation=30, ha="right", fontsize=8)
        ax.set_title(label + " (lower is better)", fontsize=9)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    if target_kib:
        ax1.axhline(target_kib, color="#e6550d", linewidth=0.8, linestyle="--")
        ax1.annotate(f"issue target: {target_kib:g} KiB", (-0.45, target_kib), fontsize=7, color="#e6550d",
                     ha="left", va="bottom", xytext=(0, 1), textcoords="offset points")
    fig.suptitle(f"{title} {title_suffix(run)}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def https_idle_chart(run, path):
    """HTTP mode: KiB per idle TLS connection (the issue's target is the best peer's, no fixed line)."""
    n = run.meta.get("knobs", {}).get("HTTPS_IDLE_CONNS", knobs.HTTPS_IDLE_CONNS)
    return idle_chart(run, path, "https-idle", run.https_targets(), n,
                      "Idle TLS connections (full handshake + 1 h1 request each)", None)


def scaling_chart(run, path):
    pairs = [(SCALE_OF[t], t) for t in run.targets
             if t in SCALE_OF and SCALE_OF[t] in run.targets]
    if not pairs:
        return False
    specs = [(label, test, field) for label, test, field, _ in report.SCALING_ROWS
             if test in run.tests and any(run.m(a, test, field) for a, _ in pairs)]
    if not specs:
        return False
    ncol = min(4, len(specs))
    nrow = (len(specs) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.6 * nrow), squeeze=False)
    for ax, (label, test, field) in zip(axes.flat, specs):
        for a, b in pairs:
            ys = [run.m(a, test, field), run.m(b, test, field)]
            ax.plot([1, 2], [y if y is not None else float("nan") for y in ys], marker="o",
                    color=COLORS.get(a, "#999"), label=a, linewidth=2 if a == "spliced" else 1.2)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([1, 2])
        ax.set_xlim(0.7, 2.3)
        ax.set_xlabel("threads / workers", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        axis_short(ax)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(pairs), fontsize=8)
    fig.suptitle(f"Scaling 1 → 2 threads/workers {title_suffix(run)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def main():
    args = sys.argv[1:]
    if len(args) == 1 and os.path.isdir(args[0]):
        summary, charts, clean = os.path.join(args[0], "summary.json"), os.path.join(args[0], "charts"), True
    elif len(args) == 2 and os.path.isfile(args[0]):
        summary, charts, clean = args[0], args[1], False
    else:
        raise SystemExit(__doc__)
    run = Run(summary)
    os.makedirs(charts, exist_ok=True)
    if clean:  # OUT/charts is plot.py's own: no chart of an earlier rendering stays
        for name in os.listdir(charts):
            if name.endswith(".png"):
                os.remove(os.path.join(charts, name))
    made = []
    one = run.one_worker()
    thr = [(c, test, f) for _, c, test, f, _, low in report.FIGURES if not low]
    lat = [(c, test, f) for _, c, test, f, _, low in report.FIGURES if low and f == "p99_ms"]
    jobs = [
        ("efficiency.png", "Work per balancer CPU-second, relative to the best of HAProxy/nginx",
         lambda p: efficiency_chart(run, p)),
        ("throughput.png", "Throughput (higher is better)",
         lambda p: small_multiples(run, thr, one, "Throughput (higher is better)", p,
                                   "direct = no balancer (the loopback limit with this layout)")),
        ("latency.png", "p99 latency, ms (lower is better)",
         lambda p: small_multiples(run, lat, one, "p99 latency, ms (lower is better)", p)),
        ("idle.png", "Memory per idle connection", lambda p: idle_chart(run, p)),
        ("scaling.png", "Scaling from 1 to 2 threads/workers", lambda p: scaling_chart(run, p)),
        ("https-efficiency.png", "HTTPS: work per proxy CPU-second, relative to the best of HAProxy/nginx",
         lambda p: https_efficiency_chart(run, p)),
        ("https-latency.png", "HTTPS: p99 latency of the fixed-rate tests and https-close, ms (lower is better)",
         lambda p: https_latency_chart(run, p)),
        ("https-idle.png", "HTTPS: memory per idle TLS connection", lambda p: https_idle_chart(run, p)),
    ]
    failed = 0
    for name, caption, fn in jobs:
        try:
            if fn(os.path.join(charts, name)):
                made.append((name, caption))
        except Exception:  # one chart's bug must not cost the others
            failed += 1
            plt.close("all")
            print(f"plot.py: {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
    for name, caption in made:
        print(f"{name}\t{caption}")
    return 1 if failed and not made else 0


if __name__ == "__main__":
    sys.exit(main())
