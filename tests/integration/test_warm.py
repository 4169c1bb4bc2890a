"""One warm execution environment, reused across invocations as Lambda reuses it: whatever fails after
the gateway answered, the answer's pooled connection goes back to the pool, and later batches still run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nanobanana.client import GatewayClient
from nanobanana_cli.harness import Pipeline
from nanobanana_cli.runner import Handler, LambdaContext, load_handler


@pytest.fixture
def warm(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Handler]:
    """The Generate handler loaded once; with LAMBDA_TASK_ROOT set, Powertools keeps one event loop for
    every invocation, as in Lambda (and with it the gateway client and its connection pool)."""
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(pipeline.generate.code))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield load_handler(pipeline.generate, "warm")
    asyncio.set_event_loop(None)
    loop.close()


def batch(pipeline: Pipeline, handler: Handler, name: str) -> dict[str, Any]:
    for n in range(10):
        pipeline.send_job({"id": f"{name}-{n}", "prompt": f"{name} {n}"})
    records = pipeline.receive(pipeline.jobs_queue)
    assert len(records) == 10
    response: dict[str, Any] = handler(
        {"Records": records}, LambdaContext.starting_now(pipeline.generate, timeout=40)
    )
    return response


def test_failures_after_the_answer_leave_no_connection_behind(
    pipeline: Pipeline, warm: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = GatewayClient._read_answer

    async def fails_once_answered(self: GatewayClient, response: httpx.Response) -> bytes:
        await read(self, response)
        raise RuntimeError("a failure after the answer arrived (as the tracer's once was)")

    with monkeypatch.context() as patch:
        patch.setattr(GatewayClient, "_read_answer", fails_once_answered)
        for round_ in range(3):  # 30 failures: more than the client's 16 pooled connections
            assert len(batch(pipeline, warm, f"broken{round_}")["batchItemFailures"]) == 10
    assert batch(pipeline, warm, "fine") == {"batchItemFailures": []}
    assert all(pipeline.result("sqs", f"fine-{n}")["attempts"] == 1 for n in range(10))
