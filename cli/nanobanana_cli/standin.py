"""A stand-in for an OpenAI-compatible image gateway on 127.0.0.1, for offline runs and tests.

It answers `POST /v1/chat/completions` (or `/chat/completions`) the way the real gateways do, in any of
the response dialects the client must read (`style`), with a real PNG drawn for each prompt (see
`drawing`). It can be slow (`latency`) and can fail on purpose, so retries, deadlines and error parsing
are exercised over real sockets:

* scripted: `gw.script(Fault(status=429, retry_after="0"), Fault(kind="reset"))` queues faults that the
  next authorised requests consume, in order;
* an outage: `gw.go_down(3)` answers 503 to every request for 3 seconds from the next one on;
* by prompt: directives written inside the prompt text, so that end-to-end runs fail per job:

  ==========================  ============================================================
  ``[[status:N]]``            every call answers HTTP N with an error body
  ``[[status:N:S]]``          the same, with ``Retry-After: S``
  ``[[flaky:N]]``             the first N calls for this prompt answer 503, later ones succeed
  ``[[flaky:N:S]]``           the same, with ``Retry-After: S`` on the 503s
  ``[[quota]]``               403 with a new-api body, code ``insufficient_user_quota``
  ``[[refuse]]``              200, text only, ``finish_reason: content_filter``
  ``[[text]]``                200, text only, ``finish_reason: stop``
  ``[[hang]]``                never answers (until the gateway stops)
  ``[[hang:S]]``              answers normally after S seconds
  ``[[reset]]``               closes the connection abruptly (TCP RST) without answering
  ``[[truncate]]``            a 200 whose body is shorter than its Content-Length
  ``[[moderated]]``           OpenRouter's 403 moderation error (``metadata.reasons``)
  ``[[blocked]]``             new-api's 400 ``prompt_blocked`` (a Gemini block reason)
  ``[[midstream]]``           200 with an ``error`` object and ``finish_reason: error``
  ``[[html]]``                501 with an HTML page, as a plain web server answers a POST
  ``[[retryinfo:S]]``         429 with Google's ``RetryInfo`` (``retryDelay: "Ss"``) in the body
  ``[[provider-retry:S]]``    429 with LiteLLM's ``llm_provider-retry-after: S`` header
  ==========================  ============================================================

and, changing how a success is answered:

  ==========================  ============================================================
  ``[[stream]]``              an event stream, whether or not the request asked for one
  ``[[thoughts]]``            a draft image first, as LiteLLM relays Gemini's thought parts
  ``[[square]]``              the aspect ratio ignored, as a gateway that drops it
  ``[[strict]]``              400 ``Unknown name "google"`` to the newapi dialect, as LiteLLM
                              relays Google's answer to ``extra_body``
  ==========================  ============================================================

A request with ``"stream": true`` is answered as an event stream (OpenAI chunks). A scripted fault
takes precedence over a directive. Input images sent as data URLs or raw base64 are
pasted into the drawing; `https` inputs are not fetched (the stand-in never leaves 127.0.0.1).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast

from PIL import Image

from nanobanana.errors import PipelineError
from nanobanana.images import decode_base64_image, to_data_url
from nanobanana_cli import drawing

Style = Literal["openrouter", "newapi", "parts", "raw", "url"]
FaultKind = Literal["status", "hang", "reset", "truncate", "refuse", "text", "midstream"]
ErrorStyle = Literal["openrouter", "newapi"]
Json = dict[str, Any]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
IMAGE_PATH = re.compile(r"^/images/([0-9a-f]{32}\.png)$")
DIRECTIVE = re.compile(
    r"\[\[(status|flaky|quota|refuse|text|hang|reset|truncate|moderated|blocked|midstream|html|retryinfo"
    r"|provider-retry)(?::(\d+(?:\.\d+)?))?(?::(\d+(?:\.\d+)?))?\]\]"
)
#: Directives that change how a success is answered (any number of them, beside one fault directive).
MANNERS = re.compile(r"\[\[(stream|thoughts|square|strict)\]\]")
#: new-api's `code` for an error status, so its bodies look like a reseller's.
NEWAPI_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_user_quota",
    403: "insufficient_user_quota",
    404: "model_not_found",
    429: "rate_limit_exceeded",
}
#: What Google bills per generated image, reported in `usage` like the real model does.
IMAGE_TOKENS = 1290
REFUSAL = "I can't create that image. Please try a different request."
TEXT_ONLY = "Here is a description instead of an image: imagine it, vividly."


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request.

    `status` is the HTTP status of a `"status"` fault (default 500); `body` replaces the default error
    body (a dict is sent as JSON, a str as text/plain, like a proxy's HTML page); `seconds` bounds a
    `"hang"` (None: until the gateway stops, after which the connection is reset).
    """

    kind: FaultKind = "status"
    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: int | None = None
    body: Json | str | None = None
    seconds: float | None = None
    headers: tuple[tuple[str, str], ...] = ()


