"""How the server treats connections: each has a deadline whatever state it is in, and over a
ceiling the connection that has gone longest without progress makes room.

uvicorn's HTTP protocol keeps a connection as long as its client sends a byte now and then, and
keeps one whose request body never ends for good, so a few hundred slow sockets would fill any
ceiling. Here, by the state of the connection (h11's):

* waiting for a request's headers (just opened, or idle after a response): the headers must be
  complete within :data:`HEADER_TIMEOUT_S` of the wait's start; a silent idle connection is closed
  after :data:`KEEP_ALIVE_S`;
* receiving a request's body: the body must keep up with :data:`MIN_BODY_RATE` bytes a second from
  the end of the headers, and is cut off once :data:`BODY_STALL_S` behind that pace (the whole
  body's time is bounded again by :mod:`.request_limits`);
* answered while its body is unfinished (a body the application never read): closed once the
  response is out;
* being answered: a response its client stops reading for :data:`SEND_STALL_S` is abandoned;
* closed after its response, whose last bytes the client does not take: dropped after
  :data:`SEND_STALL_S` too.

Over :data:`MAX_CONNECTIONS` open ones, the connection stalled longest (waiting for headers,
behind its body's pace, or not reading its response) is dropped; one being answered, or receiving
its body at pace, never is: when every connection is, the new one is dropped.
"""
from __future__ import annotations

import asyncio

import h11
import uvicorn
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # as uvicorn imports it
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5.0
BODY_STALL_S = 10.0
MIN_BODY_RATE = 1024  # bytes a second
SEND_STALL_S = 30.0
MAX_CONNECTIONS = 500


class BodyCountingConnection(h11.Connection):
    """h11's connection, counting the bytes of the current request's body as they are parsed."""

    body_bytes = 0

    def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:  # type: ignore[override]
        event = super().next_event()
        if isinstance(event, h11.Request):
            self.body_bytes = 0
        elif isinstance(event, h11.Data):
            self.body_bytes += len(event.data)
        return event


class ProgressDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline in every state and a connection ceiling."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_stall_s = BODY_STALL_S
    min_body_rate = MIN_BODY_RATE
    send_stall_s = SEND_STALL_S
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conn = BodyCountingConnection(h11.SERVER, self.config.h11_max_incomplete_event_size
                                           or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.deadline: asyncio.TimerHandle | None = None
        self.wait_started = self.body_started = self.loop.time()
        self.write_paused_at: float | None = None
        self.closing_at: float | None = None
        self.dropped = False
        super().connection_made(transport)
        if sum(not getattr(c, "dropped", False) for c in self.connections) > self.max_connections \
                and not self._make_room():
            self._drop()  # every connection is being answered: no room, and no answer
            return
        self._rearm()

    def stalled_since(self) -> float | None:
        """Since when this connection has made no progress; None while it is being answered or
        receives its body at pace."""
        if self.transport.is_closing():  # closed by uvicorn, its last bytes not yet taken
            return self.closing_at if self.closing_at is not None else self.loop.time()
        if self.conn.their_state is h11.IDLE:
            return self.wait_started
        if self.conn.their_state is h11.SEND_BODY:
            paid_until = self.body_started + self.conn.body_bytes / self.min_body_rate
            return paid_until if paid_until < self.loop.time() else None
        return self.write_paused_at

    def _make_room(self) -> bool:
        """Drop the open connection stalled longest; False if none is stalled."""
        stalled = [(since, c) for c in self.connections if c is not self and isinstance(c, ProgressDeadlineProtocol)
                   and not c.dropped and (since := c.stalled_since()) is not None]
        if not stalled:
            return False
        min(stalled, key=lambda pair: pair[0])[1]._drop()
        return True

    def _rearm(self) -> None:
        """Set the deadline of the state the connection is in now (none while it is answered)."""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.dropped:
            return
        if self.transport.is_closing():
            self.closing_at = self.loop.time() if self.closing_at is None else self.closing_at
            due = self.closing_at + self.send_stall_s
        elif self.conn.their_state is h11.IDLE:
            due = self.wait_started + self.header_timeout_s
        elif self.conn.their_state is h11.SEND_BODY:
            due = self.body_started + self.conn.body_bytes / self.min_body_rate + self.body_stall_s
        elif self.write_paused_at is not None:
            due = self.write_paused_at + self.send_stall_s
        else:
            return
        self.deadline = self.loop.call_at(due, self._drop)

    def _drop(self) -> None:
        """Abort the connection: not close, as a response nobody reads would never flush."""
        self.deadline, self.dropped = None, True
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._rearm()

    def handle_events(self) -> None:
        before = self.conn.their_state
        super().handle_events()
        if before is h11.IDLE and self.conn.their_state is not h11.IDLE:  # the headers are in
            self.body_started = self.loop.time()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()  # answered, and the rest of the body is of no use
        elif self.conn.their_state is h11.IDLE:
            self.wait_started = self.loop.time()
        self._rearm()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused_at = self.loop.time()
        self._rearm()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused_at = None
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)


def server_config(app, host: str, port: int, header_timeout_s: float = HEADER_TIMEOUT_S,
                  max_connections: int = MAX_CONNECTIONS, body_stall_s: float = BODY_STALL_S,
                  send_stall_s: float = SEND_STALL_S, keep_alive_s: float = KEEP_ALIVE_S,
                  log_level: str = "warning") -> uvicorn.Config:
    """uvicorn's configuration for ``app`` with these deadlines and connection ceiling."""
    protocol = type("ProgressDeadlines", (ProgressDeadlineProtocol,),
                    {"header_timeout_s": header_timeout_s, "max_connections": max_connections,
                     "body_stall_s": body_stall_s, "send_stall_s": send_stall_s})
    return uvicorn.Config(app, host=host, port=port, http=protocol, log_level=log_level,
                          timeout_keep_alive=keep_alive_s)

