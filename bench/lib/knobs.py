"""The run's knobs: every environment variable bench.py reads (bench/README.md,
"Knobs"), the names of the targets and tests, and the fixed facts of the setup
(loopback address, file sizes).

Why a module of its own: every other module needs some of these, and they must
be read once, at import, in one place, so that the whole run (and plot.py, which
imports the figure definitions) sees the same values. It holds only values that
do not change once the run has started: what the run finds out as it goes (ports,
frozen binaries, whether it pins) lives in the module that owns it (backends,
targets, procs). It must never start a process or touch the machine.
"""

import datetime
import os
import sys
import time

# bench/ (this file is bench/lib/knobs.py) and the repository root.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HERE)


def env(name, default):
    v = os.environ.get(name, "")
    return v if v != "" else default


def words(text):
    return text.replace(",", " ").split()


# ---------------------------------------------------------------- environment (see README, "Knobs")

SMOKE = env("SMOKE", "0") == "1"
REPS = int(env("REPS", "1" if SMOKE else "3"))
DUR = int(env("DUR", "2" if SMOKE else "5"))
BASE_TARGETS = ["direct", "haproxy", "haproxy-splice", "nginx", "spliced", "spliced-epoll"]
# Two threads/workers on LB_CPUS2: opt-in (TARGETS=... or SCALE=1).
SCALE_TARGETS = ["haproxy-t2-splice", "nginx-w2", "spliced-w2"]
# A second spliced build (SPLICED_BIN_B, or SPLICED_REF_B built by run.sh) with the same
# config as `spliced`: opt-in, added when either is set (A/B runs of two builds).
AB_TARGETS = ["spliced-b"]
ALL_TARGETS = BASE_TARGETS + SCALE_TARGETS + AB_TARGETS
DEFAULT_TESTS = ["ka", "close", "big", "ip1", "ip4", "tcprate", "echo", "idle"]
# HTTP mode (TLS termination, an extra https frontend on haproxy, nginx and spliced):
# opt-in, TESTS=https names them all (README, "HTTP mode").
HTTPS_TESTS = ["https-h2", "https-h1", "https-h2-rate", "https-h1-rate", "https-new", "https-resume",
               "https-close", "https-idle"]
ALL_TESTS = DEFAULT_TESTS + HTTPS_TESTS + ["maxconn"]  # maxconn: opt-in, spliced only
# SMOKE also checks spliced's HTTP mode for a few seconds (h1 keep-alive over TLS with
# h2load, skipped without it; a new connection per request with wrk).
SMOKE_TESTS = ["ka", "close", "big", "ip1", "ip4", "tcprate", "echo", "https-h1", "https-close"]
WRK_TESTS = ("ka", "close", "big")
IPERF_TESTS = ("ip1", "ip4")
TCP_TESTS = ("tcprate", "echo")
# per_cpu = operations per CPU-second
RATE_TESTS = ("ka", "close", "tcprate", "echo", "https-h2", "https-h1", "https-h2-rate", "https-h1-rate",
              "https-new", "https-resume", "https-close")
SCALE = env("SCALE", "0") == "1"
TARGETS = words(env("TARGETS", "spliced" if SMOKE else " ".join(BASE_TARGETS)))
if SCALE:
    TARGETS += [t for t in SCALE_TARGETS if t not in TARGETS]
SPLICED_BIN_B = env("SPLICED_BIN_B", "")
SPLICED_REF_B = env("SPLICED_REF_B", "")
if (SPLICED_BIN_B or SPLICED_REF_B) and "spliced-b" not in TARGETS:
    # Right after `spliced`, so that the two builds run back to back in each round.
    at = TARGETS.index("spliced") + 1 if "spliced" in TARGETS else len(TARGETS)
    TARGETS.insert(at, "spliced-b")
TESTS = words(env("TESTS", " ".join(SMOKE_TESTS if SMOKE else DEFAULT_TESTS)))
if "https" in TESTS:  # the alias for every HTTP-mode test
    at = TESTS.index("https")
    TESTS[at:at + 1] = [t for t in HTTPS_TESTS if t not in TESTS]
# The targets that have an https frontend; the HTTPS tests skip the others.
HTTPS_TARGETS = ("haproxy", "nginx", "spliced", "spliced-b")
if "TARGETS" not in os.environ and not SMOKE and TESTS and all(t in HTTPS_TESTS for t in TESTS):
    TARGETS = [t for t in TARGETS if t in HTTPS_TARGETS]