#: A new-api reseller out of quota: the 403 that means "top up", not "wrong key".
QUOTA_FAULT = Fault(
    status=403,
    body={
        "error": {
            "message": "user quota is not enough",
            "type": "new_api_error",
            "code": "insufficient_user_quota",
        }
    },
)


# OpenRouter's moderation error (openrouter.ai/docs/api/reference/errors-and-debugging, "Moderation Errors").
MODERATED_FAULT = Fault(
    status=403,
    body={
        "error": {
            "code": 403,
            "message": "Your input was flagged by moderation. No credits were charged.",
            "metadata": {
                "reasons": ["violence/graphic"],
                "flagged_input": "the prompt, truncated to 100 characters",
                "provider_name": "Google",
                "model_slug": "google/gemini-2.5-flash-image",
            },
        }
    },
)
# new-api's answer to a Gemini promptFeedback.blockReason
# (QuantumNous/new-api relay/channel/gemini/relay-gemini.go).
BLOCKED_FAULT = Fault(
    status=400,
    body={
        "error": {
            "message": "request blocked by Gemini API: PROHIBITED_CONTENT",
            "type": "prompt_blocked",
            "param": "",
            "code": "prompt_blocked",
        }
    },
)
# Python's http.server (Lib/http/server.py) answering a POST it has no handler for.
HTML_PAGE = (
    '<!DOCTYPE HTML>\n<html lang="en">\n<head><meta charset="utf-8"><title>Error response</title></head>\n'
    "<body><h1>Error response</h1><p>Error code: 501</p><p>Message: Unsupported method ('POST').</p>"
    "</body>\n</html>\n"
)
HTML_FAULT = Fault(status=501, body=HTML_PAGE)
# Google's answer to the newapi dialect's `extra_body` copied to the top of a generateContent request by
# LiteLLM, as LiteLLM relays it (code a string, the upstream's words in the message).
UNKNOWN_GOOGLE_FIELD = Fault(
    status=400,
    body={
        "error": {
            "message": "litellm.BadRequestError: GeminiException BadRequestError - Invalid JSON payload "
            'received. Unknown name "google": Cannot find field.',
            "type": None,
            "param": None,
            "code": "400",
        }
    },
)
#: OpenRouter's error during generation (openrouter.ai/docs/api-reference/streaming, "Stream Error Handling").
MIDSTREAM_ERROR = {"code": "server_error", "message": "Provider disconnected unexpectedly"}


def retry_info_fault(seconds: str) -> Fault:
    """Google's 429 with a RetryInfo detail (ai.google.dev/gemini-api/docs/troubleshooting)."""
    return Fault(
        status=429,
        body={
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}
                ],
            }
        },
    )


