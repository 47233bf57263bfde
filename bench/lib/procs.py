"""The programs the run starts: each in its own process group, pinned with
taskset, logged to a file, and every one of them killed at exit (also on Ctrl-C
and SIGTERM), together with the sysctls the run raised.

Why a module of its own: whatever starts a backend, a balancer or a hold process
must register it here, so that one `cleanup()` can stop them all and put the
machine back as it was; and which programs exist (`have`, the frozen tcpload)
decides which targets and tests can run. It never measures anything.

Run-time state, assigned by bench.py's main and read as `procs.PIN` /
`procs.TCPLOAD` (never imported by name, which would copy the value before main
sets it).
"""

import os
import select
import shutil
import signal
import subprocess
import time

from lib.knobs import SYSCTL, TCPLOAD_BIN

STARTED = []  # every Proc we started, for cleanup
HELPERS = []  # short-lived helper Popens (hold processes), for cleanup
SYSCTL_RESTORE = {}
# Pin with taskset? Set by main: only with 2 or more CPUs and taskset installed.
PIN = False
TCPLOAD = TCPLOAD_BIN  # replaced by a frozen copy in OUT/run at start


class Proc:
    """A long-running helper (backend or balancer) in its own process group."""

    def __init__(self, name, argv, cpus, logfile, cwd=None):
        self.name = name
        self.argv = argv
        self.cpus = cpus
        self.logfile = logfile
        self.cwd = cwd
        self.restarts = 0
        self.start()

    def start(self, argv=None):
        """(Re)start the program; `argv` replaces the command line (new ports)."""
        if argv is not None:
            self.argv = argv
        with open(self.logfile, "ab") as lf:
            self.p = subprocess.Popen(
                taskset(self.cpus) + self.argv,
                stdin=subprocess.DEVNULL,
                stdout=lf,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid = self.p.pid
        self.stopped = False
        if self not in STARTED:
            STARTED.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.stopped:
            return  # its group is gone: a second killpg could hit a reused pid
        self.stopped = True
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The group may still hold children (nginx workers) even if the leader exited.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n=20):
        return tail(self.logfile, n)


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return ""


def taskset(cpus):
    return ["taskset", "-c", cpus] if cpus and PIN else []


def kill_group(p):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if p.poll() is not None and sig == signal.SIGTERM:
            continue
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def cleanup():
    for p in reversed(HELPERS):
        kill_group(p)
    HELPERS.clear()
    for p in reversed(STARTED):
        p.stop()
    STARTED.clear()
    for path, value in SYSCTL_RESTORE.items():
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            pass
    SYSCTL_RESTORE.clear()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


class LineReader:
    """Line-wise reads from a pipe with a timeout (select + os.read, no buffering)."""

    def __init__(self, f):
        self.fd = f.fileno()
        self.buf = b""
        self.eof = False

    def readline(self, timeout):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf and not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
        else:
            line, self.buf = self.buf, b""
            if not line:
                return None
        return line.decode("utf-8", "replace")


# ---------------------------------------------------------------- sysctls (restored by cleanup)


def raise_sysctls():
    if not SYSCTL or os.geteuid() != 0:
        return
    for path, want in (
        ("/proc/sys/net/core/somaxconn", 65535),
        ("/proc/sys/net/ipv4/tcp_max_syn_backlog", 65535),
    ):
        try:
            with open(path) as f:
                old = f.read().strip()
            if int(old) < want:
                with open(path, "w") as f:
                    f.write(str(want))
                SYSCTL_RESTORE[path] = old
        except (OSError, ValueError):
            pass


# ---------------------------------------------------------------- config files, installed programs


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def have(cmd):
    return shutil.which(cmd) is not None


def have_tcpload():
    return os.access(TCPLOAD, os.X_OK)
