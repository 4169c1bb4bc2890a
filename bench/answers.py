"""Reading hostile gateway answers is linear in their size and bounded in memory.

1. Answers of 1, 2, 4 and 8 MiB in shapes that made the old parser's regular expressions backtrack
   (markdown image openings that never close, bare URLs, text between them) and an answer with one
   large inline image, parsed as the client parses them (`parse_body`): seconds per MiB, the median of
   three parses. Flat is the goal; the old markdown pattern took 660 s on 20 KB of the first shape.
2. A 1 GiB gzip bomb (about 1 MB compressed) read through the bounded body reader with the default
   32 MiB cap: the peak of Python memory (the goal: about the cap, never the bomb).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from nanobanana.bodies import read_body
from nanobanana.errors import PipelineError
from nanobanana.responses import parse_body

SIZES_MIB = (1, 2, 4, 8)
MIB = 2**20
RUNS = 3
ANSWER_CAP = 32 * MIB
BOMB_MIB = 1024
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _answer(content: str) -> bytes:
    return json.dumps(
        {"model": "m", "choices": [{"finish_reason": "stop", "message": {"content": content}}]}
    ).encode()


def _repeat(unit: str, size: int) -> str:
    return unit * (size // len(unit))


SHAPES: dict[str, Callable[[int], bytes]] = {
    "unclosed markdown": lambda size: _answer(_repeat("![](data:a", size)),
    "markdown openings": lambda size: _answer(_repeat("![", size)),
    "bare urls": lambda size: _answer(_repeat("see https://x.example/a ", size)),
    "one inline image": lambda size: _answer(
        "![i](data:image/png;base64," + base64.b64encode(_PNG + b"\x00" * (size * 3 // 4)).decode() + ")"
    ),
}


def _parse(body: bytes) -> None:
    with contextlib.suppress(PipelineError):  # a text-only answer is content_filtered, parsed all the same
        parse_body(body, max_image_bytes=ANSWER_CAP)


def bench_shapes() -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for name, make in SHAPES.items():
        runs = []
        for size_mib in SIZES_MIB:
            body = make(size_mib * MIB)
            walls = []
            for _ in range(RUNS):
                started = time.perf_counter()
                _parse(body)
                walls.append(time.perf_counter() - started)
            runs.append({"mib": size_mib, "s_per_mib": round(statistics.median(walls) / size_mib, 4)})
        results[name] = runs
    return results


class _Bomb(httpx.AsyncByteStream):
    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in _compressed_zeros(BOMB_MIB):
            self.sent += len(chunk)
            yield chunk


def _compressed_zeros(megabytes: int) -> Iterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(MIB)
    for _ in range(megabytes):
        yield compressor.compress(zeros)
    yield compressor.flush()


async def _read_bomb() -> tuple[int, str]:
    bomb = _Bomb()
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-encoding": "gzip"}, stream=bomb)
    )
    async with (
        httpx.AsyncClient(transport=transport) as client,
        client.stream("GET", "https://x/") as response,
    ):
        try:
            await read_body(response, ANSWER_CAP, what="the bomb")
        except PipelineError as error:
            return bomb.sent, str(error.type)
    return bomb.sent, "read whole"


def bench_bomb() -> dict[str, Any]:
    tracemalloc.start()
    sent, outcome = asyncio.run(_read_bomb())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "bomb_mib": BOMB_MIB,
        "cap_mib": ANSWER_CAP // MIB,
        "compressed_read_kb": sent // 1024,
        "outcome": outcome,
        "peak_python_mb": round(peak / 1e6),
    }


def bench_answers() -> dict[str, Any]:
    shapes = bench_shapes()
    spreads = {
        name: round(
            max(run["s_per_mib"] for run in runs) / max(min(run["s_per_mib"] for run in runs), 1e-6), 2
        )
        for name, runs in shapes.items()
    }
    return {"shapes": shapes, "spread": spreads, "bomb": bench_bomb()}
