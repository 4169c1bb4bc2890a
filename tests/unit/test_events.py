"""Events: entries that fit EventBridge's 256 KB, and a bus that refuses them costs no job its end."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from nanobanana.events import MAX_ENTRY_BYTES, SOURCE, Publisher, entry_bytes, fit

RECORD: dict[str, Any] = {
    "id": "big",
    "batch": "b",
    "status": "failed",
    "images": [],
    "error": {"type": "content_filtered", "message": "refused"},
    "source": {"queue": "q", "message_id": "m"},
    "text": None,
    "metadata": None,
    "prompt": "a cat",
}


def test_a_small_record_is_sent_whole() -> None:
    assert json.loads(fit("Job Failed", RECORD)) == RECORD


@pytest.mark.parametrize(
    ("fields", "truncated"),
    [
        ({"text": "w" * 300_000}, ["text"]),
        ({"text": "w" * 100_000, "metadata": {"blob": "m" * 270_000}}, ["text", "metadata"]),
        ({"metadata": {"blob": "é" * 140_000}}, ["metadata"]),  # bytes, not characters, are counted
    ],
)
def test_a_big_record_loses_its_biggest_fields_and_says_which(
    fields: dict[str, Any], truncated: list[str]
) -> None:
    detail = fit("Job Failed", {**RECORD, **fields})
    assert entry_bytes(SOURCE, "Job Failed", detail) <= MAX_ENTRY_BYTES
    sent = json.loads(detail)
    assert sent["truncated"] == truncated
    assert sent["error"] == RECORD["error"]
    assert all(sent[name] is None for name in truncated)


def test_a_record_too_big_even_then_keeps_what_identifies_it() -> None:
    detail = fit("Job Succeeded", {**RECORD, "images": [f"outputs/b/{n:06d}.png" for n in range(20_000)]})
    sent = json.loads(detail)  # the images alone pass the limit: only the essentials are left
    assert sent["truncated"] is True
    assert sent["id"] == "big"


def test_entries_the_bus_refuses_are_resent_then_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = boto3.client("events", region_name="us-east-1")
    publisher = Publisher(client, bus="default", stack="s", bucket="bkt")
    refused = {
        "FailedEntryCount": 1,
        "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow"}],
    }
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("put_events", refused)
        publisher.job_ended([RECORD])
        stub.assert_no_pending_responses()
    assert "events could not be put on the bus" in caplog.text


def test_a_partly_refused_call_resends_only_the_refused_entries() -> None:
    client = boto3.client("events", region_name="us-east-1")
    publisher = Publisher(client, bus="default", stack="s", bucket="bkt")
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"EventId": "1"}, {"ErrorCode": "InternalFailure"}]},
        )
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "2"}]})
        publisher.job_ended([RECORD, {**RECORD, "id": "second"}])
        stub.assert_no_pending_responses()


def test_a_bus_that_cannot_be_reached_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client("events", region_name="us-east-1")
    publisher = Publisher(client, bus="missing", stack="s", bucket="bkt")
    with Stubber(client) as stub:
        stub.add_client_error("put_events", "ResourceNotFoundException", "Event bus missing does not exist.")
        publisher.batch_completed({"batch": "b"})
    (logged,) = caplog.records
    assert "ResourceNotFoundException" in str(logged.__dict__.get("errors"))
