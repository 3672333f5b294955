"""Connections that do not progress, against the server in its own process: every connection has a
deadline whatever state it is in, a full ceiling makes room by closing the connection stalled
longest (never one being answered), and a request that names its key twice is refused."""
from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest

from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.search.engine import build_index
from served_process import served_process  # noqa: E402
from test_search_engine import pixel_embedder  # noqa: E402
from test_server import SETTINGS  # noqa: E402

CAP = 20
DEADLINE_S = 3.0
SLACK_S = 2.5  # a loaded two-core machine: how late a deadline may fire
GET_WITH_UNSENT_BODY = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
SLOW_POST = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
             b"Content-Length: 100000\r\n\r\n--b\r\n")


@pytest.fixture(scope="module")
def url(photo_folder, tmp_path_factory):
    """The service in its own process, with a ceiling of 20 connections and 3-second deadlines."""
    folder = tmp_path_factory.mktemp("deadlines") / "index"
    build_index(list_photo_folder(photo_folder), folder, SETTINGS, embedder=pixel_embedder())
    with served_process(folder, max_connections=CAP, header_timeout_s=DEADLINE_S, body_stall_s=DEADLINE_S,
                        send_stall_s=DEADLINE_S, keep_alive_s=1.0) as address:
        yield address


def connect(url: str, receive_buffer: int | None = None) -> socket.socket:
    address = urlparse(url)
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect((address.hostname, address.port))
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One response's head and its (Content-Length) body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += received(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += received(sock)
    return head


