"""Starting a program on ports from the kernel, and checking that it alone
listens there (bench/README.md, "Ports").

No port is fixed, so that a run neither fails nor measures the wrong process when
another program (another run of this bench, a test suite) listens on some port.
Programs that can report the port they bound (spliced, tcpload serve, backend.py)
are given port 0 and read back from their logs (start_reporting); the others
(nginx, HAProxy, iperf3) get ports that the kernel handed out to a
bind(127.0.0.1:0) just before they start, and are started again on new ports if
they do not then listen there alone (start_on_free_ports). The ports come from
the ephemeral range, which the load tools use too; the kernel gives no connect()
or bind(0) a port that is listening.

Why a module of its own: every backend and balancer starts through these two
functions, so the rule "listening alone on every port, or start again" holds for
all of them. It knows nothing of what the programs are (configs are the callers'
business).
"""

import os
import re
import socket
import time

from lib.knobs import HOST, LOAD_CPUS, log
from lib.measure import listen_inodes, socket_inodes
from lib.procs import Proc

PORT_TRIES = 5  # starts of a program on newly picked ports before giving up
PORTS_HANDED = set()  # every port this run picked or was told, never picked again


def free_ports(n):
    """`n` distinct ports that are free on HOST now, from the kernel: bind(HOST:0)
    n sockets at once (so the kernel gives n different ports) and close them. The
    caller starts the program that takes them at once and checks that it listens
    there (wait_listening): another program may bind one in between. A port this
    run has already used is never handed out again (its old owner may still be
    going away)."""
    socks, out = [], []
    try:
        for _ in range(n + 1000):
            if len(out) == n:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
            p = s.getsockname()[1]
            if p not in PORTS_HANDED:
                out.append(p)
        else:
            raise SystemExit(f"could not get {n} free ports from the kernel")
    finally:
        for s in socks:
            s.close()
    PORTS_HANDED.update(out)
    return out


def wait_listening(proc, port_list, timeout=10.0):
    """Wait until `proc` listens on every port of `port_list`, and nothing else does:
    a port held by another process (our bind lost the race, or the other program
    shares it with SO_REUSEPORT, as HAProxy and spliced allow) fails at once.
    -> (True, "") or (False, why)."""
    end = time.monotonic() + timeout
    while True:
        if not proc.alive():
            return False, f"{proc.name} exited (code {proc.p.returncode}): {proc.tail(5).strip()[-600:]}"
        listening = {p: listen_inodes(p) for p in port_list}
        ours = socket_inodes([proc.pid])
        taken = [p for p, ino in listening.items() if ino - ours]
        if taken:
            # Seen twice, to be sure: a socket of ours that appeared between the
            # two reads above would look foreign once.
            time.sleep(0.05)
            ours = socket_inodes([proc.pid])
            taken = [p for p in port_list if listen_inodes(p) - ours]
            if taken:
                return False, f"another process listens on port(s) {', '.join(map(str, taken))}"
        missing = [p for p, ino in listening.items() if not ino]
        if not missing:
            return True, ""
        if time.monotonic() > end:
            return False, (f"{proc.name} does not listen on port(s) {', '.join(map(str, missing))} "
                           f"after {timeout:.0f} s: {proc.tail(5).strip()[-600:]}")
        time.sleep(0.05)


def start_proc(proc, name, argv, cpus, logfile):
    """Start a new Proc, or restart `proc` (the same object) with `argv`."""
    if proc is None:
        return Proc(name, argv, cpus, logfile)
    proc.stop()
    proc.start(argv)
    return proc


def start_on_free_ports(name, n, argv_for, logfile, cpus=None, proc=None, first=None):
    """Start `argv_for(ports)` (a program that cannot report the port it bound, so
    it gets ports picked just before: free_ports) and wait until it alone listens
    on all `n` of them; if it does not (it could not bind, or shares a port with
    another process), stop it and try again on new ports, PORT_TRIES times.
    `first`: ports to try first (a restart keeps its ports if it can).
    -> (proc, ports)."""
    cpus = LOAD_CPUS if cpus is None else cpus
    why = ""
    for attempt in range(PORT_TRIES):
        pp = list(first) if first and attempt == 0 else free_ports(n)
        proc = start_proc(proc, name, argv_for(pp), cpus, logfile)
        ok, why = wait_listening(proc, pp)
        if ok:
            return proc, pp
        proc.stop()
        log(f"{name} on port(s) {', '.join(map(str, pp))}: {why}; "
            + ("trying new ports" if attempt + 1 < PORT_TRIES else "giving up"))
    raise SystemExit(f"{name} did not start on free ports in {PORT_TRIES} tries: {why}")


def read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def start_reporting(proc, name, argv, cpus, logfile, parse, timeout=10.0):
    """Start a program that listens on port 0 (the kernel picks a free port) and
    says where in its log; `parse(new log text)` -> {name: port} or [ports] once
    all are there, else None. Then checks that it listens there alone.
    -> (proc, what parse gave, or None on failure, why)."""
    offset = os.path.getsize(logfile) if os.path.exists(logfile) else 0
    proc = start_proc(proc, name, argv, cpus, logfile)
    end = time.monotonic() + timeout
    while True:
        found = parse(read_from(logfile, offset))
        if found is not None:
            break
        if not proc.alive():
            return proc, None, f"{name} exited (code {proc.p.returncode}): {proc.tail(5).strip()[-600:]}"
        if time.monotonic() > end:
            return proc, None, f"{name} did not report its ports within {timeout:.0f} s: {proc.tail(5).strip()[-600:]}"
        time.sleep(0.05)
    pp = list(found.values()) if isinstance(found, dict) else list(found)
    PORTS_HANDED.update(pp)
    ok, why = wait_listening(proc, pp)
    return proc, (found if ok else None), why


def ready_parser(n):
    """Parser for `READY ADDR [ADDR ...]` (tcpload serve, backend.py): n ports."""
    def parse(text):
        m = re.search(r"^READY (.*)\n", text, re.M)
        if not m:
            return None
        pp = [int(a.rsplit(":", 1)[1]) for a in m.group(1).split()]
        return pp if len(pp) == n else None
    return parse


def spliced_parser(names):
    """Parser for spliced's start-up log: `listening listener=NAME addr=A:P` per
    listener and `admin listening addr=A:P` -> {name: port, ..., "admin": port}."""
    def parse(text):
        got = {m.group(1): int(m.group(2))
               for m in re.finditer(r" listening listener=(\S+) addr=\S*:(\d+)\n", text)}
        m = re.search(r" admin listening addr=\S*:(\d+)\n", text)
        if m:
            got["admin"] = int(m.group(1))
        return got if all(k in got for k in names) else None
    return parse