def error_body(status: int, message: str, style: ErrorStyle) -> Json:
    """The error object a gateway of this style sends with an error status."""
    if style == "newapi":
        code = NEWAPI_CODES.get(status, "bad_response_status_code")
        return {"error": {"message": message, "type": "new_api_error", "code": code}}
    return {"error": {"code": status, "message": message}}


def prompt_text(body: Json) -> str:
    """All the text of the request's user messages, joined: what directives and `calls_for` look at."""
    texts: list[str] = []
    for message in _user_messages(body):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content if _part_type(part) == "text")
    return "\n".join(texts)


def input_images(body: Json) -> list[Image.Image]:
    """Decoded image_url parts of the request (data URLs or raw base64); raises ValueError if unreadable."""
    images: list[Image.Image] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if _part_type(part) != "image_url":
                continue
            image_url = part.get("image_url")
            url = str(image_url.get("url", "") if isinstance(image_url, dict) else image_url)
            if url.startswith(("http://", "https://")):
                continue
            try:
                data = decode_base64_image(url)  # the client's own reading of data URLs and raw base64
            except PipelineError as exc:
                raise ValueError("an image_url part is neither a data URL nor base64") from exc
            image = drawing.decode_input(data)
            if image is None:
                raise ValueError("an image_url part does not hold a readable image")
            images.append(image)
    return images


def image_config(body: Json) -> Json:
    """`image_config` from either request dialect (top level, or `extra_body.google`)."""
    config = body.get("image_config")
    if not isinstance(config, dict):
        extra = body.get("extra_body")
        google = extra.get("google") if isinstance(extra, dict) else None
        config = google.get("image_config") if isinstance(google, dict) else None
    return config if isinstance(config, dict) else {}


def _user_messages(body: Json) -> Iterator[Json]:
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            yield message


def _part_type(part: object) -> str | None:
    return str(part.get("type")) if isinstance(part, dict) else None


def directive_fault(prompt: str, calls_so_far: int) -> Fault | None:
    """The fault a prompt asks for on its call number `calls_so_far + 1`, if any."""
    match = DIRECTIVE.search(prompt)
    if match is None:
        return None
    name, first, second = match.groups()
    if name == "status":
        return Fault(status=int(float(first or 500)), retry_after=second)
    if name == "flaky":
        failing = calls_so_far < int(float(first or 1))
        return Fault(status=503, retry_after=second) if failing else None
    if name == "quota":
        return QUOTA_FAULT
    if name in ("moderated", "blocked", "html"):
        return {"moderated": MODERATED_FAULT, "blocked": BLOCKED_FAULT, "html": HTML_FAULT}[name]
    if name == "retryinfo":
        return retry_info_fault(first or "1")
    if name == "provider-retry":
        return Fault(status=429, headers=(("llm_provider-retry-after", first or "1"),))
    if name == "hang":
        return Fault(kind="hang", seconds=float(first) if first else None)
    return Fault(kind=cast(FaultKind, name))


class _Server(ThreadingHTTPServer):
    """The HTTP server, knowing its gateway and the open connections that `stop()` must cut."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, gateway: StandInGateway) -> None:
        self.gateway = gateway
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut mid-answer are what several faults provoke: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
        if self.server.gateway.stopping.is_set():
            self.close_connection = True

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the local runner have their own output."""

    def do_GET(self) -> None:
        match = IMAGE_PATH.match(self.path)
        data = self.server.gateway.stored_image(match.group(1)) if match else None
        if data is None:
            self.send_json(404, error_body(404, f"no such path {self.path}", "openrouter"))
        else:
            self.send_bytes(200, data, "image/png")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        gateway = self.server.gateway
        if self.path.split("?")[0] not in CHAT_PATHS:
            self.send_json(404, error_body(404, f"no such path {self.path}", gateway.error_style))
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise TypeError("the request body is not a JSON object")
        except (ValueError, TypeError) as exc:
            self.send_json(400, error_body(400, f"invalid JSON body: {exc}", gateway.error_style))
            return
        gateway.answer(self, body, self.headers.get("Authorization"))

    def send_json(self, status: int, payload: Json, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        *,
        declared_length: int | None = None,
    ) -> None:
        """One response; `declared_length` lets a fault promise more bytes than it sends."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) if declared_length is None else declared_length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def abort(self) -> None:
        """Close with SO_LINGER 0, so the client sees a connection reset, not an orderly close."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


