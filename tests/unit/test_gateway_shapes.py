"""Answers and errors as real gateways send them, each fixture written from its provider's documentation
or source (named above it), and what the pipeline makes of each."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gateway_cases import PNG, WEBP, data_url

from nanobanana.errors import NO_IMAGE_ADVICE, ErrorType, PipelineError, Said
from nanobanana.messages import Work
from nanobanana.responses import classify_http_error, parse_response
from nanobanana.results import record

NOW = 1_700_000_000.0

# OpenRouter, https://openrouter.ai/docs/api/reference/errors-and-debugging, "Moderation Errors": a 403
# whose error.metadata holds `reasons`, `flagged_input` (truncated to 100 characters), `provider_name`,
# `model_slug`.
OPENROUTER_MODERATION = {
    "error": {
        "code": 403,
        "message": "google/gemini-2.5-flash-image requires moderation on Google. Your input was flagged for "
        '"violence/graphic". No credits were charged.',
        "metadata": {
            "reasons": ["violence/graphic"],
            "flagged_input": "a photorealistic crime scene with...",
            "provider_name": "Google",
            "model_slug": "google/gemini-2.5-flash-image",
        },
    }
}

# new-api (QuantumNous/new-api), relay/channel/gemini/relay-gemini.go GeminiChatHandler: a Gemini answer
# without candidates and with promptFeedback.blockReason becomes NewOpenAIError(..., ErrorCodePromptBlocked,
# http.StatusBadRequest); types/error.go ToOpenAIError gives {message, type, param, code}.
NEWAPI_PROMPT_BLOCKED = {
    "error": {
        "message": "request blocked by Gemini API: PROHIBITED_CONTENT",
        "type": "prompt_blocked",
        "param": "",
        "code": "prompt_blocked",
    }
}

# OpenRouter, https://openrouter.ai/docs/api/reference/errors-and-debugging ("any error occurred while the
# LLM is producing the output will be emitted in the response body") and api-reference/streaming
# ("Stream Error Handling": HTTP 200, a top-level `error` beside choices with finish_reason "error").
OPENROUTER_ERROR_IN_200 = {
    "id": "gen-1764300000-abc",
    "object": "chat.completion",
    "created": 1764300000,
    "model": "google/gemini-2.5-flash-image",
    "provider": "Google",
    "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error"},
    ],
}

# one-api (songquanpeng/one-api), relay/adaptor/gemini/main.go responseGeminiChat2OpenAI: the message
# content is the first part's text only; inlineData (the image) is dropped, finish_reason "stop".
ONEAPI_TEXT_ONLY = {
    "id": "chatcmpl-oneapi",
    "object": "chat.completion",
    "created": 1764300000,
    "model": "gemini-2.5-flash-image",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Here is a banana on the Moon, as you asked."},
            "finish_reason": "stop",
        }
    ],
}

# LiteLLM, litellm/litellm_core_utils/core_helpers.py process_response_headers: the upstream's headers
# come back prefixed `llm_provider-`; its error bodies carry `code` as a string
# (litellm/proxy/_types.py ProxyException).
LITELLM_429_BODY = {
    "error": {
        "message": "litellm.RateLimitError: GeminiException - Resource has been exhausted",
        "type": "throttling_error",
        "param": None,
        "code": "429",
    }
}

# Google Gemini API, https://ai.google.dev/gemini-api/docs/troubleshooting (429 RESOURCE_EXHAUSTED) with
# the google.rpc.RetryInfo detail (https://cloud.google.com/apis/design/errors, "Error details").
GOOGLE_429 = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "rpm"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "56s"},
        ],
    }
}

# Python's http.server (Lib/http/server.py, DEFAULT_ERROR_MESSAGE) answering a POST it has no handler for.
HTTP_SERVER_501 = b"""<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: 501</p>
        <p>Message: Unsupported method ('POST').</p>
    </body>
