"""Retry timing: deadline, full-jitter backoff, Retry-After in its three forms."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from gateway_cases import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from nanobanana.retry import Backoff, Deadline, parse_retry_after

NOW = 1_700_000_000.0


def test_deadline_reads_remaining_millis_minus_the_margin() -> None:
    left = [30_000.0]
    deadline = Deadline(lambda: left[0], margin=10.0)
    assert deadline.remaining() == pytest.approx(20.0)
    left[0] = 5_000.0
    assert deadline.remaining() == 0.0  # never negative


async def test_deadline_after_runs_down_with_its_clock() -> None:
    clock = FakeClock()
    deadline = Deadline.after(60.0, clock, margin=5.0)
    assert deadline.remaining() == pytest.approx(55.0)
    await clock.sleep(50.0)
    assert deadline.remaining() == pytest.approx(5.0)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_full_jitter_bounded_by_the_cap(retry: int, seed: int) -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(seed))
    assert 0.0 <= backoff.delay(retry) <= min(30.0, 2.0 ** min(retry, 10))


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=10.0)
    assert [backoff.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_spreads_over_the_whole_range() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(7))
    delays = [backoff.delay(10) for _ in range(500)]
    assert min(delays) < 3.0
    assert max(delays) > 27.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "9", "Retry-After-Ms": "1200"}, 1.2),  # the precise one wins
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 42, UTC), usegmt=True)}, 42.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:20 -0000"}, 0.0),  # an HTTP date in the past
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "inf"}, None),
        ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, NOW) == (pytest.approx(expected) if expected is not None else None)


def test_parse_retry_after_reads_httpx_headers() -> None:
    assert parse_retry_after(httpx.Headers([("RETRY-AFTER", "3")]), NOW) == 3.0
