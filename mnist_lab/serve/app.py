"""The server: the drawing page and a JSON API over one checkpoint (`python -m mnist_lab.serve`)."""

from __future__ import annotations

import asyncio
import html as markup
import json
import logging
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from omegaconf import DictConfig
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from mnist_lab.checkpoints.load import LoadedModel, load_checkpoint
from mnist_lab.data.images import ImageError, ImageTooLargeError, NotAnImageError, decode_image
from mnist_lab.data.segment import NoDigitError, SeveralMarksError, to_mnist
from mnist_lab.serve.batching import Batcher
from mnist_lab.serve.limits import DeadlineMiddleware, Limits, RequestTooSlow, protocol
from mnist_lab.serve.sockets import page_url

log = logging.getLogger("mnist_lab.serve")  # also when run as __main__

# The decoders a posted image may use: the common web formats, not all of PIL's (some call out to
# other programs, e.g. Ghostscript for EPS), and HEIC/HEIF, a phone camera's default.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "HEIF")
BODY_TYPES = (
    "image/png",
    "image/jpeg",
    "image/bmp",
    "image/gif",
    "image/webp",
    "image/heic",
    "image/heif",
    "application/octet-stream",
)
IMAGE_NAME = "the posted image"
# The page talks to this server only; the browser enforces it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


class Prediction(BaseModel):
    """The answer of POST /predict (for the API's schema)."""

    digit: int
    probabilities: list[float]
    checkpoint: str
    input: list[list[float]]


class ErrorBody(BaseModel):
    """The answer to any refused request (for the API's schema)."""

    error: str


class Refused(Exception):
    """A request answered with a 4xx status and one sentence saying why."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded once by the standard library (no FastAPI re-encoding)."""
    return Response(json.dumps(body, separators=(",", ":")), status, headers, media_type="application/json")


def prepare(data: bytes, max_pixels: int) -> np.ndarray:
    """A posted image as the model's (28, 28) input in [0, 1], exactly as `predict images=` prepares it."""
    try:
        return to_mnist(decode_image(data, IMAGE_NAME, FORMATS, max_pixels), IMAGE_NAME)
    except ImageTooLargeError as err:
        raise Refused(413, str(err)) from err
    except NotAnImageError as err:
        raise Refused(415, str(err)) from err
    except NoDigitError as err:
        raise Refused(422, f"{err}; draw or send a dark digit on light paper, or a light one on dark") from err
    except SeveralMarksError as err:
        raise Refused(422, str(err)) from err
    except ImageError as err:  # recognised but broken, e.g. truncated
        raise Refused(400, f"{err}; send the whole file") from err


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, without its parameters: "" when there is none."""
    return (header or "").split(";", 1)[0].strip().lower()


def body_type_ok(kind: str) -> bool:
    """Whether a body of this media type may hold an image file (no type at all counts as raw bytes)."""
    return kind == "" or kind.startswith("image/") or kind == "application/octet-stream"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `max_bytes`."""
    too_big = f"the body is larger than the {max_bytes:,} bytes allowed; send a smaller image"
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Refused(400, f"Content-Length {length!r} is not a number of bytes; send a valid request")
        if int(length) > max_bytes:
            raise Refused(413, too_big, close=True)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():  # chunked uploads carry no Content-Length: count as they come
            size += len(chunk)
            if size > max_bytes:
                raise Refused(413, too_big, close=True)
            chunks.append(chunk)
    except ClientDisconnect as err:
        raise Refused(400, "the connection closed before the whole body arrived; send it again") from err
    return b"".join(chunks)


