"""How the server treats connections before a request reaches the application: a deadline for
each request's line and headers, and a ceiling on open connections.

uvicorn's HTTP protocol waits for headers as long as a client keeps sending a byte now and then,
so a few thousand slow clients would hold a few thousand sockets (and file descriptors) for good.
Here a connection must deliver each request's headers within :data:`HEADER_TIMEOUT_S` of its
first byte (or of opening). Over :data:`MAX_CONNECTIONS` open ones, the connection that has
waited longest for its headers is closed to make room (a slow client's, not a well-behaved one
that is being answered); when every connection is busy with a request, the new one is closed.
The body's own pace is bounded later, by :mod:`.request_limits`.
"""
from __future__ import annotations

import asyncio

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 500


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and a connection ceiling."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_deadline: asyncio.TimerHandle | None = None
        self.waiting_since: float | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            transport.abort()  # every connection is being answered: no room, and no answer
            return
        self._await_headers()

    def _make_room(self) -> bool:
        """Close the open connection that has waited longest for its headers; False if none waits."""
        waiting = [c for c in self.connections if c is not self and getattr(c, "waiting_since", None) is not None
                   and not c.transport.is_closing()]
        if not waiting:
            return False
        min(waiting, key=lambda c: c.waiting_since).transport.abort()
        return True

    def _await_headers(self) -> None:
        """Start the deadline for the headers of the request now due, unless it runs already."""
        if self.header_deadline is None:
            self.waiting_since = self.loop.time()
            self.header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self.header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._await_headers()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.header_deadline is not None:
            self.header_deadline.cancel()  # the headers are in
            self.header_deadline, self.waiting_since = None, None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        super().connection_lost(exc)


def server_config(app, host: str, port: int, header_timeout_s: float = HEADER_TIMEOUT_S,
                  max_connections: int = MAX_CONNECTIONS, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn's configuration for ``app`` with the header deadline and connection ceiling."""
    protocol = type("HeaderDeadline", (HeaderDeadlineProtocol,),
                    {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
    return uvicorn.Config(app, host=host, port=port, http=protocol, log_level=log_level)
