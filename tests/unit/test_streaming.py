"""Streamed answers (server-sent events) assembled into one answer, and the client reading them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from gateway_cases import PNG, data_url
from test_client import BASE, Gateway, failed, run, succeeded

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.responses import parse_response
from nanobanana.streaming import assemble, events, is_event_stream


def sse(*chunks: Any, done: bool = True) -> bytes:
    """An event stream as gateways write it: one `data:` line per chunk, a blank line after each."""
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "model": "google/gemini-2.5-flash-image",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


# OpenRouter, https://openrouter.ai/docs/features/multimodal/image-generation ("Streaming Image
# Generation": images arrive in `choices[0].delta.images`) and api-reference/streaming (`: OPENROUTER
# PROCESSING` comments keep the connection open).
OPENROUTER_IMAGE_STREAM = b": OPENROUTER PROCESSING\n\n" + sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Here is "}),
    chunk({"content": "your banana."}),
    chunk({"images": [{"type": "image_url", "image_url": {"url": data_url(PNG)}}]}),
    chunk({}, "stop", usage={"completion_tokens": 1290}),
)

# new-api / one-api stream Gemini's inlineData as a markdown data URL in delta.content
# (QuantumNous/new-api relay/channel/gemini/markdown_image.go), which a gateway may split over chunks.
_MARKDOWN = f"Done! ![image]({data_url(PNG)})"
NEWAPI_MARKDOWN_STREAM = sse(
    chunk({"role": "assistant", "content": _MARKDOWN[:20]}),
    chunk({"content": _MARKDOWN[20:50]}),
    chunk({"content": _MARKDOWN[50:]}, "stop"),
)

# OpenRouter, https://openrouter.ai/docs/api-reference/streaming, "Stream Error Handling": after the
# stream started, an error is a chunk with a top-level `error` and finish_reason "error".
OPENROUTER_MIDSTREAM_ERROR = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk(
        {"content": ""},
        "error",
        provider="Google",
        error={"code": "server_error", "message": "Provider disconnected unexpectedly"},
    ),
)


def test_openrouter_image_stream_is_one_answer() -> None:
    answer = parse_response(assemble(OPENROUTER_IMAGE_STREAM.splitlines()))
    assert [image.data for image in answer.images] == [PNG]
    assert answer.text == "Here is your banana."
    assert answer.finish_reason == "stop"
    assert answer.model == "google/gemini-2.5-flash-image"


def test_a_markdown_image_split_over_chunks_is_read_whole() -> None:
    answer = parse_response(assemble(NEWAPI_MARKDOWN_STREAM.splitlines()))
    assert [image.data for image in answer.images] == [PNG]
    assert answer.text == "Done!"


def test_a_midstream_error_keeps_the_providers_message() -> None:
    with pytest.raises(PipelineError) as caught:
        parse_response(assemble(OPENROUTER_MIDSTREAM_ERROR.splitlines()))
    assert caught.value.type is ErrorType.SERVER_ERROR
    assert "Provider disconnected unexpectedly" in caught.value.message
    assert caught.value.said is not None and caught.value.said.finish_reason == "error"


def test_events_follow_the_sse_format() -> None:
    lines = ["event: message", 'data:{"a":', "data: 1}", "", ": comment", "id: 7", "", "data: x", "data: y"]
    assert list(events(lines)) == ['{"a":\n1}', "x\ny"]
    assert list(events([b"data: [DONE]\r\n", b"\r\n", b"data: after\n"])) == ["[DONE]", "after"]


def test_nothing_after_done_is_read_and_parts_streams_and_refusals_assemble() -> None:
    stream = sse(
        chunk({"content": [{"type": "image_url", "image_url": {"url": data_url(PNG)}}]}),
        chunk({"refusal": "no"}, "stop"),
    ) + sse(chunk({"content": "ignored"}))
    completion = assemble(stream.splitlines())
    message = completion["choices"][0]["message"]
    assert message["content"][1]["image_url"]["url"] == data_url(PNG)
    assert message["refusal"] == "no"
    assert "ignored" not in json.dumps(completion)


@pytest.mark.parametrize("data", [b"data: {not json\n\n", b"data: [1, 2]\n\n"])
def test_an_event_that_is_no_json_object_is_a_bad_response(data: bytes) -> None:
    with pytest.raises(PipelineError) as caught:
        assemble(data.splitlines())
    assert caught.value.type is ErrorType.BAD_RESPONSE


def test_a_stream_without_choices_has_none() -> None:
    assert assemble(sse(done=False).splitlines())["choices"] == []


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("text/event-stream", True), ("text/event-stream; charset=utf-8", True), ("application/json", False)],
)
def test_is_event_stream(kind: str, expected: bool) -> None:
    assert is_event_stream({"Content-Type": kind}) is expected


def stream_answer(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


async def test_the_client_asks_for_a_stream_when_configured_and_reads_it() -> None:
    gateway = Gateway(stream_answer(OPENROUTER_IMAGE_STREAM))
    result = succeeded(await run(gateway, stream=True))
    assert [image.data for image in result.images] == [PNG]
    assert result.text == "Here is your banana."
    assert json.loads(gateway.posts[0].content)["stream"] is True
    plain = Gateway(stream_answer(NEWAPI_MARKDOWN_STREAM))  # a gateway that streams unasked
    assert succeeded(await run(plain)).attempts == 1
    assert "stream" not in json.loads(plain.posts[0].content)


async def test_a_midstream_error_is_retried_as_a_server_error() -> None:
    gateway = Gateway(stream_answer(OPENROUTER_MIDSTREAM_ERROR), stream_answer(OPENROUTER_IMAGE_STREAM))
    result = succeeded(await run(gateway, stream=True))
    assert result.retries == [ErrorType.SERVER_ERROR]
    assert BASE in str(gateway.posts[0].url)


async def test_a_stream_over_the_answer_cap_is_a_bad_response() -> None:
    result = failed(await run(Gateway(stream_answer(OPENROUTER_IMAGE_STREAM)), max_answer_bytes=1000))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "over 1000 bytes" in result.error.message
