"""Nothing paid is lost: whatever fails after an answer with an image, no redelivery calls again, and
each job makes at most MaxGatewayCallsPerJob calls over all its deliveries."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from nanobanana.ledger import Ledger
from nanobanana.storage import Storage
from nanobanana_cli.harness import Pipeline


def throttled(*_: Any, **__: Any) -> None:
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")


def time_passes(pipeline: Pipeline) -> None:
    """The waits the gateway asked for are over (as they are when SQS redelivers after them)."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    table = pipeline.generate.environment["IDEMPOTENCY_TABLE"]
    for item in dynamodb.scan(TableName=table)["Items"]:
        if "not_before" in item:
            dynamodb.update_item(
                TableName=table, Key={"id": item["id"]}, UpdateExpression="REMOVE not_before"
            )


def deliver(pipeline: Pipeline, record: dict[str, Any], receive_count: int) -> dict[str, Any]:
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return pipeline.invoke(pipeline.generate, [record], timeout=60)


def test_a_failure_after_the_images_were_kept_is_finished_by_the_redelivery(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.send_job({"id": "kept", "prompt": "precious"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "finish", throttled)  # DynamoDB fails after the answer was kept
        failed = deliver(pipeline, record, 1)
    assert failed == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert deliver(pipeline, record, 2) == {"batchItemFailures": []}
    result = pipeline.result("sqs", "kept")
    assert result["status"] == "succeeded"
    assert result["attempts"] == 1
    assert result["cost_usd"] == pytest.approx(0.039)
    assert pipeline.keys("outputs/sqs/kept.png") == ["outputs/sqs/kept.png"]
    assert pipeline.gateway is not None and pipeline.gateway.calls_for("precious") == 1
    assert deliver(pipeline, record, 3) == {"batchItemFailures": []}  # final: a duplicate is skipped
    assert pipeline.gateway.calls_for("precious") == 1


def test_images_that_cannot_be_stored_end_the_job_with_their_cost(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Storage.put_with_retries

    def s3_refuses_images(self: Storage, key: str, *args: Any, **kwargs: Any) -> None:
        if key.endswith(".png"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
        real(self, key, *args, **kwargs)

    monkeypatch.setattr(Storage, "put_with_retries", s3_refuses_images)
    pipeline.send_job({"id": "lost", "prompt": "paid then lost"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    assert deliver(pipeline, record, 1) == {"batchItemFailures": []}
    result = pipeline.result("sqs", "lost")
    assert result["status"] == "failed"
    assert result["error"]["type"] == "pipeline_error"
    assert "AccessDenied" in result["error"]["message"]
    assert result["cost_usd"] == pytest.approx(0.039)
    assert result["attempts"] == 1
    assert deliver(pipeline, record, 2) == {"batchItemFailures": []}
    assert pipeline.gateway is not None and pipeline.gateway.calls_for("paid then lost") == 1


def test_a_job_makes_at_most_its_calls_over_all_deliveries(pipeline: Pipeline) -> None:
    pipeline.generate.environment["MAX_GATEWAY_CALLS_PER_JOB"] = "2"
    pipeline.send_job({"id": "down", "prompt": "[[status:503:300]] down"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    for delivery in (1, 2):  # one call each: the 300 s Retry-After sends it back to the queue
        assert deliver(pipeline, record, delivery) == {
            "batchItemFailures": [{"itemIdentifier": record["messageId"]}]
        }
        assert pipeline.keys("outputs/sqs/") == []
        time_passes(pipeline)
    assert deliver(pipeline, record, 3) == {"batchItemFailures": []}  # no calls left: it ends
    result = pipeline.result("sqs", "down")
    assert result["error"]["type"] == "server_error"
    assert result["error"]["retryable"] is False
    assert "MaxGatewayCallsPerJob" in result["error"]["message"]
    assert result["attempts"] == 2
    assert result["cost_usd"] == 0
    assert pipeline.gateway is not None and pipeline.gateway.calls_for("down") == 2


def test_a_wait_of_a_day_is_cut_to_what_sqs_accepts(pipeline: Pipeline) -> None:
    """SQS refuses a visibility timeout ending over 12 h after the receipt: the wait is split, and the next
    delivery waits the rest without calling the gateway."""
    import boto3

    asked: list[int] = []
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: asked.append(params["VisibilityTimeout"]),
    )
    pipeline.send_job({"id": "tomorrow", "prompt": "[[status:429:86400]] come back tomorrow"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    deferred = {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert deliver(pipeline, record, 1) == deferred
    assert deliver(pipeline, record, 2) == deferred  # the rest of the day, without a call
    assert asked == [12 * 3600 - 15 * 60] * 2
    assert pipeline.gateway is not None and pipeline.gateway.calls_for("come back tomorrow") == 1
