"""Job messages: ingest's envelopes and whatever users send straight to the jobs queue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from nanobanana.errors import InvalidJobError
from nanobanana.jobs import parse_job
from nanobanana.messages import MAX_MESSAGE_BYTES, ORIGIN_ATTRIBUTE, envelope, read_message

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:nanobanana-jobs"


def sqs_record(body: str, *, receive_count: int = 1, origin: str | None = None) -> SQSRecord:
    attributes = {ORIGIN_ATTRIBUTE: {"stringValue": origin, "dataType": "String"}} if origin else {}
    return SQSRecord(
        {
            "messageId": "0b7c6c2f-4e1a-4f5e-9d0e-1a2b3c4d5e6f",
            "receiptHandle": "handle",
            "body": body,
            "attributes": {"ApproximateReceiveCount": str(receive_count)},
            "messageAttributes": attributes,
            "eventSource": "aws:sqs",
            "eventSourceARN": QUEUE_ARN,
            "awsRegion": "us-east-1",
        }
    )


def test_envelope_round_trip() -> None:
    job = parse_job({"prompt": "a cat", "seed": 1}, fallback_id="00003")
    source = {"bucket": "b", "key": "prompts/cats.txt", "line": 3}
    body = envelope(job, batch="cats", source=source, upload="v1", created_at="2025-11-28T10:00:00.000Z")
    work = read_message(sqs_record(body, receive_count=2, origin="ingest"))
    assert (work.id, work.batch, work.upload, work.source, work.receive_count) == (
        "00003",
        "cats",
        "v1",
        source,
        2,
    )
    assert work.job == job
    assert work.key == {"batch": "cats", "id": "00003", "upload": "v1"}
    assert work.created_at == "2025-11-28T10:00:00.000Z"  # when ingest read it, not when it arrived


def test_a_direct_message_was_created_when_it_was_sent() -> None:
    record = sqs_record(json.dumps({"prompt": "x"}))
    record["attributes"]["SentTimestamp"] = "1764324000000"
    assert read_message(record).created_at == "2025-11-28T10:00:00.000Z"


def test_envelope_refuses_a_job_too_big_for_a_message() -> None:
    job = parse_job({"prompt": "x" * 100_000, "metadata": {"blob": "y" * MAX_MESSAGE_BYTES}}, fallback_id="1")
    with pytest.raises(InvalidJobError, match="too big"):
        envelope(job, batch="b", source={}, upload="u", created_at="t")


def test_direct_message_uses_its_id_and_batch() -> None:
    work = read_message(sqs_record(json.dumps({"id": "poster-1", "prompt": "x", "batch": "posters"})))
    assert (work.id, work.batch, work.upload) == ("poster-1", "posters", "sqs")
    assert work.source == {"queue": "nanobanana-jobs", "message_id": "0b7c6c2f-4e1a-4f5e-9d0e-1a2b3c4d5e6f"}


def test_direct_message_without_id_is_its_own_job() -> None:
    work = read_message(sqs_record(json.dumps({"prompt": "x"})))
    assert (work.id, work.batch) == ("0b7c6c2f-4e1a-4f5e-9d0e-1a2b3c4d5e6f", "sqs")


@pytest.mark.parametrize(
    ("body", "job_id", "batch", "field"),
    [
        ("not json", "0b7c6c2f-4e1a-4f5e-9d0e-1a2b3c4d5e6f", "sqs", ""),
        (json.dumps({"id": "mine", "batch": "b2", "prompt": "x", "size": 3}), "mine", "b2", "size"),
        (
            json.dumps({"id": "a/b", "batch": "../up", "prompt": "x"}),
            "0b7c6c2f-4e1a-4f5e-9d0e-1a2b3c4d5e6f",
            "sqs",
            "id",
        ),
        (json.dumps(["prompt"]), "0b7c6c2f-4e1a-4f5e-9d0e-1a2b3c4d5e6f", "sqs", ""),
    ],
)
def test_bad_direct_messages_become_invalid_work(body: str, job_id: str, batch: str, field: str) -> None:
    work = read_message(sqs_record(body))
    assert work.job is None
    assert work.error is not None and work.error.field == field
    assert (work.id, work.batch) == (job_id, batch)


def test_an_envelope_is_only_trusted_with_its_attribute() -> None:
    job = parse_job({"prompt": "a"}, fallback_id="00001")
    body: Any = envelope(job, batch="cats", source={}, upload="v1", created_at="t")
    work = read_message(sqs_record(body))  # sent by hand, without the attribute: a user's job object
    assert work.error is not None and work.error.field == "job"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[" * 10_000 + "]" * 10_000, "nested more than 32 levels"),
        ('{"prompt": "x", "seed": ' + "9" * 5000 + "}", "seed: a number of 5000 digits"),
        ('{"prompt": "x", "metadata": ' + '{"a":' * 256 + "1" + "}" * 256 + "}", "metadata: nested"),
        ('{"prompt": "x", "temperature": NaN}', "temperature: NaN is not a number"),
        ('{"prompt": "x", "seed": "1"}', "seed: Input should be a valid integer"),
    ],
)
def test_a_hostile_message_is_an_invalid_job_not_an_exception(body: str, problem: str) -> None:
    work = read_message(sqs_record(body))
    assert work.job is None and work.error is not None
    assert problem in work.error.message
