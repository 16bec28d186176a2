"""Bounds on slow and numerous clients, which uvicorn alone does not give: a request whose headers
and body are not all in within `request_timeout_s` is answered 408 and its connection closed, and a
request on a connection beyond `max_connections` open ones is answered 503.

uvicorn (0.55) times out only idle kept-alive connections: one that sends half a request is held for
ever. Its `limit_concurrency` answers 503 in plain text; this one answers in the API's JSON. So:
- the header phase, before any app runs, is bounded at the connection: a subclass of uvicorn's own
  HTTP protocol (the `http=` class uvicorn.Config takes) arms a timer when a connection opens and
  whenever a response ends, and closes the connection with a 408 when it fires;
- the body phase is bounded in ASGI: `DeadlineMiddleware` disarms that timer once the request's
  headers are in and gives the app a `receive` that raises `RequestTooSlow` at the same deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from mnist_lab.errors import ConfigError

log = logging.getLogger("mnist_lab.serve")
Peer = tuple[str, int]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class RequestTooSlow(Exception):
    """The request's body did not arrive within request_timeout_s (the app answers 408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(too_slow(seconds))


def too_slow(seconds: float) -> str:
    """The sentence of a 408."""
    return f"the request was not complete within request_timeout_s={seconds:g} s; send the whole request at once"


def check_limits(request_timeout_s: float, max_connections: int) -> None:
    """Refuse limits that would let no request through."""
    if not isinstance(request_timeout_s, (int, float)) or request_timeout_s <= 0:
        raise ConfigError(f"request_timeout_s must be a number of seconds > 0, got {request_timeout_s}; e.g. 10")
    if not isinstance(max_connections, int) or max_connections < 1:
        raise ConfigError(f"max_connections must be a whole number >= 1, got {max_connections}; e.g. 512")


def busy(limit: int) -> str:
    """The sentence of a 503."""
    return f"the server has its max_connections={limit} connections open; try again in a moment"


@dataclass
class Connection:
    """One open connection: its transport and the deadline of the request it is sending."""

    transport: asyncio.Transport
    deadline: float = 0.0
    timer: asyncio.TimerHandle | None = None


class Limits:
    """The open connections, each with the deadline of its current request."""

    def __init__(self, request_timeout_s: float, max_connections: int) -> None:
        self.seconds, self.max_connections = request_timeout_s, max_connections
        self.open: dict[Peer, Connection] = {}

    def opened(self, transport: asyncio.Transport) -> None:
        """A connection opened: its first request's headers and body are due within the time limit."""
        peer = peer_of(transport)
        if peer is not None:
            self.open[peer] = Connection(transport)
            self.arm(peer)

    def closed(self, transport: asyncio.Transport) -> None:
        """A connection closed, by either side."""
        peer = peer_of(transport)
        connection = self.open.pop(peer, None) if peer is not None else None
        if connection is not None and connection.timer is not None:
            connection.timer.cancel()

    def arm(self, peer: Peer) -> None:
        """Start the clock of the connection's next request."""
        connection = self.open.get(peer)
        if connection is None:
            return
        loop = asyncio.get_running_loop()
        connection.deadline = loop.time() + self.seconds
        if connection.timer is not None:
            connection.timer.cancel()
        connection.timer = loop.call_at(connection.deadline, self.expire, peer)

    def headers_in(self, peer: Peer | None) -> float | None:
        """The request's headers are in (the app runs now): its deadline, which the body must meet."""
        connection = self.open.get(peer) if peer is not None else None
        if connection is None:
            return None
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        return connection.deadline

    def expire(self, peer: Peer) -> None:
        """The headers did not come in time: answer 408 and close."""
        connection = self.open.get(peer)
        if connection is None or connection.transport.is_closing():
            return
        log.warning("closed the connection from %s:%d: %s", *peer, too_slow(self.seconds))
        connection.transport.write(raw_response(408, "Request Timeout", too_slow(self.seconds)))
        connection.transport.close()


def peer_of(transport: asyncio.BaseTransport) -> Peer | None:
    """The client's (host, port), as uvicorn puts it in the ASGI scope's `client`."""
    peer = transport.get_extra_info("peername")
    return (str(peer[0]), int(peer[1])) if isinstance(peer, (tuple, list)) and len(peer) >= 2 else None


def raw_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with the API's JSON error body, for a connection no app serves."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol (httptools where installed, else h11) that tells `limits` when
    each connection opens and closes."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class BoundedProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            limits.opened(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            limits.closed(self.transport)
            super().connection_lost(exc)

    return BoundedProtocol


ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class DeadlineMiddleware:
    """ASGI middleware: a request beyond max_connections gets 503; a body that is not in by its
    request's deadline makes `receive` raise RequestTooSlow; a finished response starts the clock
    of the connection's next request."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = (str(client[0]), int(client[1])) if client else None
        deadline = self.limits.headers_in(peer)
        if len(self.limits.open) > self.limits.max_connections:
            await refuse_busy(send, self.limits.max_connections)
            return
        body_in = deadline is None

        async def bounded_receive() -> Message:
            nonlocal body_in
            if body_in:
                return await receive()
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.0))
            except asyncio.TimeoutError:
                raise RequestTooSlow(self.limits.seconds) from None
            body_in = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and peer:
                self.limits.arm(peer)  # a kept-alive connection's next request is due in time too

        await self.app(scope, bounded_receive, watched_send)


async def refuse_busy(send: Callable[[Message], Awaitable[None]], limit: int) -> None:
    """Answer 503 in the API's JSON and close the connection."""
    log.warning("refused a request: 503 %s", busy(limit))
    body = json.dumps({"error": busy(limit)}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
