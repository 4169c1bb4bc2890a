"""The circuit breaker through moto's DynamoDB, on a fake clock: opening, pausing, probing, closing."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
from conftest import GUARDS_TABLE

from nanobanana.breaker import Breaker, BreakerConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CONFIG = BreakerConfig(min_calls=10, failure_ratio=0.5, open_seconds=30, max_open_seconds=100, probes=2)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(dynamodb: DynamoDBClient, clock: Clock, config: BreakerConfig = CONFIG) -> Breaker:
    return Breaker(GUARDS_TABLE, dynamodb, config, clock=clock, rng=random.Random(1))


def calls(b: Breaker, n: int, failure: str | None = "server_error") -> list[object]:
    """n calls, each admitted and then recorded; the transitions they made."""
    return [b.record(b.admit(), failure) for _ in range(n)]


def test_enough_failures_in_a_window_open_it_and_calls_wait_out_the_pause(
    dynamodb: DynamoDBClient, clock: Clock
) -> None:
    b = breaker(dynamodb, clock)
    assert calls(b, 9) == [None] * 9  # a lone job's retries never open it
    (opened,) = calls(b, 1)
    assert opened is not None and opened.opened and (opened.calls, opened.failures) == (10, 10)
    assert opened.circuit.cause == "server_error"
    refused = b.admit()
    assert not refused.allowed
    assert 30 <= refused.wait_seconds <= 36  # the pause, plus at most a fifth of it as jitter


def test_a_gateway_that_mostly_answers_keeps_it_closed(dynamodb: DynamoDBClient, clock: Clock) -> None:
    b = breaker(dynamodb, clock)
    calls(b, 6, failure=None)
    calls(b, 5)  # 5 of 11 failed: under half
    assert b.admit().allowed
    assert calls(b, 20, failure=None) == [None] * 20


def test_failures_in_different_windows_do_not_add_up(dynamodb: DynamoDBClient, clock: Clock) -> None:
    b = breaker(dynamodb, clock)
    calls(b, 9)
    clock.now += CONFIG.window_seconds
    calls(b, 9)
    assert b.admit().allowed


def test_after_the_pause_a_few_probe_and_an_answer_closes_it(dynamodb: DynamoDBClient, clock: Clock) -> None:
    b = breaker(dynamodb, clock)
    calls(b, 10)
    clock.now += 30
    first, second, third = b.admit(), b.admit(), b.admit()
    assert (first.probe, first.first_probe, second.probe, second.first_probe) == (True, True, True, False)
    assert not third.allowed and third.wait_seconds >= 1
    closed = b.record(first, None)
    assert closed is not None and not closed.opened and closed.circuit.generation == 1
    assert b.record(second, "server_error") is None  # too late: the circuit is closed already
    after = b.admit()
    assert after.allowed and not after.probe and after.circuit.generation == 1
    assert calls(b, 9) == [None] * 9  # the failures that opened it are not counted again


def test_a_failed_probe_doubles_the_pause_up_to_the_cap(dynamodb: DynamoDBClient, clock: Clock) -> None:
    b = breaker(dynamodb, clock)
    calls(b, 10)
    pauses = []
    for _ in range(3):
        clock.now = b.circuit().open_until_ms / 1000
        reopened = b.record(b.admit(), "timeout")
        assert reopened is not None and reopened.opened
        pauses.append(reopened.circuit.pause_ms / 1000)
    assert pauses == [60, 100, 100]


def test_probes_that_never_answer_do_not_keep_it_open_forever(dynamodb: DynamoDBClient, clock: Clock) -> None:
    b = breaker(dynamodb, clock)
    calls(b, 10)
    clock.now += 30
    assert [b.admit().probe for _ in range(3)] == [True, True, False]
    clock.now += 30  # a new round: the probes of the last one were lost (a crashed invocation)
    fresh = b.admit()
    assert fresh.probe and fresh.first_probe


def test_every_process_sees_the_shared_circuit(dynamodb: DynamoDBClient, clock: Clock) -> None:
    here, there = breaker(dynamodb, clock), breaker(dynamodb, clock)
    assert there.admit().allowed  # read and cached while closed
    calls(here, 10)
    assert there.admit().allowed  # within its cache's few seconds
    assert there.record(there.admit(), "server_error") is None  # its own open attempt loses: it reads again
    assert not there.admit().allowed
    clock.now += CONFIG.cache_seconds
    assert not breaker(dynamodb, clock).admit().allowed


def test_errors_of_a_working_gateway_are_calls_not_failures(dynamodb: DynamoDBClient, clock: Clock) -> None:
    b = breaker(dynamodb, clock)
    assert calls(b, 30, failure=None) == [None] * 30
    assert not b.circuit(fresh=True).open
    assert b.circuit().describe(clock()) == "closed"
