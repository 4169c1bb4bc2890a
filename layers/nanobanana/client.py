"""The gateway client: one job in, decoded images (or a typed failure) out.

It retries what another attempt may cure, never lets an attempt or a sleep outlive the
invocation, and when the next wait is longer than the invocation can afford it stops and says
how long the message should wait in the queue instead. The API key goes only to the gateway
and never into a message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import astuple, dataclass, field, fields, replace
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from nanobanana.bodies import ACCEPT_ENCODING, iter_body, read_body
from nanobanana.config import Dialect
from nanobanana.dialects import (
    RequestDialect,
    build_request,
    forget_dialects,
    learn_dialect,
    learned_dialect,
    other_dialect,
    ratio_warnings,
    resolve_dialect,
)
from nanobanana.errors import ErrorType, PipelineError, Said
from nanobanana.fetching import Resolver, UrlGuard, fetch, origin, shorten, system_resolver
from nanobanana.images import GeneratedImage, InputImage, to_image
from nanobanana.jobs import Job
from nanobanana.observability import logger
from nanobanana.redaction import redact
from nanobanana.responses import (
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    Answer,
    NotAGateway,
    classify_http_error,
    image_url_of,
    not_a_gateway,
    parse_body,
    parse_response,
)
from nanobanana.retry import Backoff, Clock, Deadline, SystemClock
from nanobanana.streaming import assemble, is_event_stream

__all__ = [
    "AfterCall",
    "BeforeCall",
    "Failure",
    "GatewayClient",
    "GatewayConfig",
    "GeneratedImage",
    "InputImage",
    "Success",
    "chat_completions_url",
    "forget_gateways",
]

DEFAULT_MODEL = "gemini-2.5-flash-image-preview"
#: What is read of an error answer (the rest is dropped unread).
MAX_ERROR_BODY = 64 * 1024

#: Awaited before each gateway call with the last error of this delivery (None before the first call):
#: it counts the call, or raises a PipelineError that stops the job's calls and becomes its failure
#: (retryable with a retry_after: wait in the queue; not retryable: the job ends with it).
BeforeCall = Callable[[PipelineError | None], Awaitable[None]]
#: Told each call's outcome as soon as it is known: None if the gateway answered, else the call's error.
AfterCall = Callable[[PipelineError | None], Awaitable[None]]


@dataclass(frozen=True)
class GatewayConfig:
    """How to reach the gateway and how patient to be with it."""

    base_url: str
    api_key: str = field(repr=False)
    model: str = DEFAULT_MODEL
    dialect: Dialect = "auto"
    #: Ask for an event stream (`"stream": true`), for gateways that answer image models only that way.
    stream: bool = False
    price_per_image_usd: float = 0.039
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 6
    max_bad_response_retries: int = 2
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    #: The answer's body, before and after decompression (a 4K image is about 20 MB in base64).
    max_answer_bytes: int = 32 * 1024 * 1024
    #: Distinct images (inline or linked) in one answer, and each image's bytes (inline or downloaded).
    max_images_per_answer: int = MAX_IMAGES
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_downloads_per_answer: int = 4
    max_download_attempts: int = 3
    download_timeout: float = 30.0
    max_concurrency: int = 16
    #: Below this many seconds left, another attempt is not worth starting (image calls take seconds).
    min_attempt_seconds: float = 5.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the gateway base URL must be http(s)://host[/path], not {self.base_url!r}")
        if self.max_attempts < 1 or self.max_concurrency < 1 or self.max_bad_response_retries < 0:
            raise ValueError("max_attempts and max_concurrency must be >= 1, max_bad_response_retries >= 0")


@dataclass(frozen=True)
class Success:
    """A job's images. `retries` holds the error type of each failed attempt before this one."""

    images: list[GeneratedImage]
    text: str | None
    finish_reason: str | None
    model: str | None
    attempts: int
    latency_ms: int
    cost_usd: float
    retries: list[ErrorType]
    #: What the user should know about an image that came (e.g. not the aspect ratio asked for).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Failure:
    """A job that got no image. `retries` holds the error type of each attempt before the last (whose
    error is `error`); `retry_after` is set when another invocation may succeed: the seconds the
    message should wait in the queue. Without it (error.retryable False) the failure is permanent."""

    error: PipelineError
    attempts: int
    latency_ms: int
    retries: list[ErrorType]
    retry_after: float | None
    #: what the answers that were paid for cost (an answer whose images could not be kept)
    cost_usd: float = 0.0


