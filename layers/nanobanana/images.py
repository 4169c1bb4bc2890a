"""Image bytes: what format they are (from their bytes, never from a claimed type) and data URLs.

Gateways label images loosely (a JPEG called `image/png`, raw base64 with no prefix), so the
bytes decide the mime type and the output file's extension.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.imageheaders import MAX_PIXELS, MAX_SIDE, read_header

_DATA_URL = re.compile(r"^data:[^,]*;base64,(?P<data>.*)$", re.S | re.I)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class GeneratedImage:
    """One decoded image: its bytes, and the type and size read from them (once, when it was checked)."""

    data: bytes
    mime: str
    ext: str
    width: int
    height: int


@dataclass(frozen=True)
class InputImage:
    """An input image for editing: bytes to send inline, or an https URL the gateway fetches itself."""

    data: bytes | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise ValueError("an InputImage holds exactly one of data or url")


def to_image(
    data: bytes, *, error_type: ErrorType = ErrorType.BAD_RESPONSE, source: str = "an image"
) -> GeneratedImage:
    """The image these bytes hold, or a PipelineError of `error_type` (naming `source`) when they are
    no known image, or one that is cut short, corrupt or of absurd dimensions."""
    try:
        mime, ext, width, height = read_header(data)
    except ValueError as exc:
        problem = f"{source} ({len(data)} bytes) is not a readable image: {exc}"
        raise PipelineError(error_type, problem) from None
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise PipelineError(error_type, f"{source} is a {ext} of {width}x{height} pixels, not a sane size")
    return GeneratedImage(data, mime, ext, width, height)


def to_data_url(data: bytes) -> str:
    """A `data:<mime>;base64,...` URL for input image bytes (INPUT_ERROR if they are no known image)."""
    image = to_image(data, error_type=ErrorType.INPUT_ERROR, source="an input image")
    return f"data:{image.mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode_base64_image(value: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a base64 data URL or of bare base64 (what some gateways send); BAD_RESPONSE if neither,
    or if it would decode to more than `max_bytes` (checked before decoding).

    Whitespace and missing padding are tolerated, as are URL-safe characters: gateways differ in all three.
    """
    text = value.strip()
    if max_bytes is not None and len(text) // 4 * 3 > max_bytes + 3 + len(text) // 20:
        # a generous estimate (prefix, line breaks); the exact size is checked after decoding
        raise PipelineError(ErrorType.BAD_RESPONSE, f"an image over {max_bytes} bytes (MaxImageBytes)")
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if match is None:
            raise PipelineError(
                ErrorType.BAD_RESPONSE, f"an image data URL that is not base64: {text[:60]!r}"
            )
        text = match["data"]
    text = _WHITESPACE.sub("", text).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PipelineError(
            ErrorType.BAD_RESPONSE, f"image data that is not valid base64: {text[:60]!r}"
        ) from None
    if not data:
        raise PipelineError(ErrorType.BAD_RESPONSE, "an empty image")
    if max_bytes is not None and len(data) > max_bytes:
        raise PipelineError(ErrorType.BAD_RESPONSE, f"an image over {max_bytes} bytes (MaxImageBytes)")
    return data