LB_CPUS = env("LB_CPUS", "0")  # the balancer under test (1 thread/worker)
LB_CPUS2 = env("LB_CPUS2", "0-1")  # the 2-thread/worker variants
LOAD_CPUS = env("LOAD_CPUS", "1")  # backends, load generators, this script
QUIET_LIMIT = float(env("QUIET_LIMIT", "0.3"))  # cores of foreign load tolerated
QUIET_WAIT = float(env("QUIET_WAIT", "0" if SMOKE else "60"))  # s to wait for quiet per test
QUIET_BUDGET = float(env("QUIET_BUDGET", "1200"))  # s of waiting for quiet in the whole run
RETRIES = int(env("RETRIES", "0" if SMOKE else "2"))  # repeats of a contaminated test
GAP = float(env("GAP", "0.5"))  # pause between tests (s)
SYSCTL = env("SYSCTL", "1") == "1"
CHARTS = env("CHARTS", "0" if SMOKE else "1") == "1"
STAMP = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
OUT = os.path.abspath(env("OUT", os.path.join(HERE, "out", STAMP)))
SPLICED_BIN = env("SPLICED_BIN", os.path.join(ROOT, "target", "release", "spliced"))
TCPLOAD_BIN = env("TCPLOAD", os.path.join(HERE, "tcpload", "target", "release", "tcpload"))
# tcpload: client source addresses (one ephemeral port range each), concurrency.
SOURCES = env("SOURCES", "127.0.0.2-127.0.0.250")
RATE_CONC = int(env("RATE_CONC", "64"))  # tcprate: connections in flight
RATE_PAYLOAD = int(env("RATE_PAYLOAD", "16"))  # tcprate: bytes echoed per connection
ECHO_CONNS = int(env("ECHO_CONNS", "64"))  # echo: persistent connections
ECHO_SIZE = int(env("ECHO_SIZE", "64"))  # echo: bytes per round trip
IDLE_CONNS = int(env("IDLE_CONNS", "9000"))  # idle: connections held through each balancer
IDLE_PING = int(env("IDLE_PING", "1"))  # idle: bytes echoed on each held connection
MAXCONN_N = int(env("MAXCONN_N", "100000"))  # maxconn: connections to try through spliced
HOLD_MAX = int(env("HOLD_MAX", "19000"))  # connections per `tcpload hold` (fd limit 20000)
SERVE_MAX = int(env("SERVE_MAX", "15000"))  # maxconn: connections per `tcpload serve`
HOLD_TIMEOUT = float(env("HOLD_TIMEOUT", "120"))  # s for one hold process to report ready
# maxconn: connections per hold process (small, so the one that meets the limit ends
# soon: its surplus connections sit unaccepted until MAXCONN_TIMEOUT), per-connection
# timeout (connect + ping), connections being set up at once per process.
MAXCONN_CHUNK = int(env("MAXCONN_CHUNK", "5000"))
MAXCONN_TIMEOUT = float(env("MAXCONN_TIMEOUT", "3"))
MAXCONN_IN_FLIGHT = int(env("MAXCONN_IN_FLIGHT", "1024"))
# HTTP mode (see README, "HTTP mode"): h2load clients / streams per h2 client, the
# fixed offered rate (req/s in total) of the -rate tests, parallel `openssl s_time`
# processes in https-new (-new) and https-resume (-reuse), wrk connections in
# https-close, idle TLS connections.
HTTPS_CONNS = int(env("HTTPS_CONNS", "16"))
HTTPS_STREAMS = int(env("HTTPS_STREAMS", "10"))
HTTPS_RATE = int(env("HTTPS_RATE", "8000"))
HTTPS_STIME_CONC = int(env("HTTPS_STIME_CONC", "8"))
HTTPS_CLOSE_CONNS = int(env("HTTPS_CLOSE_CONNS", "16"))
HTTPS_IDLE_CONNS = int(env("HTTPS_IDLE_CONNS", "2000"))

# ---------------------------------------------------------------- fixed

HZ = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
SMALL_BODY = b"Hello, world\n"  # 13 bytes
BIG_SIZE = 1 << 20


TEST_LABEL = {
    "ka": "keep-alive 13 B (wrk -c64)",
    "close": "Connection: close (wrk -c64)",
    "big": "1 MiB GET (wrk -c8)",
    "ip1": "iperf3 -P1",
    "ip4": "iperf3 -P4",
    "tcprate": f"TCP connect + {RATE_PAYLOAD} B echo + close (tcpload rate, {RATE_CONC} in flight)",
    "echo": f"{ECHO_SIZE} B ping-pong on {ECHO_CONNS} connections (tcpload echo)",
    "idle": f"{IDLE_CONNS} idle connections held (tcpload hold)",
    "maxconn": f"up to {MAXCONN_N} connections held through one spliced",
    "https-h2": f"HTTPS h2 keep-alive, saturation (h2load -c{HTTPS_CONNS} -m{HTTPS_STREAMS})",
    "https-h1": f"HTTPS h1 keep-alive, saturation (h2load --h1 -c{HTTPS_CONNS})",
    "https-h2-rate": f"HTTPS h2 at {HTTPS_RATE} req/s offered (h2load -c{HTTPS_CONNS} -m{HTTPS_STREAMS} --rps)",
    "https-h1-rate": f"HTTPS h1 at {HTTPS_RATE} req/s offered (h2load --h1 -c{HTTPS_CONNS} --rps)",
    "https-new": f"new TLS connection per request, full handshake ({HTTPS_STIME_CONC} × openssl s_time -new)",
    "https-resume": f"new TLS connection per request, resumed ({HTTPS_STIME_CONC} × openssl s_time -reuse)",
    "https-close": f"new TLS connection per request, as wrk does it (resumes) (wrk -c{HTTPS_CLOSE_CONNS} Connection: close)",
    "https-idle": f"{HTTPS_IDLE_CONNS} idle TLS connections after one h1 request each (bench/tlshold.py)",
}


# The load tests with CPU accounting and a foreign-load figure (idle and maxconn
# measure memory and capacity).
CPU_TESTS = [t for t in ALL_TESTS if t not in ("idle", "maxconn", "https-idle")]
H2LOAD_TESTS = ("https-h2", "https-h1", "https-h2-rate", "https-h1-rate")


def log(msg):
    """One stderr line, the format every module logs in (here: every module imports this one)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
