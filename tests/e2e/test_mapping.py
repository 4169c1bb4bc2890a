"""The event-source mapping against tiny handlers: deletes, partial failures, crashes and redrive."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import boto3
import pytest

from nanobanana_cli import runner
from nanobanana_cli.runner import EventSourceMapping, drain, queue_depth, sqs_record
from nanobanana_cli.stack import REGION, Function, Queue

HANDLER = """
import json, os
SEEN = []
def lambda_handler(event, context):
    assert context.get_remaining_time_in_millis() > 0
    failures = []
    for record in event["Records"]:
        SEEN.append(record)
        body = json.loads(record["body"])
        with open(os.environ["SEEN_FILE"], "a") as seen:
            seen.write(json.dumps({"id": body["id"], "count": record["attributes"]["ApproximateReceiveCount"],
                                   "arn": record["eventSourceARN"], "env": os.environ["MARK"]}) + "\\n")
        if body.get("crash"):
            raise RuntimeError("boom")
        if body.get("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""


def _queue(max_receive_count: int) -> Queue:
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    url = sqs.create_queue(QueueName="src", Attributes={"VisibilityTimeout": "300", "RedrivePolicy": policy})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Queue("src", url, arn, dlq, max_receive_count)


def _function(tmp_path: Path, queue: Queue, batch_size: int = 10) -> Function:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    return Function(
        logical_id="Fake",
        name="fake",
        arn="arn:aws:lambda:us-east-1:123456789012:function:fake",
        code=code,
        handler="app.lambda_handler",
        environment={"SEEN_FILE": str(tmp_path / "seen.jsonl"), "MARK": "from-template"},
        timeout_seconds=30,
        memory_mb=256,
        queue_arn=queue.arn,
        batch_size=batch_size,
    )


def _seen(tmp_path: Path) -> list[dict[str, str]]:
    lines = (tmp_path / "seen.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _send(queue: Queue, *bodies: Mapping[str, object]) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for body in bodies:
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))


def test_successes_are_deleted_and_failures_dead_lettered_after_max_receives(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "LOCAL_REDELIVERY_SECONDS", 0)
    queue = _queue(max_receive_count=2)
    mapping = EventSourceMapping(_function(tmp_path, queue, batch_size=1), queue, concurrency=2)
    _send(queue, {"id": "ok"}, {"id": "bad", "fail": True}, {"id": "crash", "crash": True})
    try:
        drain([mapping])
    finally:
        mapping.stop()
    seen = _seen(tmp_path)
    counts = {item["id"]: sorted(int(s["count"]) for s in seen if s["id"] == item["id"]) for item in seen}
    assert counts == {"ok": [1], "bad": [1, 2], "crash": [1, 2]}
    assert {s["arn"] for s in seen} == {queue.arn}
    assert {s["env"] for s in seen} == {"from-template"}
    sqs = boto3.client("sqs", region_name=REGION)
    assert queue_depth(sqs, queue.url) == 0
    assert queue.dead_letter_url is not None
    assert queue_depth(sqs, queue.dead_letter_url) == 2
    assert mapping.deleted == 1


def test_a_crash_fails_the_whole_batch(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "LOCAL_REDELIVERY_SECONDS", 0)
    queue = _queue(max_receive_count=1)
    mapping = EventSourceMapping(_function(tmp_path, queue, batch_size=10), queue, concurrency=1)
    _send(queue, {"id": "innocent"}, {"id": "crash", "crash": True})
    try:
        drain([mapping])
    finally:
        mapping.stop()
    assert queue.dead_letter_url is not None
    assert queue_depth(boto3.client("sqs", region_name=REGION), queue.dead_letter_url) == 2


def test_each_environment_loads_its_own_module(aws: None, tmp_path: Path) -> None:
    queue = _queue(max_receive_count=5)
    mapping = EventSourceMapping(_function(tmp_path, queue, batch_size=1), queue, concurrency=3)
    try:
        handlers = [environment.handler for environment in mapping.environments]
        assert len({id(handler.__globals__["SEEN"]) for handler in handlers}) == 3
        _send(queue, *({"id": str(n)} for n in range(6)))
        drain([mapping])
        assert sum(len(handler.__globals__["SEEN"]) for handler in handlers) == 6
        assert all(len(handler.__globals__["SEEN"]) <= 6 for handler in handlers)
    finally:
        mapping.stop()


def test_sqs_record_has_lambdas_shape(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="{}",
        MessageAttributes={"origin": {"DataType": "String", "StringValue": "test"}},
    )
    message = sqs.receive_message(
        QueueUrl=url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"][0]
    record = sqs_record(dict(message), "arn:aws:sqs:us-east-1:123456789012:q")
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    } <= set(record["attributes"])
    assert record["messageAttributes"]["origin"] == {
        "stringValue": "test",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["eventSource"] == "aws:sqs"
