"""Each gateway shape of the wild, as the stand-in's directives play it over 127.0.0.1, read by the real
client: streams, moderation blocks, errors inside a 200, web pages, retry hints, thought images, a
gateway that drops the aspect ratio and one that rejects the newapi dialect."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from nanobanana.errors import NO_IMAGE_ADVICE, ErrorType
from nanobanana_cli.standin import StandInGateway
from tests.integration.test_client_standin import KEY, InstantClock, failed, generate, generate_all, succeeded


def size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


@pytest.fixture
def gw() -> Any:
    with StandInGateway(api_key=KEY, style="newapi") as standin:
        yield standin


@pytest.mark.parametrize("style", ["openrouter", "newapi"])
async def test_a_stream_asked_for_or_not_is_read_as_one_answer(style: Any) -> None:
    with StandInGateway(api_key=KEY, style=style) as standin:
        asked = succeeded(await generate(standin, "a lighthouse", stream=True))
        unasked = succeeded(await generate(standin, "a lighthouse [[stream]]"))
        assert standin.requests[0]["stream"] is True and "stream" not in standin.requests[1]
    assert asked.images == unasked.images
    assert asked.text and asked.text.startswith("Here is your image of: a lighthouse")


@pytest.mark.parametrize(
    ("directive", "words"),
    [("[[moderated]]", "violence/graphic"), ("[[blocked]]", "request blocked by Gemini API")],
)
async def test_moderation_blocks_are_content_filtered(gw: StandInGateway, directive: str, words: str) -> None:
    result = failed(await generate(gw, f"a crime scene {directive}"))
    assert result.error.type is ErrorType.CONTENT_FILTERED
    assert words in result.error.message
    assert result.attempts == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_an_error_inside_a_200_keeps_the_providers_words(gw: StandInGateway, stream: bool) -> None:
    result = failed(await generate(gw, "a storm [[midstream]]", stream=stream, max_attempts=2))
    assert result.error.type is ErrorType.SERVER_ERROR
    assert "Provider disconnected unexpectedly" in result.error.message
    assert result.error.said is not None and result.error.said.finish_reason == "error"
    assert result.attempts == 2


async def test_a_gateway_that_answers_text_only_gets_advice_about_the_gateway(gw: StandInGateway) -> None:
    result = failed(await generate(gw, "a banana [[text]]"))
    assert result.error.advice == NO_IMAGE_ADVICE
    assert result.error.said is not None and result.error.said.text


async def test_a_web_page_is_no_gateway_and_is_called_once(gw: StandInGateway) -> None:
    results = await generate_all(gw, ["a cat [[html]]"] * 3, max_concurrency=1)
    errors = {failed(result).error.type for result in results}
    assert errors == {ErrorType.BAD_RESPONSE}
    assert gw.calls_for("[[html]]") == 1
    assert "not an OpenAI-compatible gateway" in failed(results[0]).error.message


@pytest.mark.parametrize(
    ("directive", "seconds"), [("[[retryinfo:40]]", 40.0), ("[[provider-retry:30]]", 30.0)]
)
async def test_retry_hints_of_google_and_litellm_are_honoured(
    gw: StandInGateway, directive: str, seconds: float
) -> None:
    clock = InstantClock()
    result = failed(await generate(gw, f"a queue {directive}", clock=clock, max_attempts=2, backoff_cap=1.0))
    assert result.error.type is ErrorType.RATE_LIMITED
    assert clock.sleeps == [seconds]


async def test_a_thought_image_is_skipped(gw: StandInGateway) -> None:
    thinking = succeeded(await generate(gw, "a fox [[thoughts]]"))
    plain = succeeded(await generate(gw, "a fox"))
    assert [image.data for image in thinking.images] == [image.data for image in plain.images]


async def test_auto_falls_back_when_the_newapi_dialect_is_rejected(gw: StandInGateway) -> None:
    result = succeeded(await generate(gw, "a wide fox [[strict]]", job={"aspect_ratio": "16:9"}))
    first, second = gw.requests
    assert "extra_body" in first and second["image_config"] == {"aspect_ratio": "16:9"}
    assert result.attempts == 2
    width, height = size(result.images[0].data)
    assert width > height
    assert result.warnings == []


async def test_a_dropped_aspect_ratio_is_a_warning(gw: StandInGateway) -> None:
    result = succeeded(await generate(gw, "a wide fox [[square]]", job={"aspect_ratio": "16:9"}))
    assert len(result.warnings) == 1
    assert "aspect_ratio 16:9" in result.warnings[0]