class StandInGateway:
    """The fake gateway: `with StandInGateway() as gw: ... gw.base_url ...`.

    `api_key`: the Bearer key to require (None: any or none). `style`: the response dialect.
    `n_images`: images per answer. `image_size`: the long side in pixels of a "1K" image (kept small so
    tests are fast). `latency`: seconds each request waits before answering. `error_style`: the shape of
    default error bodies.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        style: Style = "openrouter",
        n_images: int = 1,
        image_size: int = 256,
        latency: float = 0.0,
        error_style: ErrorStyle = "openrouter",
    ) -> None:
        if n_images < 1 or image_size < 16 or latency < 0:
            raise ValueError("n_images must be >= 1, image_size >= 16 and latency >= 0")
        self.api_key = api_key
        self.style = style
        self.n_images = n_images
        self.image_size = image_size
        self.latency = latency
        self.error_style = error_style
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Json] = []
        self._script: deque[Fault] = deque()
        self._prompt_calls: Counter[str] = Counter()
        self._images: dict[str, bytes] = {}
        self._down_for = 0.0
        self._down_until = 0.0
        self._down_status = 503
        self._calls_while_down = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> StandInGateway:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the stand-in gateway is already running")
        self.stopping.clear()
        self._server = _Server(self)
        # A short poll interval: stop() waits for the serving loop to notice, and tests stop gateways often.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="standin-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, free the port, and cut open connections so hung requests end at once."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> StandInGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in gateway is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What the client takes as its API base URL (it appends /v1/chat/completions)."""
        return f"http://127.0.0.1:{self.port}"

    # -- test controls and observations -------------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next authorised chat requests, one each, in order."""
        with self._lock:
            self._script.extend(faults)

    @property
    def requests(self) -> list[Json]:
        """The JSON bodies received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def calls_for(self, prompt_substring: str) -> int:
        """How many requests carried `prompt_substring` in their user text."""
        return sum(prompt_substring in prompt_text(body) for body in self.requests)

    def go_down(self, seconds: float, status: int = 503) -> None:
        """An outage: from the next request on, every authorised chat request for `seconds` gets `status`."""
        with self._lock:
            self._down_for = seconds
            self._down_status = status

    @property
    def calls_while_down(self) -> int:
        """Requests that met an outage (`go_down`): the calls a circuit breaker is there to spare."""
        with self._lock:
            return self._calls_while_down

    def reset(self) -> None:
        """Forget requests, queued faults, flaky counters and served images."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._prompt_calls.clear()
            self._images.clear()

    def stored_image(self, name: str) -> bytes | None:
        with self._lock:
            return self._images.get(name)

    # -- answering ------------------------------------------------------------------------------------

    def answer(self, handler: _Handler, body: Json, authorization: str | None) -> None:
        """Record the request, check the key, then misbehave or draw; answer `latency` after it came.

        The drawing happens inside the latency, as a model's work does: a 1.0 s gateway answers in 1.0 s.
        """
        ready_at = time.monotonic() + self.latency
        prompt = prompt_text(body)
        with self._lock:
            self._requests.append(body)
        authorised = self.api_key is None or authorization == f"Bearer {self.api_key}"
        fault: Fault | None = None
        if authorised:
            with self._lock:
                if self._down_for:
                    self._down_until, self._down_for = time.monotonic() + self._down_for, 0.0
                down = time.monotonic() < self._down_until
                self._calls_while_down += down
                scripted = self._script.popleft() if self._script and not down else None
                calls_so_far = self._prompt_calls[prompt]
                self._prompt_calls[prompt] += 1
            fault = (
                Fault(status=self._down_status) if down else scripted or directive_fault(prompt, calls_so_far)
            )
            if fault is None and "strict" in MANNERS.findall(prompt) and "extra_body" in body:
                fault = UNKNOWN_GOOGLE_FIELD
            if fault is None:
                self._succeed(handler, body, prompt, ready_at)
                return
        if self._stopped_before(ready_at):
            handler.abort()
        elif fault is None:
            handler.send_json(401, error_body(401, "invalid or missing API key", self.error_style))
        else:
            self._misbehave(handler, fault, body, prompt)

    def _stopped_before(self, moment: float) -> bool:
        """Wait until `moment`; True if the gateway is stopping meanwhile (the answer is then dropped)."""
        remaining = moment - time.monotonic()
        return remaining > 0 and self.stopping.wait(remaining)

    def _misbehave(self, handler: _Handler, fault: Fault, body: Json, prompt: str) -> None:
        if fault.kind == "status":
            self._send_error(handler, fault)
        elif fault.kind == "hang":
            if self.stopping.wait(fault.seconds):
                handler.abort()
            else:
                self._succeed(handler, body, prompt)
        elif fault.kind == "reset":
            handler.abort()
        elif fault.kind == "truncate":
            data = json.dumps(self._completion(body, prompt)).encode()
            handler.close_connection = True
            handler.send_bytes(200, data[: len(data) // 2], "application/json", declared_length=len(data))
        elif fault.kind == "midstream":
            completion = _envelope(body, {"role": "assistant", "content": ""}, "error")
            completion["error"] = MIDSTREAM_ERROR
            _send_completion(handler, completion, _streams(body, prompt))
        else:
            refused = fault.kind == "refuse"
            message = {"role": "assistant", "content": REFUSAL if refused else TEXT_ONLY}
            completion = _envelope(body, message, "content_filter" if refused else "stop")
            _send_completion(handler, completion, _streams(body, prompt))

    def _send_error(self, handler: _Handler, fault: Fault) -> None:
        status = fault.status or 500
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        headers.update(fault.headers)
        payload = fault.body
        if payload is None:
            payload = error_body(status, f"stand-in fault: {_phrase(status)}", self.error_style)
        if isinstance(payload, str):
            kind = (
                "text/html; charset=utf-8" if payload.startswith("<!DOCTYPE") else "text/plain; charset=utf-8"
            )
            handler.send_bytes(status, payload.encode(), kind, headers)
        else:
            handler.send_json(status, payload, headers)

    def _succeed(self, handler: _Handler, body: Json, prompt: str, ready_at: float | None = None) -> None:
        try:
            completion = self._completion(body, prompt)
        except ValueError as exc:
            handler.send_json(400, error_body(400, str(exc), self.error_style))
            return
        if ready_at is not None and self._stopped_before(ready_at):
            handler.abort()
            return
        _send_completion(handler, completion, _streams(body, prompt))

    def _completion(self, body: Json, prompt: str) -> Json:
        """The success answer in this gateway's style; raises ValueError for a request it cannot draw."""
        config = image_config(body)
        manners = MANNERS.findall(prompt)
        ratio = None if "square" in manners else config.get("aspect_ratio")
        size = drawing.dimensions(ratio, config.get("image_size"), self.image_size)
        inputs = input_images(body)
        caption = MANNERS.sub("", DIRECTIVE.sub("", prompt)).strip()
        pngs = [drawing.draw(caption, size, inputs=inputs, variant=i) for i in range(self.n_images)]
        urls = [self._image_url(png) for png in pngs]
        if "thoughts" in manners:
            # LiteLLM relays Gemini's thought image first, unmarked, with an empty thinking block for it
            draft = self._image_url(drawing.draw(f"draft: {caption}", size, inputs=inputs, variant=99))
            return _envelope(body, _thinking_message(draft, urls, caption), "stop")
        words = f"Here is your image of: {caption[:80]}"
        message: Json = {"role": "assistant"}
        if self.style == "openrouter":
            message["content"] = words
            message["images"] = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
        elif self.style in ("parts", "raw"):
            message["content"] = [{"type": "text", "text": words}] + [
                {"type": "image_url", "image_url": {"url": url}} for url in urls
            ]
        else:
            shown = "\n\n".join(f"![image]({url})" if self.style == "newapi" else url for url in urls)
            message["content"] = f"{words}\n\n{shown}\n\nEnjoy!"
        return _envelope(body, message, "stop")

    def _image_url(self, png: bytes) -> str:
        """How this style carries an image: data URL, raw base64, or a URL this server serves."""
        if self.style == "raw":
            return base64.b64encode(png).decode()
        if self.style != "url":
            return to_data_url(png)
        name = f"{hashlib.sha256(png).hexdigest()[:32]}.png"
        with self._lock:
            self._images[name] = png
        return f"{self.base_url}/images/{name}"


def _thinking_message(draft: str, urls: list[str], caption: str) -> Json:
    """An assistant message as LiteLLM makes it of a Gemini answer with a thought image (litellm/llms/
    vertex_ai/gemini/vertex_and_google_ai_studio_gemini.py): the draft first in `images`."""
    return {
        "role": "assistant",
        "content": f"Here is your image of: {caption[:80]}",
        "reasoning_content": "Planning the composition.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Planning the composition."},
            {"type": "thinking", "thinking": ""},
        ],
        "images": [{"type": "image_url", "image_url": {"url": url}, "index": 0} for url in [draft, *urls]],
    }


