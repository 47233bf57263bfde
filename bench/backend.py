#!/usr/bin/env python3
"""Fallback HTTP backend for bench/bench.py when nginx is not installed (SMOKE=1 on
a machine without nginx). Serves /small.txt (13 bytes) and /1m.bin (1 MiB) on each
port given, HTTP/1.1 keep-alive unless the request says `Connection: close`.
It is much slower than nginx: good for a smoke test, not for figures.

Usage: backend.py ROOT_DIR PORT [PORT ...]   (binds 127.0.0.1 only)

A port of 0 lets the kernel pick a free one. Once every port listens it prints
`READY 127.0.0.1:PORT [127.0.0.1:PORT ...]` on stderr, with the real ports, in the
order given (the same line as `tcpload serve`).
"""
import asyncio
import os
import sys


def load_files(root):
    files = {}
    for name in ("small.txt", "1m.bin"):
        with open(os.path.join(root, name), "rb") as f:
            files["/" + name] = f.read()
    return files


async def serve(reader, writer, files):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            path = parts[1] if len(parts) > 1 else "/"
            close = any(
                l.lower().startswith("connection:") and "close" in l.lower()
                for l in lines[1:]
            )
            body = files.get(path)
            status = "200 OK" if body is not None else "404 Not Found"
            body = body if body is not None else b"not found\n"
            writer.write(
                (
                    f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                    f"Content-Type: application/octet-stream\r\n"
                    f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
                ).encode()
                + body
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    root = sys.argv[1]
    files = load_files(root)
    servers = []
    for port in sys.argv[2:]:
        servers.append(
            await asyncio.start_server(
                lambda r, w: serve(r, w, files), "127.0.0.1", int(port), backlog=4096
            )
        )
    bound = [s.sockets[0].getsockname() for s in servers]
    print("READY " + " ".join(f"{h}:{p}" for h, p, *_ in bound), file=sys.stderr, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
