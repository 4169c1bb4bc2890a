"""Reading a stranger's HTTP body with a cap, while it streams, before and after decompression.

httpx decodes gzip and deflate whole chunk by chunk: one 64 KB chunk of a gzip bomb becomes tens of
megabytes before anyone can count them, and `aread()` keeps going until memory runs out. Here the raw
bytes are counted as they arrive and decompressed in steps that never produce more than what is
left under the cap, so memory and time stay bounded by the cap whatever the server sends.
`iter_body` is the building block (a streaming reader, such as a server-sent events parser, reads
its chunks); `read_body` collects them.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator, Mapping

import httpx

from nanobanana.errors import ErrorType, PipelineError

#: Content codings the client asks for (it sends this as Accept-Encoding) and decodes itself.
ACCEPT_ENCODING = "gzip, deflate"


def content_type(headers: Mapping[str, str]) -> str:
    """A body's Content-Type ("" if none), its header's name in any case (httpx.Headers or a plain dict)."""
    return next((value for key, value in headers.items() if key.lower() == "content-type"), "")


class BodyTooLarge(PipelineError):
    """A body over its cap (raw or decoded): an unreadable answer, never an exhausted Lambda."""

    def __init__(self, what: str, limit: int, error_type: ErrorType = ErrorType.BAD_RESPONSE) -> None:
        self.limit = limit
        super().__init__(error_type, f"{what} is over {limit} bytes (the limit)")


async def iter_body(
    response: httpx.Response, limit: int, *, what: str, error_type: ErrorType = ErrorType.BAD_RESPONSE
) -> AsyncIterator[bytes]:
    """The decoded chunks of a streamed response; BodyTooLarge (of `error_type`) as soon as the raw or
    the decoded bytes pass `limit`, or when a declared Content-Length already does."""
    try:
        held = response.content  # read already (a test's MockTransport reads what it is given)
    except httpx.ResponseNotRead:
        pass
    else:
        if len(held) > limit:
            raise BodyTooLarge(what, limit, error_type)
        yield held
        return
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(what, limit, error_type)
    inflater = _Inflater(response.headers.get("content-encoding", ""), what)
    raw = decoded = 0
    async for chunk in response.aiter_raw():
        raw += len(chunk)
        if raw > limit:
            raise BodyTooLarge(what, limit, error_type)
        for piece in inflater.feed(chunk, limit - decoded):
            decoded += len(piece)
            if decoded > limit:
                raise BodyTooLarge(what, limit, error_type)
            yield piece
    inflater.finish()


async def read_body(
    response: httpx.Response, limit: int, *, what: str, error_type: ErrorType = ErrorType.BAD_RESPONSE
) -> bytes:
    """The whole decoded body, at most `limit` bytes (see iter_body)."""
    body = bytearray()
    async for piece in iter_body(response, limit, what=what, error_type=error_type):
        body += piece
    return bytes(body)


class _Inflater:
    """gzip or deflate decoded in steps of at most `room + 1` bytes; identity passed through."""

    def __init__(self, encoding: str, what: str) -> None:
        self._what = what
        codings = [coding.strip().lower() for coding in encoding.split(",") if coding.strip()]
        codings = [coding for coding in codings if coding != "identity"]
        self._zlib: zlib._Decompress | None = None
        self._deflate = False
        if not codings:
            return
        if codings in (["gzip"], ["x-gzip"]):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif codings == ["deflate"]:
            self._zlib, self._deflate = zlib.decompressobj(), True
        else:
            raise PipelineError(
                ErrorType.BAD_RESPONSE, f"{what} is encoded as {encoding!r}, which was not asked for"
            )

    def feed(self, chunk: bytes, room: int) -> Iterator[bytes]:
        if self._zlib is None:
            yield chunk
            return
        pending = chunk
        while pending:
            try:
                piece = self._zlib.decompress(pending, max(room, 0) + 1)
            except zlib.error:
                if not self._deflate:
                    raise self._unreadable() from None
                # "deflate" is sent both with and without its zlib wrapper: try the raw form once.
                self._zlib, self._deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            self._deflate = False
            pending = self._zlib.unconsumed_tail
            room -= len(piece)
            yield piece
            if self._zlib.eof:
                return

    def finish(self) -> None:
        """A compressed body must end where its stream says it ends: else it was cut short."""
        if self._zlib is not None and not self._zlib.eof:
            raise self._unreadable()

    def _unreadable(self) -> PipelineError:
        return PipelineError(
            ErrorType.BAD_RESPONSE, f"{self._what} is not valid compressed data (cut short?)"
        )
