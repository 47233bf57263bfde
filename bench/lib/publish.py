"""Turning a finished run into documents: the charts (bench/plot.py, run with an
interpreter that has matplotlib), `bench.py --report OUT` (results.md again from
OUT/summary.json), `bench.py --publish OUT [--to DIR]` (DIR/RESULTS.md with the
machine, versions, pinning and knobs, and DIR/results/) and `bench.py
--publish-https OUT [--to DIR]` (the HTTP-mode section of DIR/RESULTS.md, its
charts DIR/results/https-*.png and DIR/results/https-summary.json).

Charts are never a reason for a run or a publication to fail: without matplotlib,
or when plot.py fails, the report says why it has none.

Why a module of its own: these work on a run directory alone, after the run (or
on another machine), and must not need anything the run started; the tables
themselves are report.py's.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from lib.knobs import HERE, LB_CPUS, LB_CPUS2, LOAD_CPUS, ROOT, log
from lib.meta import machine_info
from lib.knobs import HTTPS_TESTS
from lib.report import https_block, report, table
from lib.targets import TARGET_SPEC

# ---------------------------------------------------------------- charts


def plot_python():
    """An interpreter that can import matplotlib (PLOT_PYTHON, this one, /usr/bin/python3)."""
    cands = [os.environ.get("PLOT_PYTHON"), sys.executable, "/usr/bin/python3", shutil.which("python3")]
    for c in cands:
        if not c or not os.access(c, os.X_OK):
            continue
        try:
            if subprocess.run([c, "-c", "import matplotlib"], capture_output=True, timeout=60).returncode == 0:
                return c
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def make_charts(out, summary=None, charts_dir=None):
    """Run bench/plot.py on OUT/summary.json (writing OUT/charts/), or on the file
    SUMMARY (writing CHARTS_DIR/). Never raises. -> ([(file, caption)], note)."""
    try:
        return _make_charts(out, summary, charts_dir)
    except Exception as e:  # a chart is never worth a failed run
        return [], f"plot.py failed: {type(e).__name__}: {e}"


def _make_charts(out, summary, charts_dir):
    py = plot_python()
    again = "--report" if summary is None else "--publish-https"
    if py is None:
        return [], ("skipped: matplotlib is not installed (bench/run.sh installs python3-matplotlib; "
                    f"then `python3 bench/bench.py {again} {out}`)")
    argv = [py, os.path.join(HERE, "plot.py")] + ([out] if summary is None else [summary, charts_dir])
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        return [], f"plot.py failed: {(cp.stderr or cp.stdout).strip()[-400:]}"
    if cp.stderr.strip():
        log(f"plot.py: {cp.stderr.strip()[-1000:]}")
    charts = []
    for line in cp.stdout.splitlines():
        name, _, caption = line.partition("\t")
        if name.strip():
            charts.append((name.strip(), caption.strip() or name.strip()))
    return charts, None if charts else "no figures to chart in this run"


# ---------------------------------------------------------------- --report and --publish


def summary_path(src):
    """SRC's summary: SRC/summary.json of a run directory, or SRC itself (a file)."""
    return src if os.path.isfile(src) else os.path.join(src, "summary.json")


def load_run(out):
    """A finished run's meta and a report context (no processes) from OUT/summary.json
    (or from OUT, a summary file)."""
    with open(summary_path(out)) as f:
        data = json.load(f)
    meta = data["meta"]
    ctx = {"targets": meta["targets"], "results": data["results"], "balancers": {}}
    return meta, ctx


def rerender(out):
    """bench.py --report DIR: rebuild DIR/charts and DIR/results.md from DIR/summary.json."""
    meta, ctx = load_run(out)
    charts, note = make_charts(out)
    md = report(ctx, meta, charts, note)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


