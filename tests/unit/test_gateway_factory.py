"""The generate function's gateway client: one per process and loop, rebuilt when the key changes."""

from __future__ import annotations

import pytest

from nanobanana.config import Settings
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.generate import api_key_from_secret, gateway_factory

SETTINGS = Settings(bucket="b", idempotency_table="t", api_base_url="https://gateway.example")


@pytest.mark.parametrize(
    ("secret", "key"),
    [("sk-plain\n", "sk-plain"), ('{"api_key": " sk-json "}', "sk-json"), ("  sk-spaced  ", "sk-spaced")],
)
def test_the_secret_holds_the_key_as_text_or_json(secret: str, key: str) -> None:
    assert api_key_from_secret(secret) == key


def test_a_json_secret_without_the_key_is_an_authentication_error() -> None:
    with pytest.raises(PipelineError) as caught:
        api_key_from_secret('{"token": "sk-x"}')
    assert caught.value.type is ErrorType.AUTHENTICATION
    assert "sk-x" not in caught.value.message


async def test_one_client_per_loop_until_the_key_changes() -> None:
    keys = iter(["sk-1", "sk-1", "sk-2"])
    client = gateway_factory(SETTINGS, lambda: next(keys))
    first = client()
    assert client() is first  # reused across invocations
    rotated = client()
    assert rotated is not first
    await first.aclose()
    await rotated.aclose()


async def test_the_deployment_caps_reach_the_client() -> None:
    environ = {
        "BUCKET_NAME": "b",
        "IDEMPOTENCY_TABLE": "t",
        "API_BASE_URL": "https://gateway.example",
        "MAX_ANSWER_BYTES": "1048576",
        "MAX_IMAGES_PER_ANSWER": "3",
        "MAX_IMAGE_BYTES": "2097152",
    }
    client = gateway_factory(Settings.from_env(environ), lambda: "sk-1")()
    config = client.config
    assert (config.max_answer_bytes, config.max_images_per_answer, config.max_image_bytes) == (
        1048576,
        3,
        2097152,
    )
    await client.aclose()
