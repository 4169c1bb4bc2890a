"""The client's before-call hook: every gateway call is counted first, and a refusal ends the calls."""

from __future__ import annotations

import httpx
from gateway_cases import API_KEY, PNG, FakeClock, completion, data_url

from nanobanana.client import Failure, GatewayClient, GatewayConfig, Success
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline

JOB = parse_job({"id": "j1", "prompt": "a cat"})


async def generate(
    answers: list[httpx.Response], allowed: int, *, retryable: bool
) -> tuple[Success | Failure, list[PipelineError | None], int]:
    """Run one job against `answers` (the last one repeats) with a hook that allows `allowed` calls."""
    seen: list[PipelineError | None] = []
    posts = 0

    def gateway(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        posts += 1
        return answers[min(posts, len(answers)) - 1]

    async def before_call(last: PipelineError | None) -> None:
        seen.append(last)
        if len(seen) > allowed:
            kind = last.type if last else ErrorType.SERVER_ERROR
            raise PipelineError(kind, "refused", retryable=retryable, retry_after=60.0 if retryable else None)

    clock = FakeClock()
    config = GatewayConfig(base_url="https://gw.example", api_key=API_KEY)
    async with GatewayClient(config, transport=httpx.MockTransport(gateway), clock=clock) as client:
        outcome = await client.generate(JOB, [], Deadline.after(300, clock), before_call=before_call)
    return outcome, seen, posts


async def test_each_call_is_announced_with_the_last_error() -> None:
    answers = [httpx.Response(503, json={"error": {"message": "busy"}})] * 2
    answers.append(httpx.Response(200, json=completion(f"![image]({data_url(PNG)})")))
    outcome, seen, posts = await generate(answers, allowed=8, retryable=False)
    assert isinstance(outcome, Success)
    assert posts == 3
    assert seen[0] is None
    assert [e.status_code for e in seen[1:] if e] == [503, 503]


async def test_a_refusal_ends_the_calls_with_the_last_error_counted_once() -> None:
    outcome, seen, posts = await generate(
        [httpx.Response(503, json={"error": {"message": "busy"}})], allowed=2, retryable=False
    )
    assert isinstance(outcome, Failure)
    assert posts == 2 and len(seen) == 3
    assert outcome.attempts == 2
    assert outcome.error.type is ErrorType.SERVER_ERROR and not outcome.error.retryable
    assert outcome.retry_after is None
    assert len(outcome.retries) + 1 == outcome.attempts  # each call's error counted once


async def test_a_retryable_refusal_before_any_call_waits_in_the_queue() -> None:
    outcome, _, posts = await generate([httpx.Response(200)], allowed=0, retryable=True)
    assert isinstance(outcome, Failure)
    assert posts == 0 and outcome.attempts == 0
    assert outcome.retry_after == 60.0
