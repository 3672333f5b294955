"""Slow clients against the service: thousands of connections that send their headers a byte at
a time, and whether the server keeps them open and still answers.

    python benchmarks/slow_clients.py [--clients 3000] [--seconds 30]

Starts ``fashion-search serve`` over a small index (40 dev photos, random weights), opens
``--clients`` connections that each send one byte of a request's headers every 2 s, and every
2 s reads how many sockets the server holds (``/proc/<pid>/fd``) and times a ``GET /health``
from a well-behaved client. Writes ``benchmarks/results/slow_clients.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cli_startup import DEFAULT_PHOTOS, ROOT, serving, small_index
from fashion_search.io import write_results

HEADERS = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000


def server_sockets(pid: int) -> int:
    """Sockets the process holds open."""
    folder = Path(f"/proc/{pid}/fd")
    count = 0
    for entry in folder.iterdir():
        try:
            count += os.readlink(entry).startswith("socket:")
        except OSError:
            pass
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "slow_clients")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients + 256)), hard))
    samples = []
    with tempfile.TemporaryDirectory() as work:
        index = small_index(args.photos, Path(work))
        with serving(index) as (server, url):
            port = int(url.rsplit(":", 1)[1])
            clients: list[socket.socket] = []
            for _ in range(args.clients):
                try:
                    clients.append(socket.create_connection(("127.0.0.1", port), timeout=1))
                except OSError:
                    break
            started, sent = time.monotonic(), 0
            while time.monotonic() - started < args.seconds:
                alive = []
                for sock in clients:
                    try:
                        sock.sendall(HEADERS[sent:sent + 1])
                        alive.append(sock)
                    except OSError:
                        sock.close()
                clients, sent = alive, sent + 1
                asked = time.perf_counter()
                try:
                    status = httpx.get(f"{url}/health", timeout=10).status_code
                except httpx.TransportError:
                    status = 0
                samples.append({"t_s": round(time.monotonic() - started, 1), "server_sockets": server_sockets(server.pid),
                                "clients_still_sending": len(clients), "health_status": status,
                                "health_ms": round((time.perf_counter() - asked) * 1e3, 1)})
                time.sleep(2.0)
            for sock in clients:
                sock.close()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    table = [f"| {s['t_s']} | {s['server_sockets']:,} | {s['clients_still_sending']:,} | {s['health_status']} | "
             f"{s['health_ms']} |" for s in samples]
    markdown = "\n".join(["# Slow clients against the service", "",
                          f"{machine}; one `fashion-search serve` process, default limits; {args.clients:,} "
                          "connections opened at once, each sending one header byte every 2 s.", "",
                          "| seconds | sockets the server holds | connections the clients still write to | "
                          "GET /health | its time (ms) |", "|---|---|---|---|---|", *table, ""])
    write_results(args.out, {"machine": machine, "clients": args.clients, "samples": samples}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