def publish(out, dest):
    """bench.py --publish OUT [--to DIR]: DIR/RESULTS.md + DIR/results/ from run OUT."""
    out = os.path.abspath(out)
    meta, ctx = load_run(out)
    charts, note = make_charts(out)
    resdir = os.path.join(dest, "results")
    if os.path.isdir(resdir):
        for name in os.listdir(resdir):
            if name.endswith((".png", ".svg", ".json")) and not name.startswith("https-"):
                os.remove(os.path.join(resdir, name))
    os.makedirs(resdir, exist_ok=True)
    for name, _ in charts:
        shutil.copy2(os.path.join(out, "charts", name), os.path.join(resdir, name))
    shutil.copy2(os.path.join(out, "summary.json"), os.path.join(resdir, "summary.json"))
    mach = meta.get("machine")
    machine_note = ""
    if not mach:
        mach = machine_info()
        machine_note = " (this run did not record its machine: these are the publishing machine's)"
    kn = meta.get("knobs", {})
    md = [f"# spliced benchmark results — {meta['date']}", ""]
    md.append(f"The latest published run of `bench/run.sh` (method, knobs and caveats: [README.md](README.md)). "
              f"Run directory: `{os.path.relpath(out, ROOT) if out.startswith(ROOT) else os.path.basename(out)}`; "
              f"took {meta.get('elapsed', '?')}. Regenerate with `python3 bench/bench.py --publish OUT`.")
    md.append("")
    md.append("## Machine" + machine_note)
    md.append("")
    rows = [
        ["CPU", f"{mach.get('cpu', '?')}, {mach.get('cores', '?')} cores"
                + (f" ({mach['virtualization']})" if mach.get("virtualization") else "")],
        ["memory", f"{mach.get('memory_gib', '?')} GiB"],
        ["OS / kernel", f"{mach.get('os', '?')} / {mach.get('kernel', meta.get('kernel', '?'))}"],
        ["fd limit (soft/hard)", "/".join(str(x) for x in mach.get("nofile", []))],
        ["load average at start / end", f"{meta.get('loadavg_start', '?')} / {meta.get('loadavg_end', '?')}"],
    ]
    md.append(table(["", ""], rows, left=2))
    md.append("")
    md.append("## Versions")
    md.append("")
    md.append(table(["program", "version"], [[k, str(v)] for k, v in meta["versions"].items()], left=2))
    md.append("")
    md.append("## Pinning")
    md.append("")
    lb1, lb2, load = kn.get("LB_CPUS", LB_CPUS), kn.get("LB_CPUS2", LB_CPUS2), kn.get("LOAD_CPUS", LOAD_CPUS)
    rows = [[lb1, "the balancer under test (1 thread/worker), nothing else"],
            [load, "backends (nginx, iperf3 -s, tcpload serve), load generators (wrk, iperf3, tcpload), the script"]]
    if any(TARGET_SPEC.get(t, {}).get("workers", 1) > 1 for t in meta["targets"]):
        rows.append([lb2, "the 2-thread/worker variants (sharing a CPU with the load)"])
    md.append(table(["CPUs", "what"], rows, left=2) + ("" if meta.get("pinned", True) else "\n\nPinning was OFF in this run."))
    md.append("")
    md.append("## Knobs")
    md.append("")
    md.append("Targets: " + " ".join(meta["targets"]) + ". Tests: " + " ".join(meta["tests"]) + ".")
    md.append("")
    md.append(table(["knob", "value"], [[k, str(v)] for k, v in kn.items()], left=2))
    md.append("")
    body = report(ctx, meta, charts, note, chart_prefix="results/", title=False, versions=False)
    md.append(body)
    path = os.path.join(dest, "RESULTS.md")
    # An HTTP-mode section published on its own (--publish-https) stays, unless this
    # run has HTTPS tests itself (then its report has the section).
    old = kept_https_block(path)
    if old and not any(t in HTTPS_TESTS for t in meta["tests"]):
        md.append(old)
    with open(path, "w") as f:
        f.write("\n".join(md))
    log(f"written {path} and {resdir}/ ({len(charts)} charts)")
    return 0


HTTPS_BEGIN = "<!-- https-section: bench.py --publish-https OUT writes it, --publish keeps it -->"
HTTPS_END = "<!-- /https-section -->"


def kept_https_block(path):
    """The marked HTTP-mode block of an existing RESULTS.md, or ""."""
    try:
        text = open(path).read()
    except OSError:
        return ""
    a, b = text.find(HTTPS_BEGIN), text.find(HTTPS_END)
    return text[a:b + len(HTTPS_END)] + "\n" if a >= 0 and b > a else ""


def publish_https(out, dest):
    """bench.py --publish-https OUT [--to DIR]: the HTTP-mode section of run OUT into
    DIR/RESULTS.md (replacing the one there, or appended), beside the L4 run that
    --publish wrote, with its charts as DIR/results/https-*.png; OUT's summary.json
    goes to DIR/results/https-summary.json, with the run's name (meta.out_name) in
    it. OUT may also be such a summary file (e.g. DIR/results/https-summary.json
    itself: the section and the charts again from the published run)."""
    out = os.path.abspath(out)
    summary = summary_path(out)
    with open(summary) as f:
        data = json.load(f)
    meta = data["meta"]
    ctx = {"targets": meta["targets"], "results": data["results"], "balancers": {}}
    if not any(t in HTTPS_TESTS for t in meta["tests"]):
        raise SystemExit(f"{out} has no HTTPS test")
    if not os.path.isfile(out) or not meta.get("out_name"):
        meta["out_name"] = os.path.relpath(out, ROOT) if out.startswith(ROOT) else os.path.basename(out)
    resdir = os.path.join(dest, "results")
    os.makedirs(resdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="https-charts.") as tmp:
        charts, note = make_charts(out, summary, tmp)
        charts = [c for c in charts if c[0].startswith("https-")]
        for name in os.listdir(resdir):  # no chart of an earlier HTTPS run stays
            if name.startswith("https-") and name.endswith(".png"):
                os.remove(os.path.join(resdir, name))
        for name, _ in charts:
            shutil.copy2(os.path.join(tmp, name), os.path.join(resdir, name))
    if not charts and not note:
        note = "no HTTP-mode figures to chart in this run"
    block = "\n".join([HTTPS_BEGIN] + https_block(ctx, meta, charts, note, "results/") + [HTTPS_END]) + "\n"
    path = os.path.join(dest, "RESULTS.md")
    text = open(path).read() if os.path.exists(path) else ""
    old = kept_https_block(path)
    text = text.replace(old, block) if old else text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(resdir, "https-summary.json"), "w") as f:
        json.dump(data, f, indent=1)
    log(f"written the HTTP-mode section of {path}, {len(charts)} charts and {resdir}/https-summary.json"
        + (f" (charts: {note})" if note else ""))
    return 0
