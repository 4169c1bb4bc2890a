"""Reading answers in every shape of the contract, and error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gateway_cases import API_KEY, JPEG, PNG, WEBP, b64, completion, data_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.responses import Answer, classify_http_error, parse_response

NOW = 1_700_000_000.0


def failure(payload: Any) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        parse_response(payload)
    return caught.value


# Shape 1: new-api / one-api, markdown data URLs in string content.
def test_markdown_data_url_in_string_content_with_text_around() -> None:
    answer = parse_response(completion(f"Here it is:\n![image]({data_url(PNG)})\nEnjoy!"))
    assert [image.data for image in answer.images] == [PNG]
    assert answer.images[0].mime == "image/png"
    assert answer.text == "Here it is:\n\nEnjoy!"
    assert answer.finish_reason == "stop"
    assert answer.model == "google/gemini-2.5-flash-image"
    assert answer.urls == ()


def test_several_markdown_images_keep_their_order_and_true_types() -> None:
    content = f"![a]({data_url(JPEG, 'image/png')}) and ![b]({data_url(WEBP)}) ![c]({data_url(PNG)})"
    answer = parse_response(completion(content))
    assert [image.ext for image in answer.images] == ["jpg", "webp", "png"]
    assert answer.text == "and"


def test_a_bare_data_url_in_text_is_an_image() -> None:
    answer = parse_response(completion(f"result: {data_url(PNG)} done"))
    assert [image.data for image in answer.images] == [PNG]
    assert answer.text == "result: done"


# Shape 2: OpenRouter, Vercel, LiteLLM: message.images.
def test_message_images_with_text_content() -> None:
    answer = parse_response(completion("A cat.", images=[data_url(PNG), data_url(JPEG)]))
    assert [image.ext for image in answer.images] == ["png", "jpg"]
    assert answer.text == "A cat."


def test_message_images_with_null_content_and_one_image_repeated() -> None:
    answer = parse_response(completion(None, images=[data_url(PNG)], finish_reason=None) | {"model": 3})
    assert len(answer.images) == 1
    assert answer.text is None
    assert answer.finish_reason is None
    assert answer.model is None
    repeated = parse_response(completion(f"![x]({data_url(PNG)})", images=[data_url(PNG)]))
    assert len(repeated.images) == 1  # the same image in content and in images is one image


# Shape 3: content as a list of parts.
@pytest.mark.parametrize("url", [data_url(PNG), b64(PNG), {"url": b64(PNG)}])
def test_content_parts_with_data_url_or_raw_base64(url: Any) -> None:
    image_url = url if isinstance(url, dict) else {"url": url}
    content = [
        {"type": "text", "text": "Sure."},
        {"type": "image_url", "image_url": image_url},
        "junk",
        {"x": 1},
    ]
    answer = parse_response(completion(content))
    assert [image.data for image in answer.images] == [PNG]
    assert answer.text == "Sure."


# Shape 4: http(s) URLs to download.
def test_image_urls_in_text_are_left_to_download() -> None:
    content = (
        "![img](https://cdn.example.com/a/out.png?sig=1) "
        "also https://files.example.com/b.JPG and see https://policies.example.com/terms"
    )
    answer = parse_response(completion(content))
    assert answer.images == ()
    assert answer.urls == ("https://cdn.example.com/a/out.png?sig=1", "https://files.example.com/b.JPG")
    assert answer.text == "also and see https://policies.example.com/terms"


def test_an_http_url_in_an_image_part_is_left_to_download() -> None:
    answer = parse_response(completion([{"type": "image_url", "image_url": {"url": "https://x.example/1"}}]))
    assert answer.urls == ("https://x.example/1",)


# Shape 5: no image.
@pytest.mark.parametrize(
    "reason", ["content_filter", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "NO_IMAGE", "SAFETY", "RECITATION"]
)
def test_refusal_finish_reasons_are_content_filtered(reason: str) -> None:
    error = failure(completion("", finish_reason=reason))
    assert error.type is ErrorType.CONTENT_FILTERED
    assert reason in error.message
    assert not error.retryable


def test_native_finish_reason_and_refusal_field_are_read() -> None:
    payload = completion(None, finish_reason="stop", native_finish_reason="IMAGE_SAFETY")
    payload["choices"][0]["message"]["refusal"] = "I can't draw that."
    error = failure(payload)
    assert error.type is ErrorType.CONTENT_FILTERED
    assert "IMAGE_SAFETY" in error.message
    assert "I can't draw that." in error.message


def test_text_without_an_image_is_content_filtered() -> None:
    error = failure(completion("I would rather describe it: a fluffy cat. See https://example.com/why"))
    assert error.type is ErrorType.CONTENT_FILTERED
    assert "fluffy cat" in error.message


def test_a_refusal_reason_does_not_hide_an_image_that_came() -> None:
    answer = parse_response(completion("", images=[data_url(PNG)], finish_reason="content_filter"))
    assert answer.finish_reason == "content_filter"
    assert len(answer.images) == 1


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {},
        {"choices": []},
        {"choices": ["x"]},
        {"choices": [{"message": "hi"}]},
        completion(""),
        completion(None),
        completion([{"type": "image_url", "image_url": {"url": 7}}]),
        completion("", images=[{"nope": True}]),  # type: ignore[list-item]
    ],
)
def test_unreadable_answers_are_bad_responses(payload: Any) -> None:
    error = failure(payload)
    assert error.type is ErrorType.BAD_RESPONSE
    assert error.retryable


@pytest.mark.parametrize(
    "content", ["![x](data:image/png;base64,!!!)", f"![x]({data_url(b'plain text, not an image')})"]
)
def test_an_image_that_does_not_decode_is_counted_as_paid_but_broken(content: str) -> None:
    answer = parse_response(completion(content))
    assert (answer.images, answer.urls, answer.paid_images) == ((), (), 1)
    assert answer.broken[0].startswith(
        ("image data that is not valid base64", "an image (24 bytes) is not a readable image")
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": 402, "message": "Insufficient credits"}, ErrorType.INSUFFICIENT_BALANCE),
        ({"code": 429, "message": "Rate limit exceeded"}, ErrorType.RATE_LIMITED),
        ({"code": 502, "message": "Provider returned error"}, ErrorType.SERVER_ERROR),
    ],
)
def test_an_error_inside_a_200_answer_is_typed_by_its_code(
    error: dict[str, Any], expected: ErrorType
) -> None:
    assert failure({"error": error}).type is expected
    in_choice = completion(None, finish_reason="error", error=error)
    assert failure(in_choice).type is expected


# The property: whatever JSON comes back, an Answer with an image or a PipelineError.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
_refs = st.sampled_from(
    [
        data_url(PNG),
        b64(PNG),
        data_url(b"junk"),
        "data:image/png;base64,",
        "https://cdn.example.com/x.png",
        "http://[::1",
        "https://[bad/x.png",
        "![a](data:image/png;base64,AAAA)",
        "",
    ]
) | st.text(max_size=30)
_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "image"])}
) | st.fixed_dictionaries(
    {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": _refs | _json}) | _refs | _json}
)
_content = (
    _refs
    | _json
    | st.lists(_parts | st.fixed_dictionaries({"type": st.just("text"), "text": _refs | _json}), max_size=3)
    | st.builds(lambda a, b: f"{a} ![i]({b}) {a}", st.text(max_size=10), _refs)
)
_message = st.fixed_dictionaries(
    {"content": _content},
    optional={"images": st.lists(_parts | _refs | _json, max_size=3) | _json, "refusal": _refs | _json},
)
_choice = st.fixed_dictionaries(
    {"message": _message | _json},
    optional={
        "finish_reason": st.sampled_from(["stop", "IMAGE_SAFETY", "content_filter", "error"]) | _json,
        "native_finish_reason": _json,
        "error": _json | st.fixed_dictionaries({"code": st.integers(), "message": _json}),
    },
)
_near_valid = st.fixed_dictionaries(
    {"choices": st.lists(_choice | _json, max_size=3) | _json},
    optional={"model": _json, "error": _json | st.fixed_dictionaries({"code": st.integers(300, 700)})},
)


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(_json | _near_valid)
def test_any_json_gives_an_image_or_a_pipeline_error(payload: Any) -> None:
    try:
        answer = parse_response(payload)
    except PipelineError:
        return
    assert isinstance(answer, Answer)
    assert answer.paid_images


# Error bodies.
def classify(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> PipelineError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify_http_error(status, raw, headers or {}, now=NOW, secrets=[API_KEY])


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, ErrorType.AUTHENTICATION),
        (403, ErrorType.AUTHENTICATION),
        (402, ErrorType.INSUFFICIENT_BALANCE),
        (408, ErrorType.TIMEOUT),
        (504, ErrorType.TIMEOUT),
        (429, ErrorType.RATE_LIMITED),
        (500, ErrorType.SERVER_ERROR),
        (502, ErrorType.SERVER_ERROR),
        (503, ErrorType.SERVER_ERROR),
        (400, ErrorType.CLIENT_ERROR),
        (404, ErrorType.CLIENT_ERROR),
        (422, ErrorType.CLIENT_ERROR),
        (302, ErrorType.BAD_RESPONSE),
    ],
)
def test_status_classes(status: int, expected: ErrorType) -> None:
    error = classify(status, {"error": {"message": "nope"}})
    assert error.type is expected
    assert error.status_code == status
    assert f"HTTP {status}" in error.message
    assert "nope" in error.message


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "You exceeded your current quota", "type": "forbidden"}},
        {"error": {"message": "Insufficient balance"}},
        {"error": {"message": "Key credit limit reached"}},
        {"error": {"message": "该令牌额度已用尽", "type": "new_api_error"}},
    ],
)
def test_a_403_about_money_is_insufficient_balance(body: Any) -> None:
    assert classify(403, body).type is ErrorType.INSUFFICIENT_BALANCE


@pytest.mark.parametrize("status", [400, 403, 429])
def test_new_api_insufficient_user_quota_is_insufficient_balance(status: int) -> None:
    body = {"error": {"message": "用户额度不足", "type": "new_api_error", "code": "insufficient_user_quota"}}
    error = classify(status, body)
    assert error.type is ErrorType.INSUFFICIENT_BALANCE
    assert "insufficient_user_quota" in error.message
    assert not error.retryable


def test_a_429_speaking_of_a_rate_quota_stays_rate_limited() -> None:
    body = {"error": {"code": 429, "message": "Quota exceeded for requests per minute"}}
    assert classify(429, body).type is ErrorType.RATE_LIMITED


def test_openrouter_error_quotes_the_provider() -> None:
    body = {
        "error": {
            "code": 502,
            "message": "Provider returned error",
            "metadata": {"raw": "overloaded", "provider_name": "Google"},
        }
    }
    error = classify(502, body)
    assert "Provider returned error" in error.message
    assert "Google: overloaded" in error.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"detail": "Not Found"}',
        b'{"message": "Unauthorized"}',
        b'{"error": "plain string"}',
        b"\xff\xfe not utf-8",
        b"",
    ],
)
def test_odd_error_bodies_still_make_a_readable_message(body: bytes) -> None:
    error = classify(500, body)
    assert error.type is ErrorType.SERVER_ERROR
    assert error.message.startswith("the gateway answered HTTP 500: ")
    assert "\n" not in error.detail


def test_the_key_never_appears_and_long_messages_are_clipped() -> None:
    body = {"error": {"message": f"Invalid key {API_KEY}, header Bearer abc.def " + "x" * 5000}}
    error = classify(401, body)
    assert API_KEY not in error.message
    assert "abc.def" not in error.message
    assert "[redacted]" in error.message
    assert len(error.detail) < 400


def test_an_unknown_key_format_is_redacted_when_given() -> None:
    error = classify_http_error(
        401, b'{"error":{"message":"bad key zz-XYZ-123"}}', {}, secrets=["zz-XYZ-123"]
    )
    assert "zz-XYZ-123" not in error.message


def test_retry_after_is_read_from_the_headers() -> None:
    assert classify(429, b"", {"Retry-After": "12"}).retry_after == 12.0
    assert classify(503, b"", {"retry-after-ms": "1500"}).retry_after == 1.5
    assert classify(500).retry_after is None
