"""Shared test data for the gateway client: image bytes of each format, answers, a fake clock."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

#: A real 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def encoded(kind: str, size: tuple[int, int] = (3, 2), **options: Any) -> bytes:
    """A real image of `kind`, as Pillow writes it."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, kind, **options)
    return buffer.getvalue()


JPEG = encoded("JPEG")
WEBP = encoded("WEBP")

API_KEY = "sk-test-0123456789abcdef"
#: Where every name resolves in client tests: a public address, never contacted (httpx.MockTransport
#: answers every request; a test never resolves a name through the network).
PUBLIC_ADDRESS = "93.184.215.14"


async def public_resolver(host: str, port: int) -> list[str]:
    return [PUBLIC_ADDRESS]


def requested_url(request: Any) -> str:
    """The URL a request was made for: a pinned request goes to an address, its name is in Host."""
    return f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def completion(
    content: Any = "", *, images: list[str] | None = None, finish_reason: str | None = "stop", **extra: Any
) -> dict[str, Any]:
    """A chat completion with one choice, as gateways send it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if images is not None:
        message["images"] = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {
        "id": "gen-1",
        "model": "google/gemini-2.5-flash-image",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": message, **extra}],
    }


class FakeClock:
    """A clock whose time moves only when someone sleeps (or a test advances it)."""

    EPOCH = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.EPOCH + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
