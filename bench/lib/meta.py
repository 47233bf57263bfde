"""What a run records about itself (summary.json's "meta"): the machine (CPU,
memory, OS, fd limit), the version of every program, the spliced binaries'
revisions and sha256, and the knobs.

Why a module of its own: figures from this shared VM mean something only next to
the machine and versions they came from (RESULTS.md prints them), and publishing a
run that did not record its machine falls back to the publishing machine's
(publish.py). It only reads; it starts nothing but `--version` style commands.
"""

import datetime
import hashlib
import os
import platform
import re
import resource
import subprocess

from lib import procs
from lib.knobs import (DUR, ECHO_CONNS, ECHO_SIZE, GAP, HOLD_MAX, HTTPS_CLOSE_CONNS, HTTPS_CONNS, HTTPS_IDLE_CONNS,
                       HTTPS_RATE, HTTPS_STIME_CONC, HTTPS_STREAMS, IDLE_CONNS, IDLE_PING, LB_CPUS, LB_CPUS2,
                       LOAD_CPUS, MAXCONN_CHUNK, MAXCONN_N, MAXCONN_TIMEOUT, QUIET_BUDGET, QUIET_LIMIT, QUIET_WAIT,
                       RATE_CONC, RATE_PAYLOAD, REPS, RETRIES, ROOT, SCALE, SMOKE, SOURCES, SPLICED_BIN_B, SYSCTL)
from lib.procs import have_tcpload


def version(cmd):
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (cp.stdout + cp.stderr).strip()
        m = re.search(r"\d+\.\d+(\.\d+)?([-+~.\w]*)?", text)
        return m.group(0) if m else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def machine_info():
    info = {"kernel": platform.release(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True, timeout=5).stdout.strip()
        if virt:
            info["virtualization"] = virt
    except (OSError, subprocess.TimeoutExpired):
        pass
    info["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    return info


def recorded_knobs():
    """The knobs summary.json records (the report reads them back: see report.py)."""
    return {
        "REPS": REPS, "DUR": DUR, "SMOKE": SMOKE, "SCALE": SCALE,
        "LB_CPUS": LB_CPUS, "LB_CPUS2": LB_CPUS2, "LOAD_CPUS": LOAD_CPUS,
        "QUIET_LIMIT": QUIET_LIMIT, "QUIET_WAIT": QUIET_WAIT, "QUIET_BUDGET": QUIET_BUDGET,
        "RETRIES": RETRIES, "GAP": GAP, "SYSCTL": SYSCTL, "SOURCES": SOURCES,
        "RATE_CONC": RATE_CONC, "RATE_PAYLOAD": RATE_PAYLOAD, "ECHO_CONNS": ECHO_CONNS,
        "ECHO_SIZE": ECHO_SIZE, "IDLE_CONNS": IDLE_CONNS, "IDLE_PING": IDLE_PING,
        "MAXCONN_N": MAXCONN_N, "MAXCONN_CHUNK": MAXCONN_CHUNK, "MAXCONN_TIMEOUT": MAXCONN_TIMEOUT,
        "HOLD_MAX": HOLD_MAX,
        "HTTPS_CONNS": HTTPS_CONNS, "HTTPS_STREAMS": HTTPS_STREAMS, "HTTPS_RATE": HTTPS_RATE,
        "HTTPS_STIME_CONC": HTTPS_STIME_CONC, "HTTPS_CLOSE_CONNS": HTTPS_CLOSE_CONNS,
        "HTTPS_IDLE_CONNS": HTTPS_IDLE_CONNS,
    }


def run_meta(targets, tests, ncpu, spliced_bin, spliced_bins, with_spliced):
    """summary.json's meta as the run starts: date, rounds, targets and tests, the
    machine, the knobs, and the version (and sha256) of every program that runs."""
    git = os.environ.get("SPLICED_GIT") or subprocess.run(
        ["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    git_b = os.environ.get("SPLICED_GIT_B") or f"SPLICED_BIN_B={SPLICED_BIN_B}"
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "reps": REPS,
        "dur": DUR,
        "targets": targets,
        "tests": tests,
        "kernel": platform.release(),
        "cpus": ncpu,
        "pinned": procs.PIN,
        "loadavg_start": " ".join(open("/proc/loadavg").read().split()[:3]),
        "machine": machine_info(),
        "knobs": recorded_knobs(),
        "spliced_sha256": {("spliced-b" if k == "b" else "spliced"): sha256_file(p)
                           for k, p in spliced_bins.items() if os.path.exists(p)},
        "versions": {
            "spliced": version([spliced_bin, "--version"]) + (f" ({git})" if git else "") if with_spliced else "–",
            **({"spliced-b": version([spliced_bins["b"], "--version"]) + f" ({git_b})"}
               if "b" in spliced_bins else {}),
            "haproxy": version(["haproxy", "-v"]),
            "nginx": version(["nginx", "-v"]),
            "wrk": version(["wrk", "-v"]),
            **({"h2load": version(["h2load", "--version"]), "openssl": version(["openssl", "version"])}
               if any(t.startswith("https-") for t in tests) else {}),
            "iperf3": version(["iperf3", "-v"]),
            "tcpload": version([procs.TCPLOAD, "--version"]) if have_tcpload() else "not built",
            "kernel": platform.release(),
        },
    }
    return meta
