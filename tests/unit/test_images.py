"""Image bytes: type from the bytes, data URLs both ways."""

from __future__ import annotations

import base64

import pytest
from gateway_cases import JPEG, PNG, WEBP, b64, data_url

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.images import InputImage, decode_base64_image, to_data_url, to_image


@pytest.mark.parametrize(
    ("data", "mime", "ext"),
    [
        (PNG, "image/png", "png"),
        (JPEG, "image/jpeg", "jpg"),
        (WEBP, "image/webp", "webp"),
    ],
)
def test_the_format_comes_from_the_bytes(data: bytes, mime: str, ext: str) -> None:
    image = to_image(data)
    assert (image.mime, image.ext) == (mime, ext)


@pytest.mark.parametrize(
    "data", [b"", b"<html>", b"RIFF\x00\x00\x00\x00WAVE", b"%PDF-1.7", b"GIF89a\x01\x00"]
)
def test_unknown_bytes_are_a_bad_response(data: bytes) -> None:
    with pytest.raises(PipelineError) as caught:
        to_image(data)
    assert caught.value.type is ErrorType.BAD_RESPONSE


def test_data_url_takes_its_mime_from_the_bytes_and_round_trips() -> None:
    url = to_data_url(JPEG)
    assert url.startswith("data:image/jpeg;base64,")
    assert decode_base64_image(url) == JPEG


def test_unknown_input_bytes_are_an_input_error() -> None:
    with pytest.raises(PipelineError) as caught:
        to_data_url(b"not an image")
    assert caught.value.type is ErrorType.INPUT_ERROR


@pytest.mark.parametrize(
    "text",
    [
        b64(PNG),
        "  " + b64(PNG) + "\n",
        b64(PNG).rstrip("="),
        "\n".join(b64(PNG)[i : i + 20] for i in range(0, len(b64(PNG)), 20)),
        base64.urlsafe_b64encode(PNG).decode(),
        data_url(PNG),
        data_url(PNG, "image/jpeg"),  # a wrong label does not matter: the bytes decide
        "DATA:image/png;charset=binary;base64," + b64(PNG),
    ],
)
def test_decode_accepts_data_urls_and_bare_base64(text: str) -> None:
    assert decode_base64_image(text) == PNG


@pytest.mark.parametrize("text", ["", "data:image/png,%89PNG", "not base64 at all!", "abcde", "é" * 8])
def test_decode_rejects_what_is_not_base64(text: str) -> None:
    with pytest.raises(PipelineError) as caught:
        decode_base64_image(text)
    assert caught.value.type is ErrorType.BAD_RESPONSE


def test_input_image_holds_exactly_one_source() -> None:
    assert InputImage(data=PNG).url is None
    assert InputImage(url="https://example.com/a.png").data is None
    with pytest.raises(ValueError, match="exactly one"):
        InputImage()
    with pytest.raises(ValueError, match="exactly one"):
        InputImage(data=PNG, url="https://example.com/a.png")
