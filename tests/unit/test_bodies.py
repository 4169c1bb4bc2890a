"""Bounded body reading: raw and decoded bytes capped while they stream, gzip bombs included."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobanana.bodies import BodyTooLarge, iter_body, read_body
from nanobanana.errors import ErrorType, PipelineError


class Chunks(httpx.AsyncByteStream):
    """A body that arrives in pieces, produced lazily (a bomb is never held whole by the test)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += len(chunk)
            yield chunk


def bomb(megabytes: int) -> Iterable[bytes]:
    """gzip of `megabytes` MB of zeros, compressed as it is produced (about 1 KB per MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    for _ in range(megabytes):
        yield compressor.compress(zeros)
    yield compressor.flush()


async def read(stream: httpx.AsyncByteStream, limit: int, **headers: str) -> bytes:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, stream=stream)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client,
        client.stream("GET", "https://gw.example/") as response,
    ):
        return await read_body(response, limit, what="the answer")


async def test_a_gzip_bomb_stops_at_the_cap_after_decompression() -> None:
    stream = Chunks(bomb(1024))  # 1 GiB of zeros in about 1 MB
    with pytest.raises(BodyTooLarge) as caught:
        await read(stream, 4 << 20, **{"content-encoding": "gzip"})
    assert caught.value.type is ErrorType.BAD_RESPONSE
    assert "the answer is over 4194304 bytes" in caught.value.message
    assert stream.sent < 64 << 10  # it stopped reading right after the cap


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "identity", ""])
async def test_encoded_bodies_under_the_cap_are_decoded(encoding: str) -> None:
    body = b'{"choices": []}' * 1000
    encoded = {
        "gzip": gzip.compress(body),
        "deflate": zlib.compress(body),
        "deflate-raw": zlib.compress(body)[2:-4],  # some servers send deflate without its zlib wrapper
        "identity": body,
        "": body,
    }[encoding]
    pieces = [encoded[i : i + 100] for i in range(0, len(encoded), 100)]
    name = encoding.removesuffix("-raw")
    assert await read(Chunks(pieces), len(body), **{"content-encoding": name}) == body


async def test_raw_bytes_past_the_cap_stop_the_reading() -> None:
    stream = Chunks(b"x" * 1000 for _ in range(1000))
    with pytest.raises(BodyTooLarge):
        await read(stream, 10_000)
    assert stream.sent <= 11_000


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    stream = Chunks([b"x" * 10])
    with pytest.raises(BodyTooLarge):
        await read(stream, 5, **{"content-length": "10"})
    assert stream.sent == 0


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", gzip.compress(b"hello")[:-6]), ("gzip", b"not gzip"), ("br", b"x"), ("gzip, gzip", b"x")],
)
async def test_cut_short_corrupt_or_unasked_encodings_are_bad_responses(encoding: str, body: bytes) -> None:
    with pytest.raises(PipelineError) as caught:
        await read(Chunks([body]), 1000, **{"content-encoding": encoding})
    assert caught.value.type is ErrorType.BAD_RESPONSE


async def test_a_body_read_already_is_only_measured() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"0123456789")

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client,
        client.stream("GET", "https://gw.example/") as response,
    ):
        assert [piece async for piece in iter_body(response, 10, what="it")] == [b"0123456789"]
    with pytest.raises(BodyTooLarge):
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client,
            client.stream("GET", "https://gw.example/") as response,
        ):
            await read_body(response, 9, what="it", error_type=ErrorType.INPUT_ERROR)


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=3000),
    encoding=st.sampled_from(["", "gzip", "deflate", "identity"]),
    cut=st.integers(1, 500),
    limit=st.integers(0, 4000),
    corrupt=st.booleans(),
)
async def test_any_body_is_read_whole_under_its_cap_or_refused_with_the_typed_error(
    body: bytes, encoding: str, cut: int, limit: int, corrupt: bool
) -> None:
    encoded = {"gzip": gzip.compress, "deflate": zlib.compress}.get(encoding, bytes)(body)
    corrupt = corrupt and encoding in ("gzip", "deflate")
    if corrupt:
        encoded = encoded[: len(encoded) // 2]
    pieces = [encoded[i : i + cut] for i in range(0, len(encoded), cut)]
    refused: PipelineError | None = None
    try:
        got = await read(Chunks(pieces), limit, **{"content-encoding": encoding})
    except PipelineError as error:
        refused = error
    if refused is None:
        assert got == body
        assert len(got) <= limit
    else:
        assert refused.type is ErrorType.BAD_RESPONSE
        assert len(body) > limit or corrupt or len(encoded) > limit
