"""Time for retries: a clock that tests can fake, the invocation's deadline, backoff and Retry-After.

Kept free of I/O so that every retry decision can be tested on a fake clock without real sleeps.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Protocol


class Clock(Protocol):
    """Where the client reads time and sleeps: the real one, or a fake one in tests."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (to read an HTTP-date Retry-After)."""

    async def sleep(self, seconds: float) -> None:
        """Wait this long."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Deadline:
    """The time this invocation may still spend on the gateway: the Lambda's remaining time minus the
    margin needed to write results afterwards."""

    def __init__(self, remaining_ms: Callable[[], float], margin: float = 0.0) -> None:
        self._remaining_ms = remaining_ms
        self._margin = margin

    @classmethod
    def after(cls, seconds: float, clock: Clock, margin: float = 0.0) -> Deadline:
        """A deadline `seconds` from now on `clock`, for callers that have no Lambda context."""
        end = clock.monotonic() + seconds
        return cls(lambda: (end - clock.monotonic()) * 1000.0, margin)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._remaining_ms() / 1000.0 - self._margin)


class Backoff:
    """Exponential backoff with full jitter: retry n waits uniformly in [0, min(cap, base * 2**n)].

    Full jitter spreads the retries of many concurrent jobs, which a fixed schedule would synchronise.
    """

    def __init__(self, base: float = 1.0, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number `retry` (0 for the first retry)."""
        return min(self.cap, self.base * 2.0 ** min(retry, 64))

    def delay(self, retry: int) -> float:
        return self._rng.uniform(0.0, self.ceiling(retry))


#: Headers that carry a wait in seconds or as an HTTP date, in the order they are believed. LiteLLM
#: relays its upstream's headers prefixed with `llm_provider-` (litellm/litellm_core_utils/core_helpers.py,
#: process_response_headers), so the upstream's Retry-After arrives as `llm_provider-retry-after`.
RETRY_AFTER_HEADERS = ("retry-after", "llm_provider-retry-after")
#: Google's RetryInfo detail in an error body (https://ai.google.dev/gemini-api/docs/rate-limits, the
#: google.rpc.RetryInfo type): `"retryDelay": "56s"` or `"1.500s"`, also when a gateway quotes the body
#: inside its own message (escaped quotes).
_RETRY_DELAY = re.compile(r'retryDelay\\?"\s*:\s*\\?"(\d+(?:\.\d+)?)s')


def parse_retry_after(headers: Mapping[str, str], now: float, body: str = "") -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, else `Retry-After` (or LiteLLM's relayed
    `llm_provider-retry-after`) as seconds or an HTTP date (read against `now`, epoch seconds), else a
    Google `retryDelay` in the error `body`. None when absent or unreadable; never negative."""
    lower = {key.lower(): value for key, value in headers.items()}
    millis = _number(lower.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    for name in RETRY_AFTER_HEADERS:
        seconds = _http_wait(lower.get(name), now)
        if seconds is not None:
            return seconds
    delay = _RETRY_DELAY.search(body)
    return float(delay[1]) if delay else None


def _http_wait(value: str | None, now: float) -> float | None:
    """A Retry-After value: seconds, or an HTTP date read against `now`."""
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT, whether or not it says so
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _number(value: str | None) -> float | None:
    """A finite, non-negative number of a header value, else None."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return max(0.0, number)
