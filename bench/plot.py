#!/usr/bin/env python3
"""Charts of a bench run: spliced against HAProxy and nginx.

    plot.py OUT          reads OUT/summary.json, writes OUT/charts/*.png

Prints one line per chart written: `file<TAB>caption` (bench.py links them from
results.md and RESULTS.md). Needs matplotlib (Debian: python3-matplotlib); uses
the Agg backend, so no display is needed. Figures are medians over rounds, as in
the tables; the definitions (which test, which field) come from bench/lib/report.py.
"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import knobs, report  # noqa: E402
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
}
PEER_KINDS = ("haproxy", "nginx")
DPI = 110


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


class Run:
    def __init__(self, out):
        with open(os.path.join(out, "summary.json")) as f:
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


def axis_short(ax):
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: short(v) if v else "0"))


def small_multiples(run, specs, targets, title, path, note=None):
    """One subplot per (label, test, field) with a bar per target."""
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
        bar_labels(ax, bars, short)
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
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def efficiency_chart(run, path):
    """Per CPU-second figures normalized to the best peer (1.0)."""
    peers = run.peers()
    targets = run.one_worker(False)
    specs = [(label, test, field) for _, label, test, field, _, _ in report.EFFICIENCY if test in run.tests]
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
    ax.set_title(f"Work per balancer CPU-second, relative to the best peer {title_suffix(run)}", fontsize=9)
    ax.legend(fontsize=7, ncol=len(targets))
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def idle_chart(run, path):
    targets = [t for t in run.targets if t != "direct" and run.m(t, "idle", "kib_per_conn") is not None]
    if not targets:
        return False
    n = run.meta.get("knobs", {}).get("IDLE_CONNS", knobs.IDLE_CONNS)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, field, label in ((ax1, "kib_per_conn", "KiB per idle connection (RSS)"),
                             (ax2, "rss_at_n_mib", f"RSS with {n} connections held, MiB")):
        vals = [run.m(t, "idle", field) for t in targets]
        bars = ax.bar(range(len(targets)), [v or 0 for v in vals], color=[COLORS.get(t, "#999") for t in targets])
        bar_labels(ax, bars, lambda h: f"{h:.2f}" if h < 10 else f"{h:.0f}")
        ax.set_xticks(range(len(targets)))
        ax.set_xticklabels(targets, rotation=30, ha="right", fontsize=8)
        ax.set_title(label + " (lower is better)", fontsize=9)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    ax1.axhline(2.0, color="#e6550d", linewidth=0.8, linestyle="--")
    ax1.annotate("issue target: 2 KiB", (-0.45, 2.0), fontsize=7, color="#e6550d", ha="left", va="bottom",
                 xytext=(0, 1), textcoords="offset points")
    fig.suptitle(f"Idle connections {title_suffix(run)}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


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
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    run = Run(out)
    charts = os.path.join(out, "charts")
    os.makedirs(charts, exist_ok=True)
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
    ]
    for name, caption, fn in jobs:
        if fn(os.path.join(charts, name)):
            made.append((name, caption))
    for name, caption in made:
        print(f"{name}\t{caption}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
