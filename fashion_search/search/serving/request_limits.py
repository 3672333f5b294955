"""What the service checks before it reads a request's body: that the headers it acts on come
once, the write key, the declared size; then the body is read within a size cap and a time limit.

A pure ASGI middleware, so an unauthenticated or oversized upload is refused without being
read or spooled to disk, a lying ``Content-Length`` is answered at once, and a client that
sends its body too slowly is cut off. Only the body that passed reaches the application.
A request naming its key (or its body's type) twice is refused whatever the values: which of
two would count is a guess a proxy in front may make differently. (h11 refuses two different
``Content-Length`` values itself, and two ``Host`` or ``Transfer-Encoding`` headers.)
"""
from __future__ import annotations

import asyncio
import json
from typing import Callable

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
ONCE_ONLY = {b"x-api-key": "X-API-Key", b"content-type": "Content-Type"}  # headers a request may send once
Refusal = tuple[int, str]


async def _reply(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """Refuse a request before its body is read when ``refuse(method, path, headers)`` says so or
    its declared length exceeds ``max_body``; read the body within ``max_body`` bytes and
    ``read_timeout_s`` seconds."""

    def __init__(self, app, max_body: int, refuse: Callable[[str, str, dict[bytes, bytes]], Refusal | None],
                 read_timeout_s: float = 30.0) -> None:
        self.app, self.max_body, self.refuse, self.read_timeout_s = app, max_body, refuse, read_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        names = [name.lower() for name, _ in scope["headers"]]
        repeated = [shown for name, shown in ONCE_ONLY.items() if names.count(name) > 1]
        if repeated:
            return await _reply(send, 400, f"the request carries the {repeated[0]} header more than once; "
                                           "send it once")
        if scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        headers = {name.lower(): value for name, value in scope["headers"]}
        refusal = self.refuse(scope["method"], scope["path"], headers)
        if refusal:
            return await _reply(send, *refusal)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _reply(send, 413, f"request body larger than {self.max_body:,} bytes")
        body = await self._read_body(receive, send)
        if body is None:
            return
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, receive, send) -> bytes | None:
        """The whole body, or None after answering 413 / 408 (or when the client left)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        body = bytearray()
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                await _reply(send, 408, f"request body not received within {self.read_timeout_s:g} s")
                return None
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _reply(send, 413, f"request body larger than {self.max_body:,} bytes")
                return None
            if not message.get("more_body"):
                return bytes(body)
