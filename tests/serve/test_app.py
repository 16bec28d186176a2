"""`python -m mnist_lab.serve`: the page, the JSON API and every bad request, against a real server."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_lab.data.segment import load_digit

from helpers import Server, compose_config, run_cli, run_process, start_server, stop

pytestmark = pytest.mark.long  # run first (tests/conftest.py)

LIMITS = compose_config("serve")  # the shipped limits: the server under test runs with them
SEVEN = [(38, 32), (104, 30), (66, 116)]
ONE = [(72, 24), (68, 116)]


def drawn(strokes: list[tuple[int, int]], fmt: str = "PNG", mode: str = "L", size: int = 140) -> bytes:
    """A digit drawn with a thick pen, dark on white (or on transparent for RGBA), as an image file."""
    image = Image.new(mode, (size, size), (0, 0, 0, 0) if mode == "RGBA" else "white")
    ImageDraw.Draw(image).line(strokes, fill=(20, 20, 20, 255) if mode == "RGBA" else 20, width=11, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def heic(strokes: list[tuple[int, int]]) -> bytes:
    """The drawn digit as a HEIC file, a phone camera's default format."""
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.open(io.BytesIO(drawn(strokes))).convert("RGB")).save(buffer, quality=90)
    return buffer.getvalue()


def blank(size: int = 100) -> bytes:
    """A white PNG: an image with no digit on it."""
    buffer = io.BytesIO()
    Image.new("L", (size, size), "white").save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG file whose header claims width x height pixels (a decompression bomb's header)."""
    png = bytearray(drawn(SEVEN, size=50))
    struct.pack_into(">II", png, 16, width, height)  # IHDR's data starts at byte 16
    struct.pack_into(">I", png, 29, zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@pytest.fixture(scope="module")
def server(cnn_run, tmp_path_factory) -> Iterator[Server]:
    """One real server on a free port for the module; stopped even when a test fails."""
    folder = tmp_path_factory.mktemp("serve")
    process = None
    try:
        process, running = start_server(cnn_run[0], folder)
        yield running
    finally:
        if process is not None:
            stop(process)


def test_health_names_the_model_and_its_dataset(server):
    # trained in-process, not by a command: no overrides to name (test_user_modules checks a command's)
    health = server.request("GET", "/health").json()
    assert health == {"status": "ok", "model": "CNN", "dataset": "MNIST", "trained_with": ""}


def test_ctrl_c_stops_the_server_cleanly(cnn_run, tmp_path):
    process, running = start_server(cnn_run[0], tmp_path)  # port=0: the URL logged has the port it got
    try:
        assert running.healthy()
    finally:
        code = stop(process, signal.SIGINT)
    assert code == 0 and "Traceback" not in running.log.read_text()


def test_openapi_describes_the_image_body_and_docs_need_no_cdn(server):
    schema = server.request("GET", "/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"image/png", "image/jpeg", "application/octet-stream"} <= body.keys()
    assert server.request("GET", "/docs").status == 404  # Swagger UI would load from a CDN


def test_page_is_one_self_contained_file(server):
    page = server.request("GET", "/")
    html = page.body.decode()
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="prediction"' in html and "<canvas" in html and "touch-action: none" in html
    assert 'name="viewport"' in html and 'type="file"' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//""", html)
    assert "connect-src 'self'" in page.headers["content-security-policy"]


def test_predict_answers_like_the_predict_command(server, cnn_run, tmp_path):
    files = {
        "seven.png": drawn(SEVEN),
        "seven_on_transparent.png": drawn(SEVEN, mode="RGBA"),
        "seven.jpg": drawn(SEVEN, "JPEG"),
        "one.bmp": drawn(ONE, "BMP"),
        "one.gif": drawn(ONE, "GIF"),
        "one.webp": drawn(ONE, "WEBP"),
        "seven.heic": heic(SEVEN),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = run_cli(
        f"ckpt_path={cnn_run[0]}",
        f"images=[{','.join(str(tmp_path / n) for n in files)}]",
        f"hydra.run.dir={tmp_path / 'predict'}",
        module="mnist_lab.predict",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    predicted = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    expected = predicted["predictions"]
    for name, reference in zip(files, expected):
        answer = server.predict(files[name], "application/octet-stream" if name.endswith("bmp") else "image/*")
        assert answer.status == 200, answer.body
        got = answer.json()
        assert got["digit"] == reference["prediction"], name
        assert got["checkpoint"] == Path(predicted["checkpoint"]).name
        assert len(got["probabilities"]) == 10 and sum(got["probabilities"]) == pytest.approx(1, abs=1e-4)
        for digit, probability in reference["top3"]:
            assert got["probabilities"][digit] == pytest.approx(probability, abs=2e-5), name
        assert np.allclose(got["input"], load_digit(tmp_path / name), atol=6e-4)  # the 28x28 the model saw
    assert [r["prediction"] for r in expected] == [7, 7, 7, 1, 1, 1, 7]


BAD_REQUESTS = {
    # name: (method, path, body, Content-Type, status, words of the error)
    "empty body": ("POST", "/predict", lambda: b"", "image/png", 400, "the request body is empty"),
    "not an image": (
        "POST",
        "/predict",
        lambda: b"hello, world" * 10,
        "image/png",
        415,
        "not an image that can be decoded",
    ),
    "a format not served": (
        "POST",
        "/predict",
        lambda: drawn(SEVEN, "TIFF"),
        "image/tiff",
        415,
        "not an image that can be decoded (PNG, JPEG, BMP, GIF, WEBP, HEIF)",
    ),
    "truncated image": ("POST", "/predict", lambda: drawn(SEVEN, "JPEG")[:400], "image/jpeg", 400, "cannot be read"),
    "no digit": ("POST", "/predict", blank, "image/png", 422, "no digit found"),
    "wrong content type": (
        "POST",
        "/predict",
        lambda: drawn(SEVEN),
        "application/json",
        415,
        "Content-Type application/json is not an image",
    ),
    "too many pixels": (
        "POST",
        "/predict",
        lambda: png_claiming(8192, 8192),
        "image/png",
        413,
        f"8192x8192 is more than the {LIMITS.max_pixels:,} pixels allowed",
    ),
    "decompression bomb": (
        "POST",
        "/predict",
        lambda: png_claiming(100_000, 100_000),
        "image/png",
        413,
        f"more than the {LIMITS.max_pixels:,} pixels allowed",
    ),
    "wrong method": ("GET", "/predict", lambda: None, None, 405, "GET is not allowed on /predict; use POST"),
    "wrong path": ("POST", "/predictions", lambda: drawn(SEVEN), "image/png", 404, "there is no /predictions"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_gets_one_json_sentence_its_status_and_one_log_line(server, case):
    method, path, body, content_type, status, words = BAD_REQUESTS[case]
    logged = len(server.refusals())
    answer = server.request(method, path, body(), {"Content-Type": content_type} if content_type else {})
    assert answer.status == status
    error = answer.json()["error"]
    assert isinstance(error, str) and words in error and "\n" not in error
    new_lines = server.refusals()[logged:]
    assert len(new_lines) == 1 and f"{method} {path}: {status} {error}" in new_lines[0]
    assert server.healthy()


def exchange(server: Server, head: bytes, body: Iterable[bytes] = ()) -> str:
    """Send a request's head and body over a raw socket, then read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", urlsplit(server.url).port), timeout=10) as sock:
        sock.sendall(head)
        for part in body:
            sock.sendall(part)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode("latin-1")


def test_an_oversized_body_is_refused_before_it_is_sent(server):
    """Content-Length over the limit: the answer comes at once, and the connection closes."""
    logged = len(server.refusals())
    answer = exchange(
        server,
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n",
    )  # and not one byte of the body
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413") and "connection: close" in head.lower()
    assert json.loads(body) == {
        "error": f"the body is larger than the {LIMITS.max_bytes:,} bytes allowed; send a smaller image"
    }
    assert len(server.refusals()) == logged + 1 and server.healthy()


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server):
    """No Content-Length to check: the bytes are counted as they arrive."""
    sizes = [1 << 16] * (LIMITS.max_bytes // (1 << 16))
    sizes.append(LIMITS.max_bytes + 1 - sum(sizes))  # one byte more than allowed, then silence
    answer = exchange(
        server,
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n",
        (f"{n:x}\r\n".encode() + b"\0" * n + b"\r\n" for n in sizes),
    )
    assert answer.startswith("HTTP/1.1 413") and "bytes allowed" in answer
    assert server.healthy()


def test_concurrent_requests_each_get_their_own_answer(server):
    images = [drawn(SEVEN), drawn(ONE), drawn(SEVEN, "JPEG"), drawn(ONE, mode="RGBA")]
    alone = [server.predict(image).json() for image in images]
    assert [a["digit"] for a in alone] == [7, 1, 7, 1]
    with ThreadPoolExecutor(32) as pool:  # batched together on the server: answers must not mix
        answers = list(pool.map(lambda i: server.predict(images[i % 4]), range(64)))
    for i, answer in enumerate(answers):
        assert answer.status == 200
        got, expected = answer.json(), alone[i % 4]
        assert got["digit"] == expected["digit"] and got["input"] == expected["input"]
        assert np.allclose(got["probabilities"], expected["probabilities"], atol=2e-5)


def test_missing_checkpoint_is_one_line_and_exit_1(tmp_path):
    result = run_process(
        f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}", module="mnist_lab.serve"
    )
    text = result.stdout + result.stderr
    errors = [line for line in text.splitlines() if "[ERROR]" in line]
    assert result.returncode == 1 and "Traceback" not in text
    assert len(errors) == 1 and "nope.ckpt does not exist" in errors[0]


def test_a_port_in_use_is_one_line_and_exit_1(cnn_run, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_process(
            f"ckpt_path={cnn_run[0]}", f"port={port}", f"hydra.run.dir={tmp_path / 'run'}", module="mnist_lab.serve"
        )
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "[ERROR]" in line]
    assert result.returncode == 1 and len(errors) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in errors[0] and "port=" in errors[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def test_a_digit_drawn_in_a_real_browser_is_read_as_soon_as_the_pen_lifts(server, tmp_path):
    """Chromium draws a 7 with the mouse, then opens an image file; nothing leaves this machine.
    MNIST_LAB_SERVE_SCREENSHOT=<file.png> also saves the page with its drawing there."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    requests: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 620})
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.goto(server.url)
            assert page.text_content("#prediction") == ""

            box = page.locator("#pad").bounding_box()
            corners = [(0.28, 0.25), (0.72, 0.24), (0.62, 0.45), (0.50, 0.80)]  # a 7, in one stroke
            page.mouse.move(box["x"] + box["width"] * corners[0][0], box["y"] + box["height"] * corners[0][1])
            page.mouse.down()
            for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
                for t in np.linspace(0.1, 1, 10):
                    page.mouse.move(
                        box["x"] + box["width"] * (x0 + (x1 - x0) * t), box["y"] + box["height"] * (y0 + (y1 - y0) * t)
                    )
            page.mouse.up()  # no click: lifting the pen asks the server
            sync_api.expect(page.locator("#prediction")).to_have_text(re.compile(r"^\d$"), timeout=10_000)
            assert page.text_content("#prediction") == "7"
            bars = page.locator("#bars .fill").evaluate_all("els => els.map(e => parseFloat(e.style.height))")
            assert len(bars) == 10 and max(bars) == bars[7] and sum(bars) == pytest.approx(100, abs=1)
            seen = page.locator("#seen").evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data)")
            assert max(seen) == 255  # the 28x28 input is drawn, white ink on black
            page.screenshot(path=str(tmp_path / "page.png"))
            if os.environ.get("MNIST_LAB_SERVE_SCREENSHOT"):
                shutil.copyfile(tmp_path / "page.png", os.environ["MNIST_LAB_SERVE_SCREENSHOT"])

            page.click("#clear")
            assert page.text_content("#prediction") == ""
            (tmp_path / "one.png").write_bytes(drawn(ONE))
            page.set_input_files("#file", str(tmp_path / "one.png"))
            sync_api.expect(page.locator("#prediction")).to_have_text("1", timeout=10_000)
            assert ".heic" in page.get_attribute("#file", "accept")  # a phone's photos are offered in the picker
            (tmp_path / "seven.heic").write_bytes(heic(SEVEN))  # sent even though Chromium cannot draw it
            page.set_input_files("#file", str(tmp_path / "seven.heic"))
            sync_api.expect(page.locator("#prediction")).to_have_text("7", timeout=10_000)
        finally:
            browser.close()
    assert not problems
    assert requests and all(
        urlsplit(url).hostname == "127.0.0.1" or urlsplit(url).scheme in ("data", "blob") for url in requests
    ), requests
    assert sum(url.endswith("/predict") for url in requests) >= 3
