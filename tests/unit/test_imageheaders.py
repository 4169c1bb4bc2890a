"""Image headers read from the file's structure: real files of each format pass with their size,
anything cut short, corrupt, or only starting like an image does not."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from gateway_cases import JPEG, PNG, WEBP, encoded
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.imageheaders import read_header
from nanobanana.images import to_image

REAL = {
    "png": encoded("PNG", (40, 30)),
    "png-rgba": encoded("PNG", (7, 300)),
    "jpeg": encoded("JPEG", (640, 360)),
    "jpeg-progressive": encoded("JPEG", (33, 17), progressive=True),
    "webp-lossy": encoded("WEBP", (300, 200)),
    "webp-lossless": encoded("WEBP", (5, 9), lossless=True),
    "webp-extended": encoded("WEBP", (64, 48), exif=b"Exif\x00\x00II*\x00"),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_images_give_their_format_and_size(name: str) -> None:
    data = REAL[name]
    mime, _, width, height = read_header(data)
    with Image.open(io.BytesIO(data)) as image:
        assert (width, height) == image.size
        assert mime == Image.MIME[image.format or ""]


@pytest.mark.parametrize("name", sorted(REAL))
def test_an_image_cut_anywhere_is_refused(name: str) -> None:
    data = REAL[name]
    for cut in range(len(data)):
        with pytest.raises(ValueError, match=r"cut short|not a png|without|no marker|ends before"):
            read_header(data[:cut])


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, *chunks: bytes) -> bytes:
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"<html>" * 100, "cut short"),  # a signature in front of anything
        (PNG[:-5] + b"\x00" + PNG[-4:], "corrupt"),  # IEND's CRC
        (PNG[:40] + bytes([PNG[40] ^ 1]) + PNG[41:], "corrupt"),  # a byte of the image data
        (png(1, 1), "without image data"),
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"a") + PNG[8:], "header chunk"),
        (b"\xff\xd8\xff\xd9" + b"\x00" * 4, "ends before"),
        (JPEG.replace(b"\xff\xd9", b"\x00\x00"), "end-of-image"),
        (b"\xff\xd8\xff\xda\x00\x02" + b"\x00" * 10 + b"\xff\xd9", "frame header"),
        (b"\xff\xd8\xff\xe0\x00\x04\x00\x00" + b"\x00" * 20, "no marker"),
        (WEBP[:12] + b"WAVE" + WEBP[16:], "not an image"),
        (b"GIF89a\x01\x00\x01\x00" + b"\x00" * 20 + b"\x3b", "not a png, jpeg or webp"),
    ],
)
def test_what_only_looks_like_an_image_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        read_header(data)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (100_000, 1), (16_384, 16_384)])
def test_absurd_dimensions_are_bad_responses(width: int, height: int) -> None:
    data = png(width, height, png_chunk(b"IDAT", zlib.compress(b"\x00")))
    assert read_header(data)[2:] == (width, height)
    with pytest.raises(PipelineError) as caught:
        to_image(data)
    assert caught.value.type is ErrorType.BAD_RESPONSE
    assert f"{width}x{height} pixels" in caught.value.message


@given(
    st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x10\x00\x00\x00WEBP"]).flatmap(
        lambda head: st.binary(max_size=300).map(lambda tail: head + tail)
    )
)
def test_any_bytes_give_a_header_or_a_value_error(data: bytes) -> None:
    try:
        _, ext, width, height = read_header(data)
    except ValueError:
        return
    assert ext in ("png", "jpg", "webp") and width >= 0 and height >= 0