#: Endpoints that answered with a web page, not JSON: not called again until the monotonic time held.
_SHUNNED: dict[str, tuple[float, PipelineError]] = {}


class _Shunned(Exception):
    """No call: the endpoint answered with a web page a moment ago (`error`), for `seconds` more."""

    def __init__(self, error: PipelineError, seconds: float) -> None:
        self.error = error
        self.seconds = seconds


def _warn(outcome: Success | Failure, job: Job) -> Success | Failure:
    """A success with a warning for each image without the aspect ratio the job asked for."""
    if not isinstance(outcome, Success) or job.aspect_ratio is None:
        return outcome
    sizes = [(image.width, image.height) for image in outcome.images]
    return replace(outcome, warnings=ratio_warnings(job.aspect_ratio, sizes))


def forget_gateways() -> None:
    """Forget what gateways taught this process (dialects, web pages): for tests."""
    _SHUNNED.clear()
    forget_dialects()


def chat_completions_url(base_url: str) -> str:
    """`{base}/v1/chat/completions`, whether the base was given with or without `/v1` or a slash; a URL
    that already ends in `/chat/completions` is the endpoint itself (Google's own is
    `.../v1beta/openai/chat/completions`)."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return f"{base.removesuffix('/v1')}/v1/chat/completions"


class GatewayClient:
    """Calls the gateway for jobs, many at once over one pooled HTTP client (at most max_concurrency)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._config = config
        self._clock: Clock = clock or SystemClock()
        self._backoff = Backoff(config.backoff_base, config.backoff_cap, rng)
        self._endpoint = chat_completions_url(config.base_url)
        self._origin = origin(self._endpoint)
        self._secrets = (config.api_key,)
        # The key is sent per request, to the gateway's own host only: image URLs may point elsewhere.
        self._auth = {"Authorization": f"Bearer {config.api_key}"}
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self._timeouts(config.read_timeout),
            limits=httpx.Limits(
                max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency
            ),
            headers={"User-Agent": "nanobanana-pipeline", "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._slots = asyncio.Semaphore(config.max_concurrency)
        # Image URLs come from strangers: their own client, no proxy from the environment (the guard
        # checks the address connected to), no redirects but the guard's, no connection reused.
        self._downloads_http = httpx.AsyncClient(
            transport=transport,
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": "nanobanana-pipeline", "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._guard = UrlGuard(resolver, trusted=[self._origin])

    @property
    def config(self) -> GatewayConfig:
        return self._config

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._downloads_http.aclose()

    async def generate(
        self,
        job: Job,
        inputs: Sequence[InputImage],
        deadline: Deadline,
        *,
        before_call: BeforeCall | None = None,
        after_call: AfterCall | None = None,
    ) -> Success | Failure:
        """Call the gateway for one job, retrying within the deadline; never raises PipelineError.
        Whatever comes back is redacted of the key, every field of it."""
        return self._scrub(await self._generate(job, inputs, deadline, before_call, after_call))

    async def _generate(
        self,
        job: Job,
        inputs: Sequence[InputImage],
        deadline: Deadline,
        before_call: BeforeCall | None,
        after_call: AfterCall | None,
    ) -> Success | Failure:
        config = self._config
        dialect = self._dialect()
        try:
            await self._check_inputs(job, inputs)
            body = self._body(job, inputs, dialect)
        except PipelineError as exc:
            return Failure(exc, attempts=0, latency_ms=0, retries=[], retry_after=None)
        except TimeoutError:
            slow = PipelineError(
                ErrorType.INPUT_ERROR, "the names of the https input images do not resolve in time"
            )
            return Failure(slow, attempts=0, latency_ms=0, retries=[], retry_after=None)
        if deadline.remaining() < config.min_attempt_seconds:
            late = PipelineError(ErrorType.TIMEOUT, "no time left in this invocation to call the gateway")
            return Failure(late, attempts=0, latency_ms=0, retries=[], retry_after=0.0)
        retries: list[ErrorType] = []
        bad_responses = 0
        switched = False
        last: PipelineError | None = None
        latency_ms = 0
        while True:
            if before_call is not None:
                try:
                    await before_call(last)
                except PipelineError as refused:  # it stands for the last attempt's error
                    wait = (refused.retry_after or 0.0) if refused.retryable else None
                    return Failure(refused, len(retries), latency_ms, retries[:-1], retry_after=wait)
            start = self._clock.monotonic()
            try:
                answer = await self._attempt(body, deadline)
            except _Shunned as shunned:
                return Failure(shunned.error, len(retries), 0, retries, retry_after=shunned.seconds)
            except PipelineError as exc:
                error = exc
            else:
                if after_call is not None:
                    await after_call(None)  # answered: the gateway works, whatever the downloads do
                kept = await self._keep(answer, len(retries) + 1, start, retries, deadline)
                return _warn(kept, job)
            attempts, latency_ms = len(retries) + 1, self._since(start)
            if after_call is not None:
                await after_call(error)
            fallback = None if switched else self._fallback(dialect, error)
            if fallback is not None:
                # a rejected request is not paid: the same request once more, in the other dialect
                dialect, switched = fallback, True
                body = self._body(job, inputs, dialect)
                retries.append(error.type)
                last = error
                continue
            shun = self._shun(error)
            if shun is not None:
                return Failure(error, attempts, latency_ms, retries, retry_after=shun)
            bad_responses += error.type == ErrorType.BAD_RESPONSE
            if error.type == ErrorType.BAD_RESPONSE and bad_responses > config.max_bad_response_retries:
                # The same unreadable answer again and again: a redelivery would pay for it once more.
                error = error.noted(f"unreadable answers: {bad_responses}", retryable=False)
            if not error.retryable:
                return Failure(error, attempts, latency_ms, retries, retry_after=None)
            wait = max(error.retry_after or 0.0, self._backoff.delay(len(retries)))
            if attempts >= config.max_attempts or wait + config.min_attempt_seconds > deadline.remaining():
                return Failure(error, attempts, latency_ms, retries, retry_after=wait)
            retries.append(error.type)
            last = error
            # said out loud: a run's progress shows the jobs waiting to retry, and why
            logger.info("gateway call will be retried", extra={"error": error.to_record(), "wait_s": wait})
            await self._clock.sleep(wait)

    async def _keep(
        self, answer: Answer, attempts: int, start: float, retries: list[ErrorType], deadline: Deadline
    ) -> Success | Failure:
        """The answer's images, downloads included. The answer is paid for: whatever fails now fails the
        job for good (with what was paid in cost_usd), and the gateway is never called again for it."""
        price = self._config.price_per_image_usd
        try:
            images = list(answer.images) + await self._downloads(answer, deadline)
        except PipelineError as exc:
            error = exc.noted(
                "the answer was paid for and is not generated again",
                retryable=False,
                said=Said(answer.model, answer.finish_reason, answer.text),
            )
            return Failure(
                error,
                attempts,
                self._since(start),
                retries,
                retry_after=None,
                cost_usd=answer.paid_images * price,
            )
        return Success(
            images=images,
            text=answer.text,
            finish_reason=answer.finish_reason,
            model=answer.model,
            attempts=attempts,
            latency_ms=self._since(start),
            cost_usd=len(images) * price,
            retries=retries,
        )

    async def _downloads(self, answer: Answer, deadline: Deadline) -> list[GeneratedImage]:
        """The answer's linked images, at most max_downloads_per_answer of them; an image that could not
        be decoded fails the answer before anything is downloaded."""
        if answer.broken:
            raise PipelineError(
                ErrorType.BAD_RESPONSE, f"the answer's image is unreadable: {answer.broken[0]}"
            )
        cap = self._config.max_downloads_per_answer
        if len(answer.urls) > cap:
            raise PipelineError(
                ErrorType.BAD_RESPONSE,
                f"the answer links {len(answer.urls)} images, more than {cap} to download",
            )
        return [await self._download_retrying(url, deadline) for url in answer.urls]

    async def _download_retrying(self, url: str, deadline: Deadline) -> GeneratedImage:
        """One linked image, its download alone retried (max_download_attempts, backoff within the
        deadline) when another try may cure it: a timeout, a lost connection, a 408, 429 or 5xx."""
        for tries in itertools.count(1):
            try:
                return await self._download(url, deadline)
            except PipelineError as exc:
                again = exc.type in (ErrorType.TIMEOUT, ErrorType.SERVER_ERROR) or (
                    exc.status_code in (408, 429) or (exc.status_code or 0) >= 500
                )
                wait = self._backoff.delay(tries - 1)
                if (
                    not again
                    or tries >= self._config.max_download_attempts
                    or wait + 1 > deadline.remaining()
                ):
                    raise
                await self._clock.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _scrub(self, outcome: Success | Failure) -> Success | Failure:
        """The outcome with every text field, and the error's message, redacted of the key."""
        texts: dict[str, Any] = {
            spec.name: redact(value, self._secrets)
            for spec in fields(outcome)
            if isinstance(value := getattr(outcome, spec.name), str)
        }
        if isinstance(outcome, Failure):
            error = outcome.error
            said = error.said and Said(
                *(redact(value, self._secrets) if value else value for value in astuple(error.said))
            )
            clean = PipelineError(
                error.type,
                redact(error.detail, self._secrets),
                status_code=error.status_code,
                retryable=error.retryable,
                retry_after=error.retry_after,
                advice=error.advice,
                said=said,
            )
            return replace(outcome, error=clean, **texts)
        return replace(outcome, **texts)

    def _dialect(self) -> RequestDialect:
        """The configured dialect, or for `auto` what the endpoint taught or its host is known for."""
        if self._config.dialect == "auto":
            return learned_dialect(self._endpoint) or resolve_dialect("auto", self._config.base_url)
        return self._config.dialect

    def _body(self, job: Job, inputs: Sequence[InputImage], dialect: RequestDialect) -> bytes:
        config = self._config
        request = build_request(job, model=config.model, dialect=dialect, inputs=inputs, stream=config.stream)
        return json.dumps(request).encode()

    def _fallback(self, dialect: RequestDialect, error: PipelineError) -> RequestDialect | None:
        """Under `auto`, the other dialect when the gateway rejected a field of this one (learned)."""
        if self._config.dialect != "auto" or error.status_code != 400:
            return None
        other = other_dialect(dialect, error.detail)
        if other is not None:
            learn_dialect(self._endpoint, other)
        return other

    def _recognise(self, headers: httpx.Headers) -> None:
        """Under `auto`, a LiteLLM proxy (its `x-litellm-*` headers on every answer) speaks the openrouter
        dialect: LiteLLM copies `extra_body` to the top of the upstream's request, where Gemini rejects it
        or a lenient upstream drops the options silently."""
        if self._config.dialect == "auto" and any(name.startswith("x-litellm-") for name in headers):
            learn_dialect(self._endpoint, "openrouter")

    def _shun(self, error: PipelineError) -> float | None:
        """After a web page where the gateway's JSON belongs: no call to this endpoint for a while."""
        if not isinstance(error, NotAGateway) or error.retry_after is None:
            return None
        _SHUNNED[self._endpoint] = (self._clock.monotonic() + error.retry_after, error)
        return error.retry_after

    def _refuse_if_shunned(self) -> None:
        """Raise _Shunned while this endpoint is known to be no gateway (checked once a call may start:
        jobs that waited for a slot learn what the one before them found)."""
        held = _SHUNNED.get(self._endpoint)
        left = held[0] - self._clock.monotonic() if held else 0.0
        if held and left > 0:
            raise _Shunned(held[1], left)

    async def _attempt(self, body: bytes, deadline: Deadline) -> Answer:
        """One call, within the deadline: its answer (not yet downloaded), or PipelineError."""
        budget = deadline.remaining()
        async with self._slots:
            self._refuse_if_shunned()
            try:
                async with asyncio.timeout(budget):
                    async with self._http.stream(
                        "POST",
                        self._endpoint,
                        content=body,
                        headers={**self._auth, "Content-Type": "application/json"},
                        timeout=self._timeouts(min(self._config.read_timeout, budget)),
                    ) as response:
                        self._recognise(response.headers)
                        if not response.is_success:
                            raise classify_http_error(
                                response.status_code,
                                await _error_body(response),
                                response.headers,
                                now=self._clock.time(),
                                secrets=self._secrets,
                            )
                        body = await self._read_answer(response)
                        kind = response.headers.get("content-type", "")
                        streamed = is_event_stream(response.headers)
            except TimeoutError:
                raise PipelineError(
                    ErrorType.TIMEOUT,
                    f"the gateway took longer than the {budget:.0f} s this invocation had left",
                ) from None
            except httpx.RequestError as exc:
                raise self._transport_error(exc, "calling the gateway") from None
        limits = {
            "max_images": self._config.max_images_per_answer,
            "max_image_bytes": self._config.max_image_bytes,
        }
        if streamed:
            return parse_response(assemble(body.splitlines()), secrets=self._secrets, **limits)
        return parse_body(body, content_type=kind, secrets=self._secrets, **limits)

    async def _download(self, url: str, deadline: Deadline) -> GeneratedImage:
        """An image the answer linked to, read up to max_image_bytes within download_timeout, from a
        public https address only (see fetching); the key goes only to the gateway's own origin."""
        limit = min(self._config.download_timeout, deadline.remaining())
        shown = shorten(url)
        try:
            async with asyncio.timeout(limit):
                data = await fetch(
                    self._downloads_http,
                    self._guard,
                    url,
                    limit=self._config.max_image_bytes,
                    headers=self._auth if origin(url) == self._origin else None,
                )
        except TimeoutError:
            raise PipelineError(ErrorType.TIMEOUT, f"downloading {shown} took over {limit:.0f} s") from None
        except httpx.InvalidURL:
            raise PipelineError(
                ErrorType.BAD_RESPONSE, f"an image URL that cannot be fetched: {shown}"
            ) from None
        except httpx.RequestError as exc:
            raise self._transport_error(exc, f"downloading {shown}") from None
        return to_image(data, source=f"the file at {shown}")

    async def _check_inputs(self, job: Job, inputs: Sequence[InputImage]) -> None:
        """Image URLs the gateway is to fetch (https inputs, image_url parts of messages) may sit inside
        the gateway's network (a LiteLLM proxy in a VPC): they must point where the pipeline itself
        would fetch from."""
        async with asyncio.timeout(self._config.connect_timeout):
            for url in _linked_inputs(job, inputs):
                await self._guard.pin(url, ErrorType.INPUT_ERROR)

    async def _read_answer(self, response: httpx.Response) -> bytes:
        """The body of a successful answer, read within max_answer_bytes. A body cut short is an
        unreadable answer (paid for, perhaps), not a network failure: it falls under the bounded
        bad_response retries."""
        try:
            body = await read_body(response, self._config.max_answer_bytes, what="the gateway's answer")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise PipelineError(
                ErrorType.BAD_RESPONSE, f"the gateway's answer was cut short ({type(exc).__name__})"
            ) from None
        page = not_a_gateway(response.status_code, body, response.headers)
        if page is not None:
            raise page
        return body

    def _transport_error(self, exc: httpx.RequestError, doing: str) -> PipelineError:
        """A network failure as a retryable error, named without the key."""
        words = redact(str(exc) or type(exc).__name__, self._secrets)
        if isinstance(exc, httpx.TimeoutException):
            return PipelineError(ErrorType.TIMEOUT, f"{doing} timed out ({type(exc).__name__}: {words})")
        return PipelineError(ErrorType.SERVER_ERROR, f"{doing} failed ({type(exc).__name__}: {words})")

    def _timeouts(self, seconds: float) -> httpx.Timeout:
        connect = min(self._config.connect_timeout, seconds)
        return httpx.Timeout(connect=connect, read=seconds, write=seconds, pool=seconds)

    def _since(self, start: float) -> int:
        return round((self._clock.monotonic() - start) * 1000)


async def _error_body(response: httpx.Response) -> bytes:
    """The first MAX_ERROR_BODY bytes of an error answer: its status says enough, its words are quoted."""
    body = bytearray()
    try:
        async for piece in iter_body(response, MAX_ERROR_BODY, what="the gateway's error body"):
            body += piece
    except PipelineError:
        pass
    return bytes(body)


def _linked_inputs(job: Job, inputs: Sequence[InputImage]) -> list[str]:
    """The URLs (not data URLs) of a job's input images and of the image_url parts of its messages."""
    urls = [image.url for image in inputs if image.url is not None]
    for message in job.messages or []:
        for part in message.content if isinstance(message.content, list) else []:
            url = image_url_of(part) if part.get("type") == "image_url" else None
            if isinstance(url, str) and url[:5].lower() != "data:":
                urls.append(url)
    return urls
