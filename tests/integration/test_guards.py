"""The guards in the template's stack: the circuit breaker through an outage, the daily budget's holds."""

from __future__ import annotations

import time

import boto3
import pytest

from bench.outage import JOBS, outage_run
from nanobanana.breaker import Breaker
from nanobanana.config import Settings
from nanobanana.retry import Backoff
from nanobanana_cli.harness import Pipeline, local_pipeline
from nanobanana_cli.stack import REGION
from nanobanana_cli.standin import StandInGateway
from tests.conftest import API_KEY


def test_an_outage_opens_the_circuit_then_every_job_succeeds_paid_once() -> None:
    run = outage_run(breaker=True, down_seconds=2.0, pause_seconds=1)  # every job succeeds: it asserts so
    assert run["paid_calls"] == JOBS  # one paid call each
    assert run["calls_while_down"] < 2 * JOBS  # the first wave, then held in the queue


@pytest.mark.parametrize("action", ["fail", "wait"])
def test_over_the_daily_budget_a_job_is_not_called(gateway: StandInGateway, action: str) -> None:
    with local_pipeline(
        gateway.base_url, API_KEY, gateway, {"DailyBudgetUSD": "0.10", "OverBudget": action}
    ) as pipeline:
        for n in range(3):
            pipeline.send_job({"id": f"job{n}", "prompt": f"a kite number {n}"})
        records = pipeline.receive(pipeline.jobs_queue)
        response = pipeline.invoke(pipeline.generate, records)
        results = pipeline.results("sqs")
        held = [
            job_id
            for job_id in ("job0", "job1", "job2")
            if results.get(job_id, {}).get("status") != "succeeded"
        ]
        assert len(held) == 1 and len(gateway.requests) == 2
        if action == "fail":
            assert response == {"batchItemFailures": []}
            error = results[held[0]]["error"]
            assert error["type"] == "budget_exceeded" and error["retryable"] is False
            assert (
                "raise DailyBudgetUSD" in error["message"] and "$0.078 paid or reserved" in error["message"]
            )
        else:  # back to the queue, hidden until the next UTC day; no record yet
            assert len(response["batchItemFailures"]) == 1
            assert held[0] not in results


def test_on_its_last_delivery_a_job_held_by_the_budget_ends_with_a_record(gateway: StandInGateway) -> None:
    with local_pipeline(gateway.base_url, API_KEY, gateway, {"DailyBudgetUSD": "0.01"}) as pipeline:
        pipeline.send_job({"id": "late", "prompt": "a kite"})
        (record,) = pipeline.receive(pipeline.jobs_queue)
        record["attributes"]["ApproximateReceiveCount"] = "5"
        response = pipeline.invoke(pipeline.generate, [record])
        assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}  # on to the DLQ
        error = pipeline.result("sqs", "late")["error"]
        assert error["type"] == "budget_exceeded" and error["retryable"] is True
        assert "_failed.jsonl" in error["message"]
        assert gateway.requests == []


def test_a_job_whose_gateway_always_answers_500_makes_at_most_8_calls_in_all(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Backoff, "delay", lambda self, retry: 0.01)  # the retries' waits, not their number
    pipeline.send_job({"id": "down", "prompt": "[[status:500]] always down"})
    pipeline.run()
    result = pipeline.result("sqs", "down")
    assert result["status"] == "failed" and result["error"]["type"] == "server_error"
    assert result["attempts"] == 8
    assert pipeline.gateway is not None and pipeline.gateway.calls_for("always down") == 8


@pytest.mark.parametrize(("receive_count", "recorded"), [(1, False), (5, True)])
def test_a_job_meeting_the_open_circuit_waits_and_on_its_last_delivery_ends_with_a_record(
    pipeline: Pipeline, receive_count: int, recorded: bool
) -> None:
    settings = Settings.from_env(pipeline.generate.environment)
    # one instant for every failure: ten calls that straddled a window's edge would not open it
    now = time.time()
    breaker = Breaker(settings.guards_table, boto3.client("dynamodb", region_name=REGION), clock=lambda: now)
    for _ in range(settings.breaker_min_calls):  # the deployment's calls failed: the circuit opens
        breaker.record(breaker.admit(), "server_error")
    pipeline.send_job({"id": "held", "prompt": "a kite"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    response = pipeline.invoke(pipeline.generate, [record])
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert pipeline.gateway is not None and pipeline.gateway.requests == []
    assert bool(pipeline.keys("outputs/sqs/held")) is recorded
    if recorded:
        error = pipeline.result("sqs", "held")["error"]
        assert error["type"] == "server_error" and error["retryable"] is True
        assert "circuit breaker is open" in error["message"]
