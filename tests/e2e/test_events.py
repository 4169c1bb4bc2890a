"""Each handler on each sample event in events/, against the template's resources in moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nanobanana_cli.harness import Pipeline

ROOT = Path(__file__).resolve().parents[2]


def _event(name: str, pipeline: Pipeline, function: str) -> list[dict[str, Any]]:
    """The event's records, which name the local queues."""
    records: list[dict[str, Any]] = json.loads((ROOT / "events" / name).read_text())["Records"]
    for record in records:
        assert record["eventSourceARN"] == pipeline.stack.functions[function].queue_arn
    return records


def test_ingest_reads_the_put_object_the_event_names(pipeline: Pipeline) -> None:
    records = _event("ingest_sqs_s3_put.json", pipeline, "IngestFunction")
    notification = json.loads(records[0]["body"])
    s3_event = notification["Records"][0]["s3"]
    assert s3_event["bucket"]["name"] == pipeline.stack.bucket
    body = (ROOT / "samplefiles/cats.txt").read_bytes()
    put = pipeline.s3.put_object(Bucket=pipeline.stack.bucket, Key=s3_event["object"]["key"], Body=body)
    # S3 names the version it stored; the sample's is a real-looking one that moto cannot know.
    s3_event["object"].update(versionId=put["VersionId"], size=len(body), eTag=put["ETag"].strip('"'))
    records[0]["body"] = json.dumps(notification)
    assert pipeline.invoke(pipeline.ingest, records) == {"batchItemFailures": []}
    assert pipeline.depth(pipeline.jobs_queue) == 3


def test_ingest_skips_the_s3_test_event(pipeline: Pipeline) -> None:
    records = _event("ingest_sqs_s3_test_event.json", pipeline, "IngestFunction")
    assert pipeline.invoke(pipeline.ingest, records) == {"batchItemFailures": []}
    assert pipeline.depth(pipeline.jobs_queue) == 0


def test_generate_makes_every_job_of_the_event(pipeline: Pipeline) -> None:
    records = _event("generate_sqs_jobs.json", pipeline, "GenerateFunction")
    assert pipeline.invoke(pipeline.generate, records) == {"batchItemFailures": []}
    unnamed = records[2]["messageId"]
    assert {
        "outputs/events/event-cat.json",
        "outputs/events/event-wide.json",
        f"outputs/sqs/{unnamed}.json",
    } <= set(pipeline.keys())
    for batch in ("events", "sqs"):
        for record in pipeline.results(batch).values():
            assert record["status"] == "succeeded", record
