"""What the client learns about a gateway: the dialect `auto` needs, and that a URL is no gateway at all."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from gateway_cases import API_KEY, FakeClock
from test_client import Gateway, failed, image_answer, run, succeeded
from test_gateway_shapes import HTTP_SERVER_501

from nanobanana.client import GatewayClient, GatewayConfig, chat_completions_url
from nanobanana.errors import ErrorType
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline

WIDE = parse_job({"id": "w", "prompt": "a wide banana", "aspect_ratio": "16:9"})

# Google's answer when LiteLLM copies the newapi dialect's `extra_body` to the top of a generateContent
# request (https://ai.google.dev/api/generate-content: the body has no field `google`), as LiteLLM relays
# it: HTTP 400, the upstream's words inside its own message.
GOOGLE_UNKNOWN_NAME = {
    "error": {
        "message": "litellm.BadRequestError: GeminiException BadRequestError - "
        '{\n  "error": {\n    "code": 400,\n'
        '    "message": "Invalid JSON payload received. Unknown name \\"google\\": Cannot find field.",\n'
        '    "status": "INVALID_ARGUMENT"\n  }\n}\n',
        "type": None,
        "param": None,
        "code": "400",
    }
}
# OpenAI's answer to a field it does not know (the API reference's invalid_request_error).
OPENAI_UNRECOGNIZED = {
    "error": {
        "message": "Unrecognized request argument supplied: modalities",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}


def sent(request: httpx.Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.content)
    return body


async def generate(gateway: Gateway, job: Any = WIDE, **config: Any) -> Any:
    clock = FakeClock()
    settings = GatewayConfig(**{"base_url": "http://litellm.internal:4000", "api_key": API_KEY, **config})
    async with GatewayClient(settings, transport=httpx.MockTransport(gateway), clock=clock) as client:
        return await client.generate(job, [], Deadline.after(300, clock))


async def test_auto_sends_the_other_dialect_once_when_a_field_is_unknown_and_remembers_it() -> None:
    gateway = Gateway(httpx.Response(400, json=GOOGLE_UNKNOWN_NAME), image_answer())
    result = succeeded(await generate(gateway))
    first, second = (sent(request) for request in gateway.posts)
    assert first["extra_body"] == {"google": {"image_config": {"aspect_ratio": "16:9"}}}
    assert second["image_config"] == {"aspect_ratio": "16:9"} and "extra_body" not in second
    assert (result.attempts, result.retries) == (2, [ErrorType.CLIENT_ERROR])
    later = Gateway(image_answer())
    succeeded(await generate(later))  # the next client of this process starts in the learned dialect
    assert sent(later.posts[0])["modalities"] == ["image", "text"]


async def test_auto_switches_from_openrouter_too_but_only_once() -> None:
    gateway = Gateway(httpx.Response(400, json=OPENAI_UNRECOGNIZED))
    result = failed(await generate(gateway, base_url="https://openrouter.ai/api"))
    assert [("modalities" in sent(request)) for request in gateway.posts] == [True, False]
    assert result.error.type is ErrorType.CLIENT_ERROR
    assert result.attempts == 2


@pytest.mark.parametrize("dialect", ["newapi", "openrouter"])
async def test_a_chosen_dialect_is_never_switched(dialect: str) -> None:
    gateway = Gateway(httpx.Response(400, json=GOOGLE_UNKNOWN_NAME))
    result = failed(await generate(gateway, dialect=dialect))
    assert result.attempts == 1
    assert "Unknown name" in result.error.message, result.error.message


@pytest.mark.parametrize(
    "message",
    ["max_tokens: Extra inputs are not permitted", 'Invalid JSON payload received. Unknown name "foo"'],
)
async def test_a_400_about_another_field_is_no_reason_to_switch(message: str) -> None:
    gateway = Gateway(httpx.Response(400, json={"error": {"message": message}}))
    assert failed(await generate(gateway)).attempts == 1


async def test_a_web_page_is_no_gateway_and_the_url_is_not_called_again_for_minutes() -> None:
    page = httpx.Response(501, content=HTTP_SERVER_501, headers={"content-type": "text/html;charset=utf-8"})
    gateway = Gateway(page)
    clock = FakeClock()
    result = failed(await run(gateway, clock=clock, seconds=3600))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "not an OpenAI-compatible gateway" in result.error.message
    assert (result.attempts, result.retry_after) == (1, 300.0)  # no retry within the invocation
    again = failed(await run(gateway, clock=clock))
    assert (again.attempts, again.retry_after) == (0, 300.0)
    assert len(gateway.posts) == 1
    clock.now += 301
    failed(await run(gateway, clock=clock))
    assert len(gateway.posts) == 2  # tried again after the pause


async def test_a_200_web_page_is_no_gateway_either() -> None:
    page = httpx.Response(200, content=b"<!doctype html><html>Welcome to nginx!</html>")
    result = failed(await run(Gateway(page)))
    assert "web page" in result.error.message


async def test_auto_recognises_litellm_by_its_headers_before_any_option_is_lost() -> None:
    # LiteLLM's proxy sets x-litellm-* headers on its answers (litellm/proxy/common_request_processing.py)
    answer = image_answer()
    answer.headers["x-litellm-version"] = "1.108.7"
    succeeded(await generate(Gateway(answer), job=parse_job({"id": "plain", "prompt": "a banana"})))
    later = Gateway(image_answer())
    succeeded(await generate(later))
    assert sent(later.posts[0])["image_config"] == {"aspect_ratio": "16:9"}


@pytest.mark.parametrize(
    ("base", "endpoint"),
    [
        (
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
        ("https://gw.example/api/chat/completions/", "https://gw.example/api/chat/completions"),
    ],
)
def test_a_full_chat_completions_url_is_the_endpoint_itself(base: str, endpoint: str) -> None:
    assert chat_completions_url(base) == endpoint
