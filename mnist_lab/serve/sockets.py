"""The server's listening socket, had before the model loads: a port in use answers at once."""

from __future__ import annotations

import socket

from mnist_lab.errors import UserError


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one clear error when it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as err:
        raise UserError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); stop what uses that port or "
            "choose another with port=<number> (port=0 picks a free one)"
        ) from err
    return sock


def page_url(sock: socket.socket) -> str:
    """The address to open in a browser."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # on this machine; others use its network address
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
