"""The guards as the generate path meets them: the client's gate, the breaker per call, the budget per job."""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import GUARDS_TABLE
from gateway_cases import API_KEY, PNG, FakeClock, completion, data_url

from nanobanana.breaker import Breaker, BreakerConfig
from nanobanana.budget import DailyBudget
from nanobanana.client import Failure, GatewayClient, GatewayConfig, Success
from nanobanana.config import Settings
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.guards import Guards, Ticket, guard_status
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

JOB = parse_job({"id": "j1", "prompt": "a cat"})


class Gate:
    """Lets `allow` calls through, then holds every call for 40 s; remembers each outcome it was told."""

    def __init__(self, allow: int) -> None:
        self.allow = allow
        self.told: list[ErrorType | None] = []

    async def before_call(self, last: PipelineError | None) -> None:
        if self.allow:
            self.allow -= 1
            return
        raise PipelineError(ErrorType.SERVER_ERROR, "circuit open", retry_after=40.0)

    async def after_call(self, error: PipelineError | None) -> None:
        self.told.append(error.type if error else None)


async def anything_goes(last: PipelineError | None) -> None:
    """The ledger's count of calls, in these tests: no limit."""


async def generate(answers: list[httpx.Response], gate: Gate | Ticket) -> tuple[Success | Failure, int]:
    """One job against a gateway answering `answers` in turn (the last one again and again)."""
    posts: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return answers[min(len(posts), len(answers)) - 1]

    clock = FakeClock()
    config = GatewayConfig(base_url="https://gw.example", api_key=API_KEY)
    transport = httpx.MockTransport(answer)
    async with GatewayClient(config, transport=transport, clock=clock, rng=random.Random(3)) as client:
        before = gate.before(anything_goes) if isinstance(gate, Ticket) else gate.before_call
        outcome = await client.generate(
            JOB, [], Deadline.after(300, clock), before_call=before, after_call=gate.after_call
        )
    return outcome, len(posts)


IMAGE = httpx.Response(200, json=completion(f"![image]({data_url(PNG)})"))
DOWN = httpx.Response(503, json={"error": {"message": "overloaded"}})


async def test_a_call_held_before_the_first_attempt_is_never_made() -> None:
    outcome, posts = await generate([IMAGE], Gate(allow=0))
    assert posts == 0
    assert isinstance(outcome, Failure) and outcome.attempts == 0
    assert outcome.error.detail == "circuit open" and outcome.retry_after == 40.0


async def test_the_gate_is_told_each_calls_outcome() -> None:
    gate = Gate(allow=2)
    outcome, posts = await generate([DOWN], gate)
    assert posts == 2 and gate.told == [ErrorType.SERVER_ERROR, ErrorType.SERVER_ERROR]
    assert isinstance(outcome, Failure) and outcome.attempts == 2


async def test_an_answered_call_is_told_as_a_success() -> None:
    gate = Gate(allow=5)
    outcome, _ = await generate([DOWN, IMAGE], gate)
    assert isinstance(outcome, Success)
    assert gate.told == [ErrorType.SERVER_ERROR, None]


async def test_when_the_circuit_opens_later_jobs_make_no_call(dynamodb: DynamoDBClient) -> None:
    breaker = Breaker(GUARDS_TABLE, dynamodb, BreakerConfig(min_calls=4))
    guards = Guards(breaker)
    made = []
    for _ in range(4):
        ticket = await guards.before_job()
        assert isinstance(ticket, Ticket)
        outcome, posts = await generate([DOWN], ticket)
        made.append(posts)
    assert made[0] > 1 and made[-1] == 0
    assert isinstance(outcome, Failure) and outcome.retry_after is not None and outcome.retry_after >= 30
    assert outcome.attempts == 0 and "circuit breaker is open" in outcome.error.detail


async def test_a_call_held_between_retries_ends_the_delivery_with_the_last_calls_error(
    dynamodb: DynamoDBClient,
) -> None:
    guards = Guards(Breaker(GUARDS_TABLE, dynamodb, BreakerConfig(min_calls=2)))
    ticket = await guards.before_job()
    assert isinstance(ticket, Ticket)
    outcome, posts = await generate([DOWN], ticket)
    assert posts == 2  # the second failure opened the circuit: no third call
    assert isinstance(outcome, Failure) and outcome.attempts == 2
    assert outcome.error.status_code == 503 and outcome.error.retryable
    assert "calls paused: the circuit breaker is open" in outcome.error.detail
    assert outcome.retries == [ErrorType.SERVER_ERROR]
    # the rest of the 30 s pause (less the moments since it opened), plus jitter
    assert outcome.retry_after is not None and outcome.retry_after > 25


@pytest.mark.parametrize("wait", [True, False])
async def test_over_the_budget_a_job_waits_for_the_next_day_or_fails(
    dynamodb: DynamoDBClient, wait: bool
) -> None:
    budget = DailyBudget(GUARDS_TABLE, 0.05, dynamodb, clock=lambda: 86400.0)  # a midnight, UTC
    guards = Guards(budget=budget, price_usd=0.039, wait_for_next_day=wait)
    ticket = await guards.before_job()
    assert isinstance(ticket, Ticket)
    held = await guards.before_job()
    assert isinstance(held, Failure) and held.error.type == ErrorType.BUDGET_EXCEEDED
    assert held.error.retryable is wait
    if wait:
        assert held.retry_after is not None and held.retry_after >= 86400
    else:
        assert held.retry_after is None
    outcome, _ = await generate([DOWN], ticket)  # no image paid for: the reservation is released
    await guards.after_job(ticket, outcome)
    assert budget.committed() == 0


def test_guard_status_says_what_the_runner_shows(dynamodb: DynamoDBClient) -> None:
    settings = Settings(bucket="b", idempotency_table="t", guards_table=GUARDS_TABLE, daily_budget_usd=0.1)
    assert guard_status(settings, dynamodb).describe() == "circuit closed, budget $0.10 of $0.10 left today"
    DailyBudget(GUARDS_TABLE, 0.1, dynamodb).reserve(0.039)
    breaker = Breaker(GUARDS_TABLE, dynamodb)
    for _ in range(10):
        breaker.record(breaker.admit(), "rate_limited")
    shown = guard_status(settings, dynamodb).describe()
    assert re.fullmatch(r"circuit open \((29|30) s left\), budget \$0\.06 of \$0\.10 left today", shown), (
        shown
    )
    off = settings.model_copy(update={"daily_budget_usd": 0, "breaker_min_calls": 0})
    assert guard_status(off, dynamodb).describe() == "circuit off, no daily budget"