def page_html() -> str:
    """The drawing page, shipped inside the package."""
    return resources.files("mnist_lab.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    loaded: LoadedModel,
    max_bytes: int = 25_000_000,
    max_pixels: int = 50_000_000,
    decode_threads: int = 2,
    max_batch: int = 64,
    batch_wait_ms: float = 1.0,
) -> FastAPI:
    """The web app: GET / (the page), POST /predict, GET /health; every refusal is JSON {"error": ...}."""
    batcher = Batcher(loaded, max_batch, batch_wait_ms / 1000)
    decoders = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode") if decode_threads > 0 else None
    net_name = loaded.name
    html = (
        page_html()
        .replace("__MAX_BYTES__", str(max_bytes))  # the page checks a file's size first
        .replace("__MODEL__", markup.escape(f"{net_name} {loaded.how}"))  # the overrides are the user's text
    )
    health = json.dumps(
        {"status": "ok", "model": net_name, "dataset": loaded.dataset, "trained_with": loaded.trained_with},
        separators=(",", ":"),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()
        if decoders is not None:
            decoders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="mnist_lab",
        description=f"Handwritten digits read by a {net_name} {loaded.how} ({loaded.path.name}).",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )

    def refuse(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        log.warning("refused %s %s: %d %s", request.method, request.url.path, status, message)
        return json_response({"error": message}, status, headers)

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> Response:
        return refuse(request, err.status, err.message, {"Connection": "close"} if err.close else None)

    @app.exception_handler(RequestTooSlow)
    async def too_slow(request: Request, err: RequestTooSlow) -> Response:
        return refuse(request, 408, str(err), {"Connection": "close"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        path = request.url.path
        if err.status_code == 404:
            message = f"there is no {path}; the API has GET /, GET /health and POST /predict"
        elif err.status_code == 405:
            allowed = (err.headers or {}).get("Allow", "another method")
            message = f"{request.method} is not allowed on {path}; use {allowed}"
        else:
            message = str(err.detail)
        return refuse(request, err.status_code, message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        return refuse(request, 422, f"invalid request: {first.get('msg', 'unreadable input')}; see /openapi.json")

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> Response:  # a bug: uvicorn logs its traceback
        return json_response({"error": "the server failed on this request; see its log"}, 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> Response:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})

    @app.get("/health", summary="Whether the model is loaded, and which")
    async def health_check() -> Response:
        return Response(health, media_type="application/json")

    @app.post(
        "/predict",
        summary="Read the digit in an image",
        description="The body is the image file's bytes (PNG, JPEG, BMP, GIF or WebP). The image is "
        "prepared like an MNIST digit, exactly as `python -m mnist_lab.predict images=` does; "
        "`input` is that 28x28 image, rows of pixels in [0, 1].",
        responses={
            200: {"model": Prediction},
            400: {"model": ErrorBody},
            413: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in BODY_TYPES},
            }
        },
    )
    async def predict(request: Request) -> Response:
        kind = media_type(request.headers.get("content-type"))
        if not body_type_ok(kind):
            raise Refused(
                415,
                f"Content-Type {kind} is not an image; send the image file's raw bytes as "
                "image/png, image/jpeg, ... or application/octet-stream (not a form upload)",
            )
        data = await read_body(request, max_bytes)
        if not data:
            raise Refused(400, "the request body is empty; send the image file's bytes")
        if decoders is None:
            pixels = prepare(data, max_pixels)
        else:
            pixels = await asyncio.get_running_loop().run_in_executor(decoders, prepare, data, max_pixels)
        probs = await batcher.probabilities(pixels)
        return json_response(
            {
                "digit": int(probs.argmax()),
                "probabilities": np.round(probs.astype(np.float64), 6).tolist(),
                "checkpoint": loaded.path.name,
                "input": np.round(pixels.astype(np.float64), 3).tolist(),
            }
        )

    return app


def serve(cfg: DictConfig, checkpoint: Path, sock: socket.socket) -> None:
    """Load `checkpoint` and serve the page and the API on `sock` until interrupted."""
    import uvicorn

    loaded = load_checkpoint(checkpoint, trust=cfg.get("trust") or ())
    torch.set_num_threads(max(1, cfg.threads))
    app = create_app(loaded, cfg.max_bytes, cfg.max_pixels, cfg.decode_threads, cfg.max_batch, cfg.batch_wait_ms)
    log.info(
        "serving %s (%s, %s): open %s",
        loaded.path,
        loaded.name,
        loaded.how,
        page_url(sock),
    )
    limits = Limits(cfg.request_timeout_s, cfg.max_connections)
    # log_config=None: uvicorn logs through the run's handlers (console and serve.log)
    config = uvicorn.Config(
        DeadlineMiddleware(app, limits),
        http=protocol(limits),
        log_config=None,
        access_log=cfg.access_log,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn has shut down cleanly, then passes Ctrl-C on
        log.info("stopped")