def _streams(body: Json, prompt: str) -> bool:
    """Whether to answer as an event stream: asked for, or a gateway that always streams."""
    return body.get("stream") is True or "stream" in MANNERS.findall(prompt)


def _send_completion(handler: _Handler, completion: Json, stream: bool) -> None:
    if stream:
        handler.send_bytes(200, event_stream(completion), "text/event-stream; charset=utf-8")
    else:
        handler.send_json(200, completion)


def event_stream(completion: Json) -> bytes:
    """A chat.completion as the OpenAI chunks of an event stream: the role, the words in two pieces, the
    images (`delta.images`, as OpenRouter streams them), the finish (with any `error`), then [DONE]."""
    choice = completion["choices"][0]
    message = choice["message"]
    head = {key: completion[key] for key in ("id", "created", "model", "provider")}
    head["object"] = "chat.completion.chunk"
    content = message.get("content") or ""
    half = len(content) // 2 if isinstance(content, str) else 0
    deltas: list[Json] = [{"role": "assistant", "content": ""}]
    deltas += (
        [{"content": content[:half]}, {"content": content[half:]}]
        if isinstance(content, str)
        else [{"content": content}]
    )
    extra = {key: message[key] for key in ("images", "thinking_blocks") if key in message}
    if extra:
        deltas.append(extra)
    chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    last = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
    if "error" in completion:
        last["error"] = completion["error"]
    chunks.append({**last, "usage": completion["usage"]})
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return b": STAND-IN PROCESSING\n\n" + "".join(lines).encode() + b"data: [DONE]\n\n"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _envelope(body: Json, message: Json, finish_reason: str) -> Json:
    """A chat.completion object around one assistant message."""
    prompt_tokens = len(prompt_text(body).split())
    request_digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    return {
        "id": f"gen-standin-{request_digest}",
        "object": "chat.completion",
        "created": 0,
        "model": str(body.get("model") or "gemini-2.5-flash-image"),
        "provider": "stand-in",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": IMAGE_TOKENS,
            "total_tokens": prompt_tokens + IMAGE_TOKENS,
        },
    }
