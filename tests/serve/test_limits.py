"""Slow and numerous clients, on real sockets on loopback: a request not complete within
request_timeout_s is answered 408 and closed; one beyond max_connections open gets 503."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from helpers import Server, one_error_line, run_cli, start_server, stop

TIMEOUT_S = 1.0
MAX_CONNECTIONS = 4
SLACK_S = 2.0  # what a loaded machine may add to the timer


@pytest.fixture(scope="module")
def server(cnn_run, tmp_path_factory) -> Iterator[Server]:
    """A real server with a one-second request deadline and room for four connections."""
    process = None
    try:
        process, running = start_server(
            cnn_run[0],
            tmp_path_factory.mktemp("limits"),
            f"request_timeout_s={TIMEOUT_S}",
            f"max_connections={MAX_CONNECTIONS}",
        )
        yield running
    finally:
        if process is not None:
            stop(process)


def connect(server: Server, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", urlsplit(server.url).port), timeout=10)
    sock.sendall(first)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a 10 s socket timeout bounds it)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


def status_and_error(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


KEPT_ALIVE = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
HALF_REQUESTS = {
    "nothing sent": b"",
    "half the headers": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty",
    "the headers, a tenth of the body": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    b"Content-Length: 1000\r\n\r\n" + b"\x89" * 100,
    "an answered request, then half the next": KEPT_ALIVE + b"GET /hea",
}


def test_a_request_not_complete_in_time_is_answered_408_and_closed(server):
    started = time.monotonic()
    socks = {case: connect(server, first) for case, first in HALF_REQUESTS.items()}
    for case, sock in socks.items():
        response = until_closed(sock)
        elapsed = time.monotonic() - started
        if case.startswith("an answered request"):
            assert response.startswith(b"HTTP/1.1 200 OK"), response
            response = response[response.index(b"HTTP/1.1 408") :]
        assert status_and_error(response) == (
            408,
            f"the request was not complete within request_timeout_s={TIMEOUT_S:g} s; send the whole request at once",
        ), case
        assert elapsed < TIMEOUT_S + SLACK_S, f"{case}: closed after {elapsed:.1f} s"
    assert time.monotonic() - started >= TIMEOUT_S - 0.1  # not before the limit
    assert server.healthy()  # a good request is still answered at once


def test_a_request_beyond_max_connections_gets_503_until_the_slow_ones_are_closed(server):
    slow = [connect(server, b"POST /predict HTTP/1.1\r\n") for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)  # the server has accepted them all
    answer = server.request("GET", "/health")
    assert answer.status == 503 and answer.headers["connection"] == "close"
    assert answer.json() == {
        "error": f"the server has its max_connections={MAX_CONNECTIONS} connections open; try again in a moment"
    }
    for sock in slow:
        assert status_and_error(until_closed(sock))[0] == 408
    assert server.healthy()  # their sockets are free again


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("request_timeout_s=0", "request_timeout_s must be a number of seconds > 0, got 0; e.g. 10"),
        ("max_connections=0", "max_connections must be a whole number >= 1, got 0; e.g. 512"),
    ],
)
def test_limits_that_would_let_no_request_through_are_one_line(tmp_path, override, said):
    result = run_cli(override, f"hydra.run.dir={tmp_path / 'run'}", module="mnist_lab.serve")
    assert one_error_line(result) == said
    assert not (tmp_path / "run").exists()
