"""The socket ``fashion-search serve`` listens on, bound before the model loads, so a port in use
is said at once, in one line, and not by uvicorn after the "serving" line."""
from __future__ import annotations

import socket


class AddressInUseError(OSError):
    """The address to serve on is taken, or may not be used; the message says which and what to do."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds it), made before the model loads, so a
    port in use is said at once and in words."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise AddressInUseError(f"cannot serve on {host}: {err.strerror}") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as err:
        listener.close()
        raise AddressInUseError(f"cannot serve on {host}:{port}: {err.strerror.lower()}; choose another with "
                                "--port (and --host)") from None
    listener.set_inheritable(True)
    return listener
