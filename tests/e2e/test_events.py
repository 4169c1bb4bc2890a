"""Each handler on each sample event in events/, against the template's resources in moto."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from nanobanana.local.runner import LambdaContext, load_handler, preserved_environ, queue_depth
from nanobanana.local.stack import LOCAL_ENVIRONMENT, REGION, Stack, provision_template
from nanobanana.local.standin import StandInGateway

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack() -> Iterator[Stack]:
    with StandInGateway() as gateway, preserved_environ():
        os.environ.update(LOCAL_ENVIRONMENT)
        with mock_aws():
            yield provision_template({"ApiBaseUrl": gateway.base_url}, "any-key")


def _event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return event


def _invoke(stack: Stack, function: str, event: dict[str, Any]) -> Any:
    spec = stack.functions[function]
    for record in event["Records"]:
        assert record["eventSourceARN"] == spec.queue_arn  # the events name the local queues
    handler = load_handler(spec, "events")
    context = LambdaContext(spec.name, spec.memory_mb, spec.arn, time.monotonic() + spec.timeout_seconds)
    return handler(event, context)


def _jobs_in_queue(stack: Stack) -> int:
    url = stack.queue(stack.functions["GenerateFunction"].queue_arn).url
    return queue_depth(boto3.client("sqs", region_name=REGION), url)


def test_ingest_reads_the_put_object_the_event_names(stack: Stack) -> None:
    event = _event("ingest_sqs_s3_put.json")
    notification = json.loads(event["Records"][0]["body"])
    s3_event = notification["Records"][0]["s3"]
    assert s3_event["bucket"]["name"] == stack.bucket
    body = (ROOT / "samplefiles/cats.txt").read_bytes()
    put = boto3.client("s3", region_name=REGION).put_object(
        Bucket=stack.bucket, Key=s3_event["object"]["key"], Body=body
    )
    # S3 names the version it stored; the sample's is a real-looking one that moto cannot know.
    s3_event["object"].update(versionId=put["VersionId"], size=len(body), eTag=put["ETag"].strip('"'))
    event["Records"][0]["body"] = json.dumps(notification)
    response = _invoke(stack, "IngestFunction", event)
    assert response == {"batchItemFailures": []}
    assert _jobs_in_queue(stack) == 3


def test_ingest_skips_the_s3_test_event(stack: Stack) -> None:
    response = _invoke(stack, "IngestFunction", _event("ingest_sqs_s3_test_event.json"))
    assert response == {"batchItemFailures": []}
    assert _jobs_in_queue(stack) == 0


def test_generate_makes_every_job_of_the_event(stack: Stack) -> None:
    event = _event("generate_sqs_jobs.json")
    response = _invoke(stack, "GenerateFunction", event)
    assert response == {"batchItemFailures": []}
    s3 = boto3.client("s3", region_name=REGION)
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=stack.bucket, Prefix="outputs/")["Contents"]}
    unnamed = event["Records"][2]["messageId"]
    assert {
        "outputs/events/event-cat.json",
        "outputs/events/event-wide.json",
        f"outputs/sqs/{unnamed}.json",
    } <= keys
    for key in keys:
        if key.endswith(".json"):
            record = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
            assert record["status"] == "succeeded", record
