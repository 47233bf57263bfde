"""The backends every target forwards to, on the load CPUs: an HTTP server (nginx,
or bench/backend.py without nginx), an echo server (`tcpload serve`) and an
iperf3 server, each on ports from the kernel.

Why a module of its own: the backends are started once per run and shared by all
targets, and their ports are what the balancer configs (targets) point at, so
they are the run-time state this module owns. The ports are assigned here (and by
targets.restart_iperf) and read as `backends.IPERF_PORT` etc., never imported by
name: a name imported before start_backends ran would keep the old value.
"""

import os
import sys

from lib import procs
from lib.knobs import HERE, HOST, LOAD_CPUS, log
from lib.ports import free_ports, ready_parser, start_on_free_ports, start_reporting
from lib.procs import have, have_tcpload, write

BACKEND_PORTS = []  # nginx or backend.py (HTTP): 3 ports, set by start_backends
ECHO_PORTS = []  # tcpload serve (echo): 3 ports
IPERF_PORT = None  # iperf3 -s


def nginx_common(run, name, workers=1):
    """The head of an nginx config (the HTTP backend's and the stream targets') and its temp dir."""
    tmp = os.path.join(run, f"{name}-tmp")
    os.makedirs(tmp, exist_ok=True)
    return (
        f"daemon off;\nmaster_process on;\nworker_processes {workers};\nworker_rlimit_nofile 20000;\n"
        f"pid {run}/{name}.pid;\nerror_log {run}/{name}.err warn;\n",
        tmp,
    )


def start_backends(run, www):
    """The backends, each on ports from the kernel (see lib/ports.py); sets
    BACKEND_PORTS, ECHO_PORTS and IPERF_PORT, which the balancer configs use."""
    global IPERF_PORT
    started = []
    if have("nginx"):
        head, tmp = nginx_common(run, "nginx-backend")

        def nginx_argv(pp):
            listens = "".join(f"        listen {HOST}:{p} backlog=65535;\n" for p in pp)
            conf = write(
                os.path.join(run, "nginx-backend.conf"),
                head
                + "events { worker_connections 19900; }\n"
                "http {\n"
                "    access_log off;\n    sendfile on;\n    tcp_nopush on;\n"
                "    keepalive_requests 1000000000;\n    keepalive_timeout 300s;\n"
                "    open_file_cache max=100 inactive=60s;\n"
                "    default_type application/octet-stream;\n"
                + "".join(
                    f"    {k}_temp_path {tmp}/{k};\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                )
                + "    server {\n"
                + listens
                + f"        root {www};\n"
                "    }\n}\n",
            )
            return ["nginx", "-p", run, "-e", f"{run}/nginx-backend.err", "-c", conf]

        proc, BACKEND_PORTS[:] = start_on_free_ports(
            "nginx-backend", 3, nginx_argv, os.path.join(run, "nginx-backend.log"))
        started.append(proc)
        kind_ = "nginx"
    else:
        log("nginx is not installed: using the slow Python backend (bench/backend.py)")
        proc, pp, why = start_reporting(
            None, "py-backend", [sys.executable, os.path.join(HERE, "backend.py"), www, "0", "0", "0"],
            LOAD_CPUS, os.path.join(run, "py-backend.log"), ready_parser(3))
        started.append(proc)
        if pp is None:
            raise SystemExit(f"backend.py did not come up: {why}")
        BACKEND_PORTS[:] = pp
        kind_ = "python"
    if have("iperf3"):
        proc, (IPERF_PORT,) = start_iperf_server(run)
        started.append(proc)
    else:
        # Nothing listens there (the bulk tests are skipped), but the balancers'
        # bulk pools need an address.
        (IPERF_PORT,) = free_ports(1)
    if have_tcpload():
        argv = [procs.TCPLOAD, "serve", "--listen", f"{HOST}:0", "--listen", f"{HOST}:0", "--listen", f"{HOST}:0"]
        proc, pp, why = start_reporting(None, "echo-backend", argv, LOAD_CPUS,
                                        os.path.join(run, "echo-backend.log"), ready_parser(3))
        started.append(proc)
        if pp is None:
            raise SystemExit(f"tcpload serve did not come up: {why}")
        ECHO_PORTS[:] = pp
    else:
        ECHO_PORTS[:] = free_ports(3)  # nothing listens there: the echo tests are skipped
    log(f"backends: http {' '.join(map(str, BACKEND_PORTS))}, echo {' '.join(map(str, ECHO_PORTS))}, "
        f"iperf3 {IPERF_PORT}" + ("" if have("iperf3") else " (not running)"))
    return started, kind_


def iperf_argv(pp):
    return ["iperf3", "-s", "-B", HOST, "-p", str(pp[0])]


def start_iperf_server(run, proc=None, first=None):
    """-> (proc, [port])."""
    return start_on_free_ports("iperf3-server", 1, iperf_argv, os.path.join(run, "iperf3-server.log"),
                               proc=proc, first=first)


def start_echo_server(run, name, nports, proc=None):
    """tcpload serve on `nports` ports from the kernel. -> (proc, [ports] or None, why)."""
    argv = [procs.TCPLOAD, "serve"]
    for _ in range(nports):
        argv += ["--listen", f"{HOST}:0"]
    return start_reporting(proc, name, argv, LOAD_CPUS, os.path.join(run, f"{name}.log"), ready_parser(nports))