def received(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed by the server")
    return chunk


def bytes_until_closed(sock: socket.socket, wait_s: float) -> int | None:
    """The bytes read until the server closed the connection, or None if it is still open."""
    sock.settimeout(wait_s)
    count = 0
    try:
        while chunk := sock.recv(1 << 20):
            count += len(chunk)
        return count
    except (TimeoutError, socket.timeout):
        return None
    except ConnectionResetError:
        return count


def open_after_the_deadline(connections: dict, since: float) -> list:
    """The keys of the connections the server has not closed by the deadline (and some slack)
    after ``since``."""
    return [key for key, sock in connections.items()
            if bytes_until_closed(sock, max(since + DEADLINE_S + SLACK_S - time.monotonic(), 0.1)) is None]


class Trickle:
    """A byte every 0.2 s on each of some connections, until they close or the test ends."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets, self.stop = sockets, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            for sock in self.sockets:
                try:
                    sock.send(b"a")
                except OSError:
                    pass

    def __enter__(self) -> Trickle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def answered_get(url: str) -> socket.socket:
    """A connection whose GET declared a body it never sends, after its 200."""
    sock = connect(url)
    sock.sendall(GET_WITH_UNSENT_BODY)
    assert b" 200 " in read_response(sock).split(b"\r\n")[0]
    return sock


def test_every_connection_that_stops_progressing_is_closed_by_its_deadline(url):
    silent = connect(url)
    slow_headers = connect(url)
    slow_headers.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    keep_alive, next_slowly = connect(url), connect(url)
    for sock in (keep_alive, next_slowly):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(sock)
    unsent_body = answered_get(url)
    slow_body, stalled_body = connect(url), connect(url)
    slow_body.sendall(SLOW_POST)
    stalled_body.sendall(SLOW_POST)
    unread = connect(url, receive_buffer=4096)  # asks for 9 MB of responses and reads none of them
    unread.sendall(b"GET /docs-assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 6)
    started = time.monotonic()
    stalled = {"silent": silent, "headers a byte at a time": slow_headers, "idle keep-alive": keep_alive,
               "the next request's headers a byte at a time": next_slowly,
               "a body a byte at a time": slow_body, "a body that stopped": stalled_body,
               "a GET whose declared body never comes": unsent_body}
    with Trickle([slow_headers, next_slowly, unsent_body, slow_body]):
        still_open = open_after_the_deadline(stalled, started)
        assert not still_open, f"open after {DEADLINE_S + SLACK_S:g} s: {still_open}"
    time.sleep(max(started + DEADLINE_S + SLACK_S - time.monotonic(), 0))  # reading now would be progress
    sent = bytes_until_closed(unread, 5)
    unread.close()
    assert sent is not None and sent < 3 * 1_500_000, sent  # abandoned, not all six responses sent
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/health").status_code == 200


def test_a_ceiling_full_of_stalled_connections_still_answers_a_fresh_client(url, photo_folder):
    photo = (photo_folder / "images" / "100.jpg").read_bytes()
    upload = (b"--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + b"n" * 30_000 + b"\r\n--b\r\n"
              b"Content-Disposition: form-data; name=\"photo\"; filename=\"q.jpg\"\r\n\r\n" + photo + b"\r\n--b--\r\n")
    uploader = connect(url)  # a well-behaved upload in progress, 6 kB at a time: it must not be evicted
    uploader.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(upload))
    pieces = [upload[i:i + 6_000] for i in range(0, len(upload), 6_000)]
    uploader.sendall(pieces.pop(0))
    with httpx.Client(base_url=url, timeout=5) as first:   # its headers read before the others come, or it
        assert first.get("/health").status_code == 200     # would be the one waiting longest: a round trip
    time.sleep(0.1)                                         # of the server's loop after them sees to that
    slow_posts = []
    for _ in range(CAP):  # the whole ceiling: bodies at 5 bytes a second
        slow_posts.append(connect(url))
        slow_posts[-1].sendall(SLOW_POST)
    opened = time.monotonic()
    unsent_bodies = [answered_get(url) for _ in range(CAP // 2)]  # and GETs that never send their body
    stalled = slow_posts + unsent_bodies
    with Trickle(stalled):
        waits = []
        for piece in pieces:
            with httpx.Client(base_url=url, timeout=5) as fresh:  # a new connection each time
                asked = time.monotonic()
                assert fresh.get("/health").status_code == 200
                waits.append(time.monotonic() - asked)
            uploader.sendall(piece)
            time.sleep(0.1)
        assert b" 200 " in read_response(uploader).split(b"\r\n")[0]
        assert max(waits) < 1.0, waits
        still_open = open_after_the_deadline(dict(enumerate(stalled)), opened)
        assert not still_open, f"{len(still_open)} stalled connections open after {DEADLINE_S + SLACK_S:g} s"
    uploader.close()


def raw_status(url: str, head: bytes) -> tuple[int, bytes, float]:
    """Send a request's head (no body); return its status, its body and the seconds it took."""
    sock = connect(url)
    started = time.monotonic()
    sock.sendall(head + b"\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
        data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    sock.settimeout(1)
    try:
        while chunk := sock.recv(4096):
            rest += chunk
    except (TimeoutError, socket.timeout, ConnectionResetError):
        pass
    sock.close()
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2], time.monotonic() - started


@pytest.mark.parametrize("keys", [b"X-API-Key: wrong\r\nX-API-Key: s3cret", b"X-API-Key: s3cret\r\nx-api-key: wrong",
                                  b"X-API-Key: s3cret\r\nX-Api-Key: s3cret"],
                         ids=["bad-then-good", "good-then-bad", "good-twice"])
def test_a_request_that_names_its_key_twice_is_refused_before_its_body(url, keys):
    upload = b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    deleted, deleted_body, _ = raw_status(url, b"DELETE /items/101 HTTP/1.1\r\nHost: x\r\n" + keys)
    added, added_body, seconds = raw_status(url, upload + b"Content-Length: 5000000\r\n" + keys)
    read, _, _ = raw_status(url, b"GET /items/101 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + keys)
    assert (deleted, added, read) == (400, 400, 400) and seconds < 2
    assert b"X-API-Key header more than once" in deleted_body and b"X-API-Key header more than once" in added_body
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/items/101").status_code == 200  # nothing was deleted


def test_two_body_lengths_or_types_are_refused(url):
    upload = b"POST /items HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret\r\n"
    lengths, _, _ = raw_status(url, upload + b"Content-Type: multipart/form-data; boundary=b\r\n"
                                             b"Content-Length: 5\r\nContent-Length: 6")
    types, says, _ = raw_status(url, upload + b"Content-Length: 5000000\r\nContent-Type: multipart/form-data; "
                                            b"boundary=b\r\nContent-Type: multipart/form-data; boundary=c")
    assert (lengths, types) == (400, 400) and b"Content-Type header more than once" in says
