"""The real GatewayClient against the stand-in gateway over 127.0.0.1: every answer style, retries on
real HTTP failures (status codes, resets, truncated bodies), typed permanent failures and concurrency.

Backoff sleeps are recorded, not slept, so the retries cost no wall time."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Any

import pytest
from PIL import Image

from nanobanana.client import Failure, GatewayClient, GatewayConfig, InputImage, Success
from nanobanana.config import Dialect
from nanobanana.errors import ErrorType
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline, SystemClock
from nanobanana_cli.standin import QUOTA_FAULT, Fault, StandInGateway, Style

KEY = "sk-standin-integration"
STYLES: tuple[Style, ...] = ("openrouter", "newapi", "parts", "raw", "url")


class InstantClock(SystemClock):
    """Real time for timeouts and deadlines, but backoff waits are recorded instead of slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def generate_all(
    gw: StandInGateway,
    prompts: Sequence[str],
    *,
    clock: InstantClock | None = None,
    inputs: Sequence[InputImage] = (),
    job: dict[str, Any] | None = None,
    api_key: str = KEY,
    **config: Any,
) -> list[Success | Failure]:
    """One client, one job per prompt, all at once."""
    clock = clock or InstantClock()
    settings = GatewayConfig(base_url=gw.base_url, api_key=api_key, **config)
    async with GatewayClient(settings, clock=clock) as client:
        calls = [
            client.generate(
                parse_job({"id": f"j{i}", "prompt": prompt, **(job or {})}),
                inputs,
                Deadline.after(120.0, clock),
            )
            for i, prompt in enumerate(prompts)
        ]
        return list(await asyncio.gather(*calls))


async def generate(gw: StandInGateway, prompt: str = "a red fox", **kwargs: Any) -> Success | Failure:
    (result,) = await generate_all(gw, [prompt], **kwargs)
    return result


def succeeded(result: Success | Failure) -> Success:
    assert isinstance(result, Success), result
    return result


def failed(result: Success | Failure) -> Failure:
    assert isinstance(result, Failure), result
    return result


@pytest.mark.parametrize("dialect", ["openrouter", "newapi"])
@pytest.mark.parametrize("style", STYLES)
async def test_every_style_and_dialect_yields_the_drawn_pngs(style: Style, dialect: Dialect) -> None:
    with StandInGateway(api_key=KEY, style=style, n_images=2) as gw:
        result = succeeded(await generate(gw, job={"aspect_ratio": "16:9"}, dialect=dialect))
        (request,) = gw.requests
    assert result.attempts == 1
    assert result.retries == []
    assert result.finish_reason == "stop"
    assert result.text and result.text.startswith("Here is your image")
    assert [image.mime for image in result.images] == ["image/png", "image/png"]
    assert result.images[0].data != result.images[1].data
    assert Image.open(io.BytesIO(result.images[0].data)).size == (256, 144)
    assert ("modalities" in request) == (dialect == "openrouter")


async def test_an_input_image_reaches_the_drawing() -> None:
    blue = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 0, 255)).save(blue, "PNG")
    with StandInGateway(api_key=KEY) as gw:
        edited = succeeded(await generate(gw, "paint it", inputs=[InputImage(data=blue.getvalue())]))
        plain = succeeded(await generate(gw, "paint it"))
    picture = Image.open(io.BytesIO(edited.images[0].data)).convert("RGB")
    assert picture.getpixel((20, picture.height - 20)) == (0, 0, 255)
    assert edited.images[0].data != plain.images[0].data


@pytest.mark.parametrize(
    ("faults", "retried_as"),
    [
        ([Fault(status=429, retry_after="0")], [ErrorType.RATE_LIMITED]),
        ([Fault(status=500)] * 3, [ErrorType.SERVER_ERROR] * 3),
        ([Fault(kind="reset")], [ErrorType.SERVER_ERROR]),
        ([Fault(kind="truncate")], [ErrorType.BAD_RESPONSE]),
        ([Fault(status=503, retry_after_ms=0), Fault(kind="reset")], [ErrorType.SERVER_ERROR] * 2),
    ],
)
async def test_transient_failures_are_retried_to_success(
    faults: list[Fault], retried_as: list[ErrorType]
) -> None:
    clock = InstantClock()
    with StandInGateway(api_key=KEY) as gw:
        gw.script(*faults)
        result = succeeded(await generate(gw, clock=clock))
        calls = gw.calls_for("a red fox")
    assert result.retries == retried_as
    assert result.attempts == calls == len(faults) + 1
    assert len(clock.sleeps) == len(faults)
    assert len(result.images) == 1


async def test_a_500_streak_longer_than_the_attempts_fails_retryably() -> None:
    with StandInGateway(api_key=KEY) as gw:
        gw.script(*[Fault(status=500)] * 5)
        result = failed(await generate(gw, max_attempts=3))
        calls = gw.calls_for("a red fox")
    assert calls == result.attempts == 3
    assert result.error.type == ErrorType.SERVER_ERROR
    assert result.error.status_code == 500
    assert result.error.retryable
    assert result.retry_after is not None


@pytest.mark.parametrize(
    ("fault", "error_type", "status_code"),
    [
        (Fault(kind="refuse"), ErrorType.CONTENT_FILTERED, None),
        (Fault(kind="text"), ErrorType.CONTENT_FILTERED, None),
        (QUOTA_FAULT, ErrorType.INSUFFICIENT_BALANCE, 403),
        (Fault(status=400), ErrorType.CLIENT_ERROR, 400),
    ],
)
async def test_permanent_failures_are_not_retried(
    fault: Fault, error_type: ErrorType, status_code: int | None
) -> None:
    with StandInGateway(api_key=KEY, error_style="newapi") as gw:
        gw.script(fault)
        result = failed(await generate(gw))
        calls = len(gw.requests)
    assert calls == result.attempts == 1
    assert result.error.type == error_type
    assert result.error.status_code == status_code
    assert not result.error.retryable
    assert result.retry_after is None


async def test_a_refusal_by_directive_is_content_filtered() -> None:
    with StandInGateway(api_key=KEY) as gw:
        result = failed(await generate(gw, "something forbidden [[refuse]]"))
    assert result.error.type == ErrorType.CONTENT_FILTERED
    assert result.attempts == 1


async def test_a_wrong_key_is_an_authentication_failure() -> None:
    with StandInGateway(api_key=KEY) as gw:
        result = failed(await generate(gw, api_key="sk-wrong"))
    assert result.error.type == ErrorType.AUTHENTICATION
    assert result.error.status_code == 401
    assert result.attempts == 1
    assert "sk-wrong" not in result.error.message


async def test_ten_slow_jobs_run_concurrently_once_each() -> None:
    prompts = [f"concurrent job {i}" for i in range(10)]
    with StandInGateway(api_key=KEY, latency=0.2) as gw:
        results = [succeeded(result) for result in await generate_all(gw, prompts, max_concurrency=10)]
        calls = [gw.calls_for(prompt) for prompt in prompts]
    assert [result.attempts for result in results] == [1] * 10
    assert calls == [1] * 10
    assert len({result.images[0].data for result in results}) == 10
