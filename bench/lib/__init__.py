"""bench.py's modules, bottom to top; a module imports only modules above it in
this list (bench.py, the entry point, imports any):

    knobs      the environment variables, target and test names, fixed facts
    measure    /proc readings (CPU, memory, listen sockets) and probes through a port
    procs      the processes the run starts, cleanup at exit, sysctls, installed programs
    ports      starting a program on ports from the kernel, alone on each
    backends   the HTTP, echo and iperf3 backends every target forwards to
    targets    the balancers: their configs, start/restart, end-to-end checks
    httpstests the HTTP-mode tests (https-*): h2load, wrk, s_time commands and figures, https-idle
    loadtests  the timed tests (ka close big ip1 ip4 tcprate echo): commands, figures
    holdtests  the held-connection tests (idle, maxconn)
    rounds     rounds: target order, quiet-machine waits, retries, results.jsonl
    report     results.md and the figure definitions (plot.py reads them too)
    meta       what summary.json records about the machine and the programs
    publish    charts, --report, --publish and --publish-https

Why a package: bench.py grew to 2,500 lines in one file; each module here is one
concept of the method in bench/README.md, so a change to, say, how foreign load is
handled touches rounds.py only. Run-time state (the ports the kernel gave, the
frozen tcpload, whether the run pins) is owned by one module each and read as
`module.NAME`, never imported by name (the copy would keep the value from import).
"""
