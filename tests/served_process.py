"""The HTTP service in its own process, as ``fashion-search serve`` runs it (connection deadlines and
ceiling included), over an index built with the pixel embedder; write key ``s3cret``.

``python tests/served_process.py INDEX PORT SETTINGS_JSON`` serves; :func:`served_process` starts
that on a free loopback port and stops it afterwards. :func:`cli_served` serves an index as users
do, with ``fashion-search serve`` and the index's own model.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx


def _wait_until_served(url: str, child: subprocess.Popen, timeout: float) -> None:
    """Until ``url`` answers /health; a child that ended, or ``timeout`` s, is an error with its stderr."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {child.stderr.read()[-2000:]}")
            time.sleep(0.1)


@contextmanager
def served_process(index: Path, **settings: float) -> Iterator[str]:
    """Serve ``index`` in a child process with ``settings`` (``server_config``'s keywords); yield
    its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, str(index), str(port), json.dumps(settings)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_served(url, child, 60)
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still waiting for a connection to finish: no need
            child.kill()
            child.wait(timeout=10)


@contextmanager
def cli_served(index: str | Path, timeout: float = 180) -> Iterator[str]:
    """``fashion-search serve`` on ``index`` in its own process, on a free loopback port; yield its
    base URL, stop it afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "fashion_search.cli", "serve", "--index", str(index), "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_served(url, server, timeout)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def main(index: str, port: str, settings: str) -> None:
    import uvicorn

    from fashion_search.search.serving.connections import server_config
    from fashion_search.search.engine import SearchEngine
    from fashion_search.search.serving.server import create_app
    from fashion_search.search.index.store import open_index
    from test_search_engine import pixel_embedder
    from test_server import SETTINGS

    engine = SearchEngine(open_index(Path(index), SETTINGS), SETTINGS, pixel_embedder())
    app = create_app(engine, api_key="s3cret")
    uvicorn.Server(server_config(app, "127.0.0.1", int(port), **json.loads(settings))).run()


if __name__ == "__main__":
    main(*sys.argv[1:])
