"""The key never leaves the client, in any case, base64 or URL-encoded, in any field."""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx
import pytest
from gateway_cases import API_KEY, PNG, completion, data_url
from test_client import Gateway, failed, run, succeeded

from nanobanana.redaction import redact

SLASHY_KEY = "k3y/with+odd=chars&more?"


def b64_inside(key: str, offset: int, alphabet: str = "std") -> str:
    """The key inside a longer base64 text, `offset` bytes after its start (as in a Basic header)."""
    raw = b"user:"[:offset] + key.encode() + b":tail"
    encoded = base64.b64encode(raw) if alphabet == "std" else base64.urlsafe_b64encode(raw)
    return encoded.decode()


@pytest.mark.parametrize("key", [API_KEY, SLASHY_KEY])
@pytest.mark.parametrize(
    "form",
    [
        lambda key: key,
        lambda key: key.upper(),
        lambda key: key.swapcase(),
        lambda key: quote(key, safe=""),
        lambda key: b64_inside(key, 0),
        lambda key: b64_inside(key, 1),
        lambda key: b64_inside(key, 2, "urlsafe"),
        lambda key: b64_inside(key.upper(), 3),
        lambda key: base64.b64encode(key.encode()).decode().rstrip("="),
    ],
)
def test_every_form_of_the_key_is_redacted(key: str, form: object) -> None:
    leaked = form(key)  # type: ignore[operator]
    text = redact(f"error: token {leaked} rejected", [key])
    assert "[redacted]" in text
    for piece in (key, key.upper(), key.lower(), quote(key, safe="")):
        assert piece.lower() not in text.lower()
    decodable = text.split()[2]
    assert "[redacted]" in decodable or key not in decodable


def test_ordinary_words_survive() -> None:
    assert redact("a cat on a mat", [API_KEY]) == "a cat on a mat"
    assert redact("nothing to hide", []) == "nothing to hide"


async def test_the_key_in_model_and_finish_reason_never_reaches_the_outcome() -> None:
    answer = completion(f"![i]({data_url(PNG)}) for {API_KEY.upper()}", finish_reason=f"stop:{API_KEY}")
    answer["model"] = f"model-{base64.b64encode(API_KEY.encode()).decode()}"
    result = succeeded(await run(Gateway(httpx.Response(200, json=answer))))
    assert result.finish_reason == "stop:[redacted]"
    assert result.model is not None and result.model.startswith("model-[redacted]")
    assert result.text == "for [redacted]"


async def test_the_key_in_an_error_body_is_redacted_in_every_form() -> None:
    b64 = base64.b64encode(API_KEY.encode()).decode()
    body = {"error": {"message": f"bad key {API_KEY.upper()} ({b64}) {quote(API_KEY)}"}}
    result = failed(await run(Gateway(httpx.Response(401, json=body))))
    message = result.error.message
    assert API_KEY.upper() not in message and b64 not in message
    assert message.count("[redacted]") == 3
