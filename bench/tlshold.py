#!/usr/bin/env python3
"""Hold idle TLS connections (bench.py's https-idle test; standard library only).

    tlshold.py HOST PORT CONNS [IN_FLIGHT]

Opens CONNS TLS 1.3 connections to HOST:PORT (ALPN http/1.1, no certificate
check, no session resumption: each one is a full handshake), IN_FLIGHT (64) being
set up at once; on each sends one `GET /small.txt` (keep-alive) and reads the
whole response, then leaves it idle. Prints one JSON line
`{"event": "ready", "held": N, "failed": N, "secs": S, "errors": [...]}` and holds
the connections until its stdin closes; then sends a second GET on a random
sample of 100 of them, and prints
`{"event": "done", "alive_checked": N, "alive_ok": N, "dropped": N}`
(dropped: connections the server had closed meanwhile) and exits.
"""

import asyncio
import json
import random
import ssl
import sys
import time

REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"


def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    # No client session cache: Python's ssl resumes only when given a session.
    return ctx


async def get(reader, writer):
    """One GET on an open connection; True when a 200 with its body came back."""
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")


async def main(host, port, n, in_flight):
    ctx = context()
    sem = asyncio.Semaphore(in_flight)
    conns, errors = [], []

    async def open_one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"), 10)
                if await asyncio.wait_for(get(r, w), 10):
                    conns.append((r, w))
                else:
                    errors.append("status not 200")
                    w.close()
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as e:
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(n)))
    print(json.dumps({"event": "ready", "held": len(conns), "failed": n - len(conns),
                      "secs": round(time.monotonic() - t0, 2), "errors": sorted(set(errors))[:5]}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until stdin closes
    dropped = sum(1 for r, _ in conns if r.at_eof())
    sample = random.sample(conns, min(100, len(conns)))
    ok = 0
    for r, w in sample:
        try:
            if await asyncio.wait_for(get(r, w), 5):
                ok += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
    print(json.dumps({"event": "done", "alive_checked": len(sample), "alive_ok": ok, "dropped": dropped}),
          flush=True)
    for _, w in conns:
        w.close()


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                     int(sys.argv[4]) if len(sys.argv) == 5 else 64))
