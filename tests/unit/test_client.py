"""The gateway client end to end over httpx.MockTransport and a fake clock (no network, no real sleeps)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from gateway_cases import API_KEY, JPEG, PNG, FakeClock, completion, data_url, public_resolver, requested_url

from nanobanana.client import (
    Failure,
    GatewayClient,
    GatewayConfig,
    InputImage,
    Success,
    chat_completions_url,
)
from nanobanana.errors import ErrorType
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline

JOB = parse_job({"id": "j1", "prompt": "a cat"})
BASE = "https://gw.example/v1"
Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def image_answer(data: bytes = PNG) -> httpx.Response:
    return httpx.Response(200, json=completion(f"![image]({data_url(data)})"))


def error(status: int, message: str = "nope", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}}, headers=headers)


class Gateway:
    """A scripted gateway: answers POSTs from `steps` in order, GETs from `files`; records requests."""

    def __init__(self, *steps: Step, files: Mapping[str, httpx.Response | Exception] | None = None) -> None:
        self.steps = list(steps)
        self.files = files or {}
        self.posts: list[httpx.Request] = []
        self.gets: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets.append(request)
            file = self.files[requested_url(request)]
            if isinstance(file, Exception):
                raise file
            return file
        self.posts.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step if isinstance(step, httpx.Response) else step(request)


async def run(
    gateway: Gateway,
    *,
    clock: FakeClock | None = None,
    seconds: float = 300.0,
    inputs: list[InputImage] | None = None,
    **config: Any,
) -> Success | Failure:
    clock = clock or FakeClock()
    settings = GatewayConfig(**{"base_url": BASE, "api_key": API_KEY, **config})
    transport = httpx.MockTransport(gateway)
    client = GatewayClient(
        settings, transport=transport, clock=clock, rng=random.Random(3), resolver=public_resolver
    )
    async with client:
        return await client.generate(JOB, inputs or [], Deadline.after(seconds, clock))


def failed(result: Success | Failure) -> Failure:
    assert isinstance(result, Failure), result
    assert API_KEY not in result.error.message
    return result


def succeeded(result: Success | Failure) -> Success:
    assert isinstance(result, Success), result
    return result


async def test_one_non_streaming_post_with_bearer_auth_gives_the_images() -> None:
    gateway = Gateway(image_answer())
    result = succeeded(await run(gateway, price_per_image_usd=0.05))
    assert [image.data for image in result.images] == [PNG]
    assert (result.attempts, result.retries, result.cost_usd) == (1, [], 0.05)
    assert result.model == "google/gemini-2.5-flash-image"
    assert result.finish_reason == "stop"
    (request,) = gateway.posts
    assert str(request.url) == "https://gw.example/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = json.loads(request.content)
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}]
    assert "stream" not in body
    assert "modalities" not in body  # gw.example speaks the newapi dialect


async def test_auto_dialect_asks_openrouter_for_the_image_modality() -> None:
    gateway = Gateway(httpx.Response(200, json=completion("", images=[data_url(PNG), data_url(JPEG)])))
    result = succeeded(await run(gateway, base_url="https://openrouter.ai/api/v1/"))
    assert [image.ext for image in result.images] == ["png", "jpg"]
    assert result.cost_usd == pytest.approx(2 * 0.039)
    assert str(gateway.posts[0].url) == "https://openrouter.ai/api/v1/chat/completions"
    assert json.loads(gateway.posts[0].content)["modalities"] == ["image", "text"]


@pytest.mark.parametrize(
    "base",
    [
        "https://gw.example",
        "https://gw.example/",
        "https://gw.example/v1",
        "https://gw.example/v1/",
        "https://gw.example/v1/chat/completions",
    ],
)
def test_base_url_is_normalised(base: str) -> None:
    assert chat_completions_url(base) == "https://gw.example/v1/chat/completions"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(401), ErrorType.AUTHENTICATION),
        (error(402), ErrorType.INSUFFICIENT_BALANCE),
        (error(403, "forbidden model"), ErrorType.AUTHENTICATION),
        (error(403, "quota exhausted"), ErrorType.INSUFFICIENT_BALANCE),
        (error(400, "bad aspect ratio"), ErrorType.CLIENT_ERROR),
        (error(404, "no such model"), ErrorType.CLIENT_ERROR),
        (
            httpx.Response(200, json=completion("No.", finish_reason="IMAGE_SAFETY")),
            ErrorType.CONTENT_FILTERED,
        ),
        (httpx.Response(200, json=completion("Here is a poem instead.")), ErrorType.CONTENT_FILTERED),
    ],
)
async def test_never_retries_other_4xx_or_refusals(response: httpx.Response, expected: ErrorType) -> None:
    clock = FakeClock()
    gateway = Gateway(response, image_answer())
    result = failed(await run(gateway, clock=clock))
    assert result.error.type is expected
    assert not result.error.retryable
    assert (result.attempts, result.retries, result.retry_after) == (1, [], None)
    assert len(gateway.posts) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (error(408), ErrorType.TIMEOUT),
        (error(429), ErrorType.RATE_LIMITED),
        (error(500), ErrorType.SERVER_ERROR),
        (error(502), ErrorType.SERVER_ERROR),
        (error(503), ErrorType.SERVER_ERROR),
        (error(504), ErrorType.TIMEOUT),
        (httpx.ConnectError("connection refused"), ErrorType.SERVER_ERROR),
        (httpx.ReadTimeout("read timed out"), ErrorType.TIMEOUT),
        (
            httpx.Response(200, content=b'{"choices": [{"message": {"content": "![x](data:ima'),
            ErrorType.BAD_RESPONSE,
        ),
    ],
)
async def test_retries_what_another_attempt_may_cure(step: Step, expected: ErrorType) -> None:
    clock = FakeClock()
    result = succeeded(await run(Gateway(step, image_answer()), clock=clock))
    assert (result.attempts, result.retries) == (2, [expected])
    assert len(clock.sleeps) == 1
    assert 0.0 <= clock.sleeps[0] <= 1.0  # the first backoff: full jitter up to the base


async def test_counts_each_failed_attempt_before_success() -> None:
    gateway = Gateway(error(500), error(429), httpx.ReadTimeout("slow"), image_answer())
    result = succeeded(await run(gateway))
    assert result.attempts == 4
    assert result.retries == [ErrorType.SERVER_ERROR, ErrorType.RATE_LIMITED, ErrorType.TIMEOUT]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        (
            {"Retry-After": format_datetime(datetime.fromtimestamp(FakeClock.EPOCH + 12, UTC), usegmt=True)},
            12.0,
        ),
        ({"retry-after-ms": "2500"}, 2.5),
    ],
)
async def test_429_waits_as_long_as_retry_after_says(headers: dict[str, str], wait: float) -> None:
    clock = FakeClock()
    result = succeeded(await run(Gateway(error(429, headers=headers), image_answer()), clock=clock))
    assert clock.sleeps == [pytest.approx(wait)]
    assert result.retries == [ErrorType.RATE_LIMITED]


async def test_a_wait_longer_than_the_deadline_returns_the_message_instead_of_sleeping() -> None:
    clock = FakeClock()
    gateway = Gateway(error(429, "slow down", {"Retry-After": "100"}), image_answer())
    result = failed(await run(gateway, clock=clock, seconds=20.0))
    assert result.error.type is ErrorType.RATE_LIMITED
    assert result.error.retryable
    assert result.retry_after == pytest.approx(100.0)
    assert (result.attempts, result.retries) == (1, [])
    assert clock.sleeps == []
    assert len(gateway.posts) == 1


async def test_gives_up_after_max_attempts_with_capped_full_jitter_backoff() -> None:
    clock = FakeClock()
    gateway = Gateway(error(503))
    result = failed(await run(gateway, clock=clock, max_attempts=6, backoff_base=1.0, backoff_cap=3.0))
    assert result.attempts == 6
    assert len(gateway.posts) == 6
    assert result.retries == [ErrorType.SERVER_ERROR] * 5
    assert len(clock.sleeps) == 5
    assert all(0.0 <= wait <= min(3.0, 2.0**n) for n, wait in enumerate(clock.sleeps))
    assert result.retry_after is not None
    assert 0.0 <= result.retry_after <= 3.0


async def test_unreadable_answers_are_retried_only_max_bad_response_retries_times() -> None:
    clock = FakeClock()
    gateway = Gateway(httpx.Response(200, content=b'{"choices": [', headers={"content-type": "text/plain"}))
    result = failed(await run(gateway, clock=clock, max_bad_response_retries=2))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "not JSON" in result.error.message
    assert not result.error.retryable  # permanent: a redelivery would pay for the same answer
    assert (result.attempts, result.retry_after) == (3, None)
    assert result.retries == [ErrorType.BAD_RESPONSE] * 2


async def test_no_time_left_means_no_call() -> None:
    gateway = Gateway(image_answer())
    result = failed(await run(gateway, seconds=3.0, min_attempt_seconds=5.0))
    assert result.error.type is ErrorType.TIMEOUT
    assert (result.attempts, result.retry_after) == (0, 0.0)
    assert gateway.posts == []


@pytest.mark.parametrize(("seconds", "read"), [(300.0, 120.0), (50.0, 50.0)])
async def test_each_attempt_timeout_is_bounded_by_the_deadline(seconds: float, read: float) -> None:
    gateway = Gateway(image_answer())
    succeeded(await run(gateway, seconds=seconds, read_timeout=120.0, connect_timeout=10.0))
    timeout = gateway.posts[0].extensions["timeout"]
    assert timeout["read"] == pytest.approx(read)
    assert timeout["connect"] == 10.0


async def test_an_attempt_that_outlives_the_deadline_is_cut_short() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    settings = GatewayConfig(base_url=BASE, api_key=API_KEY, min_attempt_seconds=0.0, max_attempts=1)
    async with GatewayClient(settings, transport=httpx.MockTransport(hang), clock=FakeClock()) as client:
        result = failed(await client.generate(JOB, [], Deadline(lambda: 50.0)))
    assert result.error.type is ErrorType.TIMEOUT
    assert result.retry_after is not None


async def test_input_images_go_inline_and_unreadable_ones_fail_before_any_call() -> None:
    gateway = Gateway(image_answer())
    succeeded(await run(gateway, inputs=[InputImage(data=JPEG)]))
    parts = json.loads(gateway.posts[0].content)["messages"][0]["content"]
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    result = failed(await run(Gateway(image_answer()), inputs=[InputImage(data=b"text")]))
    assert result.error.type is ErrorType.INPUT_ERROR
    assert result.attempts == 0


async def test_url_images_are_downloaded_without_the_key_for_other_hosts() -> None:
    answer = completion("![a](https://cdn.example/a.png) ![b](https://gw.example/files/b.jpg)")
    files = {
        "https://cdn.example/a.png": httpx.Response(200, content=PNG),
        "https://gw.example/files/b.jpg": httpx.Response(200, content=JPEG),
    }
    gateway = Gateway(httpx.Response(200, json=answer), files=files)
    result = succeeded(await run(gateway))
    assert [image.ext for image in result.images] == ["png", "jpg"]
    assert "authorization" not in gateway.gets[0].headers
    assert gateway.gets[1].headers["authorization"] == f"Bearer {API_KEY}"  # the gateway's own host


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield PNG
    for _ in range(total // 64):
        yield b"\x00" * 64


@pytest.mark.parametrize(
    "file",
    [
        httpx.Response(200, content=PNG + b"\x00" * 200),  # declares its length
        httpx.Response(200, content=_chunks(1000)),  # streamed, no length
        httpx.Response(404, content=b"gone"),
        httpx.Response(200, content=b"<html>not an image</html>"),
    ],
)
async def test_bad_or_oversized_downloads_are_bad_responses(file: httpx.Response) -> None:
    answer = completion("![a](https://cdn.example/a.png?token=secret)")
    gateway = Gateway(
        httpx.Response(200, json=answer), files={"https://cdn.example/a.png?token=secret": file}
    )
    result = failed(await run(gateway, max_image_bytes=128, max_bad_response_retries=0))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "https://cdn.example/a.png" in result.error.message
    assert "secret" not in result.error.message


async def test_a_paid_answer_is_not_paid_again_when_its_download_keeps_failing() -> None:
    answer = httpx.Response(200, json=completion("https://cdn.example/a.webp"))
    gateway = Gateway(answer, files={"https://cdn.example/a.webp": httpx.ConnectError("refused")})
    clock = FakeClock()
    result = failed(await run(gateway, clock=clock, max_attempts=6, price_per_image_usd=0.05))
    assert result.error.type is ErrorType.SERVER_ERROR
    assert "downloading https://cdn.example/a.webp" in result.error.message
    assert "paid for" in result.error.message
    assert not result.error.retryable  # a redelivery would pay again
    assert (len(gateway.posts), len(gateway.gets), result.attempts) == (1, 3, 1)
    assert result.cost_usd == 0.05
    assert len(clock.sleeps) == 2  # the download alone waited and tried again
    assert result.error.said is not None
    assert result.error.said.model == "google/gemini-2.5-flash-image"  # kept for the failed record


async def test_a_download_that_may_recover_is_retried_alone() -> None:
    url = "https://cdn.example/a.png"
    responses = iter([httpx.Response(503), httpx.ReadTimeout("slow"), httpx.Response(200, content=PNG)])

    def flaky(request: httpx.Request) -> httpx.Response:
        step = next(responses)
        if isinstance(step, Exception):
            raise step
        return step

    gateway = Gateway(httpx.Response(200, json=completion(f"![a]({url})")))
    transport = httpx.MockTransport(
        lambda request: flaky(request) if request.method == "GET" else gateway(request)
    )
    clock = FakeClock()
    settings = GatewayConfig(base_url=BASE, api_key=API_KEY)
    client = GatewayClient(
        settings, transport=transport, clock=clock, rng=random.Random(3), resolver=public_resolver
    )
    async with client:
        result = succeeded(await client.generate(JOB, [], Deadline.after(300.0, clock)))
    assert [image.data for image in result.images] == [PNG]
    assert (len(gateway.posts), result.attempts) == (1, 1)


@pytest.mark.parametrize(
    "content",
    [
        "![a](https://cdn.example/gone.png)",  # 404: not worth another try
        "![x](data:image/png;base64,AAAA)",  # an inline image that does not decode
    ],
)
async def test_an_answer_whose_image_cannot_be_kept_fails_at_once_with_its_price(content: str) -> None:
    gateway = Gateway(
        httpx.Response(200, json=completion(content)),
        files={"https://cdn.example/gone.png": httpx.Response(404)},
    )
    result = failed(await run(gateway))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert not result.error.retryable
    assert (len(gateway.posts), len(gateway.gets) <= 1, result.cost_usd) == (1, True, 0.039)


async def test_the_key_never_appears_even_when_echoed() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return error(401, f"invalid token {request.headers['authorization']} for {API_KEY}")

    result = failed(await run(Gateway(echo)))
    assert "[redacted]" in result.error.message
    assert API_KEY not in repr(GatewayConfig(base_url=BASE, api_key=API_KEY))


@pytest.mark.parametrize("base", ["gw.example/v1", "ftp://gw.example", "https://"])
def test_config_rejects_a_base_url_that_is_no_http_url(base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        GatewayConfig(base_url=base, api_key=API_KEY)


async def test_the_semaphore_bounds_calls_in_flight() -> None:
    in_flight = 0
    peak = 0
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return image_answer()

    clock = FakeClock()
    settings = GatewayConfig(base_url=BASE, api_key=API_KEY, max_concurrency=3)
    async with GatewayClient(settings, transport=httpx.MockTransport(slow), clock=clock) as client:
        jobs = [
            asyncio.create_task(client.generate(JOB, [], Deadline.after(300.0, clock))) for _ in range(10)
        ]
        for _ in range(50):
            await asyncio.sleep(0)
        assert in_flight == 3
        release.set()
        results = await asyncio.gather(*jobs)
    assert peak == 3
    assert all(isinstance(result, Success) for result in results)