</html>
"""


def classify(status: int, body: Any, headers: dict[str, str] | None = None) -> PipelineError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify_http_error(status, raw, headers or {"content-type": "application/json"}, now=NOW)


def failure(payload: Any) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        parse_response(payload)
    return caught.value


def test_openrouter_moderation_403_is_content_filtered_with_its_reasons() -> None:
    error = classify(403, OPENROUTER_MODERATION)
    assert error.type is ErrorType.CONTENT_FILTERED
    assert not error.retryable
    assert "violence/graphic" in error.message
    assert "a photorealistic crime scene" in error.message
    assert "rephrase the prompt" in error.message


@pytest.mark.parametrize("code", ["prompt_blocked", "sensitive_words_detected"])
def test_newapi_blocks_are_content_filtered(code: str) -> None:
    body = json.loads(json.dumps(NEWAPI_PROMPT_BLOCKED).replace("prompt_blocked", code))
    error = classify(400, body)
    assert error.type is ErrorType.CONTENT_FILTERED
    assert "request blocked by Gemini API: PROHIBITED_CONTENT" in error.message


def test_a_plain_403_stays_authentication() -> None:
    assert classify(403, {"error": {"code": 403, "message": "Forbidden"}}).type is ErrorType.AUTHENTICATION


def test_an_error_inside_a_200_keeps_the_providers_message_and_what_was_said() -> None:
    error = failure(OPENROUTER_ERROR_IN_200)
    assert error.type is ErrorType.SERVER_ERROR
    assert error.retryable
    assert "Provider disconnected unexpectedly" in error.message
    assert error.said == Said(model="google/gemini-2.5-flash-image", finish_reason="error", text=None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": 429, "message": "slow down"}, ErrorType.RATE_LIMITED),
        ({"code": "429", "message": "slow down"}, ErrorType.RATE_LIMITED),
        ({"code": "prompt_blocked", "message": "blocked"}, ErrorType.CONTENT_FILTERED),
        ("overloaded", ErrorType.SERVER_ERROR),
        ({"message": "upstream failed", "code": "E42"}, ErrorType.SERVER_ERROR),
    ],
)
def test_an_error_object_without_choices_is_typed_by_its_code(error: Any, expected: ErrorType) -> None:
    found = failure({"error": error, "model": "m"})
    assert found.type is expected
    assert found.said is not None and found.said.model == "m"


def test_finish_reason_error_without_an_error_object_is_a_server_error() -> None:
    payload = {"choices": [{"message": {"content": None}, "finish_reason": "error"}]}
    assert failure(payload).type is ErrorType.SERVER_ERROR


def test_a_gateway_that_drops_images_gets_advice_about_the_gateway_not_the_prompt() -> None:
    error = failure(ONEAPI_TEXT_ONLY)
    assert error.type is ErrorType.CONTENT_FILTERED
    assert error.advice == NO_IMAGE_ADVICE
    assert "gateway table" in error.message
    assert error.said == Said("gemini-2.5-flash-image", "stop", "Here is a banana on the Moon, as you asked.")


@pytest.mark.parametrize(
    "choice",
    [
        {"message": {"content": "I can't make that."}, "finish_reason": "content_filter"},
        {"message": {"content": None, "refusal": "I can't make that."}, "finish_reason": "stop"},
    ],
)
def test_a_refusal_keeps_the_advice_to_rephrase(choice: dict[str, Any]) -> None:
    error = failure({"model": "m", "choices": [choice]})
    assert error.type is ErrorType.CONTENT_FILTERED
    assert error.message.endswith("rephrase the prompt")
    assert error.said is not None and error.said.text == "I can't make that."


def test_litellm_relayed_retry_after_header_is_honoured() -> None:
    headers = {"content-type": "application/json", "llm_provider-retry-after": "7"}
    error = classify(429, LITELLM_429_BODY, headers)
    assert error.type is ErrorType.RATE_LIMITED
    assert error.retry_after == 7.0
    assert "Resource has been exhausted" in error.message


def test_google_retry_info_in_a_429_body_is_honoured_as_is_or_quoted_by_a_gateway() -> None:
    assert classify(429, GOOGLE_429).retry_after == 56.0
    quoted = {"error": {"message": f"litellm.RateLimitError: {json.dumps(GOOGLE_429)}", "code": "429"}}
    assert classify(429, quoted).retry_after == 56.0
    # a header still wins over the body
    assert classify(429, GOOGLE_429, {"Retry-After": "3"}).retry_after == 3.0


@pytest.mark.parametrize("status", [200, 404, 405, 500, 501])
def test_a_web_page_where_json_belongs_is_no_gateway(status: int) -> None:
    error = classify(status, HTTP_SERVER_501, {"content-type": "text/html;charset=utf-8"})
    assert error.type is ErrorType.BAD_RESPONSE
    assert "not an OpenAI-compatible gateway" in error.message
    assert "ApiBaseUrl" in error.message
    assert error.retry_after == 300.0
    assert classify(status, HTTP_SERVER_501, {}).type is ErrorType.BAD_RESPONSE  # sniffed, no header


@pytest.mark.parametrize(("status", "expected"), [(502, ErrorType.SERVER_ERROR), (504, ErrorType.TIMEOUT)])
def test_a_proxys_page_for_an_absent_gateway_keeps_its_status(status: int, expected: ErrorType) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>\n\n</body></html>"
    error = classify(status, page, {"content-type": "text/html"})
    assert error.type is expected
    assert "web page" not in error.message


# LiteLLM, litellm/llms/vertex_ai/gemini/vertex_and_google_ai_studio_gemini.py: every inlineData image goes
# to message.images in part order (_extract_image_response_from_parts), thought parts included and
# unmarked, and each thought part is a thinking block with its text (_extract_thinking_blocks_from_parts):
# an image thought part gives an empty one. Gemini 3 image models think in draft images
# (https://ai.google.dev/gemini-api/docs/image-generation, "Thinking process").
def test_litellm_thought_images_are_skipped_and_the_final_image_comes_first() -> None:
    message = {
        "role": "assistant",
        "content": "Here is the final image.",
        "reasoning_content": "Composing the scene",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Composing the scene"},
            {"type": "thinking", "thinking": ""},
        ],
        "images": [
            {"type": "image_url", "image_url": {"url": data_url(WEBP, "image/webp")}, "index": 0},
            {"type": "image_url", "image_url": {"url": data_url(PNG)}, "index": 0},
        ],
    }
    answer = parse_response({"model": "gemini-3-pro-image-preview", "choices": [{"message": message}]})
    assert [image.ext for image in answer.images] == ["png"]


def test_parts_marked_as_thoughts_are_skipped() -> None:
    # Gemini's part field `thought: true` (https://ai.google.dev/api/caching#Part), kept by gateways that
    # pass parts through as content parts or image items.
    draft = {"type": "image_url", "image_url": {"url": data_url(WEBP, "image/webp")}, "thought": True}
    final = {"type": "image_url", "image_url": {"url": data_url(PNG)}}
    message = {
        "content": [{"type": "text", "text": "plan", "thought": True}, draft, final],
        "images": [draft],
    }
    answer = parse_response({"choices": [{"message": message}]})
    assert [image.ext for image in answer.images] == ["png"]
    assert answer.text is None


def test_a_failed_record_keeps_what_the_gateway_said() -> None:
    work = Work(id="j1", batch="b", upload="u", source={}, job=None)
    result = record(work, error=failure(ONEAPI_TEXT_ONLY), attempts=1)
    assert result["status"] == "failed"
    assert result["model"] == "gemini-2.5-flash-image"
    assert result["finish_reason"] == "stop"
    assert result["text"] == "Here is a banana on the Moon, as you asked."
    assert result["warnings"] == []
