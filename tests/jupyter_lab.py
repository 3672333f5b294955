"""A JupyterLab server started headless on loopback, and a notebook executed through one of its
kernels over the server's own websocket: what a person's browser does, without the browser."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx


class LabServer:
    """``jupyter lab`` from this interpreter's environment, serving ``root``."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI's containers run as root
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"token {self.token}"}, timeout=30)

    def post(self, path: str, body: dict) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"token {self.token}"}, timeout=60)

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.process.stdout.read()[-2000:]}")
            try:
                if self.get("/api/status").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError("jupyter lab did not answer")

    def stop(self) -> str:
        self.process.terminate()
        try:
            return self.process.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[0]


async def _execute(url: str, token: str, kernel_id: str, sources: list[str], timeout_s: float) -> list[list[dict]]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws_url = url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
    connection = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    session = uuid.uuid4().hex
    all_outputs = []
    for source in sources:
        msg_id = uuid.uuid4().hex
        connection.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "test",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": source, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        outputs, status, idle = [], None, False
        while status is None or not idle:  # the reply (shell) and the last output (iopub) come in either order
            raw = await asyncio.wait_for(connection.read_message(), timeout_s)
            if raw is None:
                raise RuntimeError("the kernel's websocket closed")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"type": kind, **message["content"]})
            elif kind == "execute_reply":
                status = message["content"]["status"]
            elif kind == "status" and message["content"].get("execution_state") == "idle":
                idle = True
        all_outputs.append(outputs)
        if status != "ok":
            break
    connection.close()
    return all_outputs


def run_notebook(server: LabServer, kernel_name: str, notebook: Path, parameters: dict,
                 timeout_s: float = 300, then: tuple[str, ...] = ()) -> list[list[dict]]:
    """Start ``kernel_name`` in the server, run the notebook's code cells with ``parameters``
    set after its parameters cell, then the cells of ``then`` (what a person types next); return
    each cell's outputs (stops at the first error)."""
    kernel = server.post("/api/kernels", {"name": kernel_name}).json()
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    sources = []
    for cell in cells:
        sources.append("".join(cell["source"]))
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            sources.append("\n".join(f"{key} = {value!r}" for key, value in parameters.items()))
    sources.extend(then)
    try:
        return asyncio.run(_execute(server.url, server.token, kernel["id"], sources, timeout_s))
    finally:
        httpx.delete(f"{server.url}/api/kernels/{kernel['id']}", headers={"Authorization": f"token {server.token}"})
