"""Hostile answers: for any body, an Answer or the typed error, with the images it may hold capped."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from gateway_cases import PNG, b64, completion, data_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_client import Gateway, failed, run

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.responses import MAX_TEXT, Answer, parse_body, parse_response
from nanobanana.streaming import assemble


def many_images(count: int) -> dict[str, Any]:
    return completion("", images=[f"https://cdn.example/{n}.png" for n in range(count)])


def test_more_images_than_the_cap_is_a_bad_response_that_is_not_retried() -> None:
    with pytest.raises(PipelineError) as caught:
        parse_response(many_images(2000), max_images=10)
    assert caught.value.type is ErrorType.BAD_RESPONSE
    assert not caught.value.retryable
    assert "more than 10 images" in caught.value.message
    assert len(parse_response(many_images(10), max_images=10).urls) == 10


async def test_an_answer_with_2000_images_is_not_downloaded_nor_called_again() -> None:
    gateway = Gateway(httpx.Response(200, json=many_images(2000)))
    result = failed(await run(gateway))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert (len(gateway.posts), len(gateway.gets)) == (1, 0)


async def test_more_links_than_downloads_allowed_fails_before_any_download() -> None:
    gateway = Gateway(httpx.Response(200, json=many_images(5)))
    result = failed(await run(gateway, max_downloads_per_answer=4))
    assert "more than 4 to download" in result.error.message
    assert (len(gateway.posts), len(gateway.gets)) == (1, 0)


def test_an_inline_image_over_the_byte_cap_is_not_decoded() -> None:
    answer = parse_response(completion(f"![i]({data_url(PNG * 100)})"), max_image_bytes=1000)
    assert answer.images == ()
    assert answer.broken == ("an image over 1000 bytes (MaxImageBytes)",)


def test_megabytes_of_text_are_clipped_in_the_answer() -> None:
    answer = parse_response(completion(f"{'words ' * 1_000_000}![i]({data_url(PNG)})"))
    assert answer.text is not None and len(answer.text) == MAX_TEXT


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"choices": ' + b"[" * 100_000,
        b'{"choices": [{"message": {"content": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}}]}",
        b'{"model": ' + b"9" * 5000 + b"}",
        b"\xff\xfe garbage",
        b"",
    ],
)
async def test_bodies_too_deep_or_odd_for_the_json_parser_are_bad_responses(body: bytes) -> None:
    result = failed(await run(Gateway(httpx.Response(200, content=body)), max_bad_response_retries=0))
    assert result.error.type is ErrorType.BAD_RESPONSE


# The property: for any body, an Answer holding an image, or a PipelineError; nothing else escapes.
_fragments = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b'"choices"',
        b'"message"',
        b'"content"',
        b'"images"',
        b'"image_url"',
        b'"url"',
        b'"finish_reason"',
        b'"error"',
        b'"code"',
        b"429",
        b"null",
        b'"![i](',
        b"data:image/png;base64,",
        b64(PNG).encode(),
        b"https://cdn.example/a.png",
        b")",
        b'"',
        b"9" * 5000,
        b"1e999",
        b"\\ud800",
        b"[" * 2000,
    ]
)
_bodies = st.lists(_fragments, max_size=40).map(b"".join) | st.binary(max_size=200)


def _json_body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    _bodies
    | st.builds(
        _json_body,
        st.fixed_dictionaries(
            {
                "choices": st.lists(
                    st.fixed_dictionaries({"message": st.fixed_dictionaries({"content": st.text()})}),
                    max_size=3,
                )
            }
        ),
    )
)
def test_any_body_gives_an_answer_or_the_typed_error(body: bytes) -> None:
    try:
        answer = parse_body(body, max_images=3, max_image_bytes=1000)
    except PipelineError:
        return
    assert isinstance(answer, Answer)
    assert 1 <= answer.paid_images <= 3


async def test_bytes_that_only_start_like_a_png_are_not_kept_as_an_image() -> None:
    fake = b"\x89PNG\r\n\x1a\n" + b"<html>internal page</html>" * 100
    gateway = Gateway(httpx.Response(200, json=completion(f"![i]({data_url(fake)})")))
    result = failed(await run(gateway))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "not a readable image: a png cut short" in result.error.message
    assert (len(gateway.posts), result.error.retryable) == (1, False)


@pytest.mark.parametrize("unit", ["![](data:a", "![", "![a](https://x.example/a ", "data:image/"])
def test_text_that_made_the_image_patterns_backtrack_is_read_as_text(unit: str) -> None:
    """100 KB of these took the old markdown pattern hours (it backtracked); `make bench` shows the
    parse time per MB staying flat up to 8 MB."""
    with pytest.raises(PipelineError) as caught:
        parse_response(completion(unit * (100_000 // len(unit))))
    assert caught.value.type in (ErrorType.CONTENT_FILTERED, ErrorType.BAD_RESPONSE)


_event_lines = st.lists(
    st.sampled_from([b"data: ", b"data:", b": keep-alive", b"", b"[DONE]", b"event: x", b"\r"]).flatmap(
        lambda head: _bodies.map(lambda tail: head + tail.replace(b"\n", b" "))
    )
    | st.just(b"data: " + b"[" * 5000),
    max_size=12,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_event_lines)
def test_any_event_stream_gives_an_answer_or_the_typed_error(lines: list[bytes]) -> None:
    try:
        answer = parse_response(assemble(lines), max_images=3, max_image_bytes=1000)
    except PipelineError:
        return
    assert 1 <= answer.paid_images <= 3
