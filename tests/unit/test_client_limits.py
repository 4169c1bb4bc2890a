"""What the client reads of a hostile answer is bounded: its body, its images, its downloads."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator

import httpx
from gateway_cases import PNG, completion, data_url
from test_bodies import Chunks, bomb
from test_client import Gateway, failed, run, succeeded

from nanobanana.errors import ErrorType


def gzipped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    for piece in pieces:
        yield compressor.compress(piece)
    yield compressor.flush()


def padded_answer(megabytes: int) -> Iterator[bytes]:
    """A valid answer with an image, made `megabytes` MB long by spaces (JSON allows them)."""
    yield json.dumps(completion(f"![image]({data_url(PNG)})"))[:-1].encode()
    for _ in range(megabytes):
        yield b" " * (1 << 20)
    yield b"}"


async def test_an_answer_over_max_answer_bytes_is_a_bad_response_not_a_success() -> None:
    stream = Chunks(gzipped(padded_answer(64)))
    answer = httpx.Response(200, headers={"content-encoding": "gzip"}, stream=stream)
    result = failed(await run(Gateway(answer), max_answer_bytes=1 << 20, max_bad_response_retries=0))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "the gateway's answer is over 1048576 bytes" in result.error.message
    assert stream.sent < 64 << 10  # 64 MB were sent compressed into about 64 KB: most never read


async def test_a_gzip_bomb_answer_fails_without_decompressing_it() -> None:
    stream = Chunks(bomb(1024))
    answer = httpx.Response(200, headers={"content-encoding": "gzip"}, stream=stream)
    result = failed(await run(Gateway(answer), max_bad_response_retries=0))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "over 33554432 bytes" in result.error.message


async def test_an_answer_under_the_cap_still_succeeds_when_compressed() -> None:
    answer = httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=Chunks(gzipped(padded_answer(1)))
    )
    result = succeeded(await run(Gateway(answer), max_answer_bytes=2 << 20))
    assert [image.data for image in result.images] == [PNG]


async def test_a_huge_error_body_is_read_only_in_part() -> None:
    stream = Chunks(b'{"error": {"message": "' + b"x" * 1000 for _ in range(10_000))
    result = failed(await run(Gateway(httpx.Response(401, stream=stream))))
    assert result.error.type is ErrorType.AUTHENTICATION
    assert stream.sent < 100_000
