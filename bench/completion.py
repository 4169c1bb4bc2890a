"""A 10,000-job run's accounting: AWS calls per job for counting the jobs' ends and completing the run.

The run's file and its 10,000 result records are put in moto's S3 as Ingest and Generate leave them;
then each job's end is told as Generate tells it (its event, its count in the run, the run settled),
and the last one completes the run. Every call the batch tracking makes is counted by operation: the
goal is O(1) calls per job (about 3: an event, a count, and reading its record once at completion),
and no listing of the bucket at all. The events go to a bus without rules, as moto's SQS slows down
with every message a queue holds.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import boto3
from moto import mock_aws

from nanobanana.batches import BatchTable, Completion, RunKey
from nanobanana.config import Settings
from nanobanana.events import Publisher
from nanobanana.storage import Storage, output_key

JOBS = 10_000
BUCKET = "bench-bucket"
TABLE = "bench-batches"
BUS = "bench-bus"
REGION = "us-east-1"


def _setup() -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    boto3.client("events", region_name=REGION).create_event_bus(Name=BUS)
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "batch", "KeyType": "HASH"},
            {"AttributeName": "upload", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "batch", "AttributeType": "S"},
            {"AttributeName": "upload", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _record(n: int) -> dict[str, Any]:
    job_id = f"{n:05d}"
    failed = n % 10 == 0
    return {
        "id": job_id,
        "batch": "bench",
        "status": "failed" if failed else "succeeded",
        "images": [] if failed else [output_key("bench", f"{job_id}.png")],
        "cost_usd": 0.0 if failed else 0.039,
        "error": {"type": "content_filtered", "message": "refused"} if failed else None,
    }


def bench_completion() -> dict[str, Any]:
    with mock_aws():
        _setup()
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        calls: Counter[str] = Counter()
        counting = True

        def count(event_name: str, **_: Any) -> None:
            if counting:
                calls[event_name.removeprefix("before-call.")] += 1

        s3.meta.events.register("before-call", count)
        dynamodb.meta.events.register("before-call", count)
        events.meta.events.register("before-call", count)
        storage = Storage(s3, BUCKET)
        settings = Settings(
            bucket=BUCKET, idempotency_table="unused", batches_table=TABLE, event_bus_name=BUS
        )
        table = BatchTable(TABLE, dynamodb)
        publisher = Publisher(events, bus=BUS, stack="bench", bucket=BUCKET)
        completion = Completion(table, storage, publisher, settings)

        counting = False  # what Ingest and Generate write anyway: the file and the records
        storage.put(
            "prompts/bench.txt", "".join(f"a banana, take {n}\n" for n in range(1, JOBS + 1)).encode(), ""
        )
        records = [_record(n) for n in range(1, JOBS + 1)]
        for record in records:
            storage.put_json(output_key("bench", f"{record['id']}.json"), record)
        counting = True

        run = RunKey("bench", "v1")
        table.open(run, source={"bucket": BUCKET, "key": "prompts/bench.txt"}, version=None, total=JOBS)
        started = time.perf_counter()
        for record in records[:-1]:  # as Generate's _ended does for each job
            publisher.job_ended([record])
            assert not completion.settle(table.count(run, record))
        counting_s = time.perf_counter() - started
        per_job = sum(calls.values()) / (JOBS - 1)
        before = sum(calls.values())
        started = time.perf_counter()
        publisher.job_ended([records[-1]])
        assert completion.settle(table.count(run, records[-1]))
        completion_s = time.perf_counter() - started
        counting = False
        summary = table.get(run)
        assert summary is not None
        assert (summary.status, summary.succeeded) == ("completed", JOBS - JOBS // 10)
    total = sum(calls.values())
    return {
        "jobs": JOBS,
        "calls": dict(sorted(calls.items())),
        "calls_total": total,
        "calls_per_job": round(total / JOBS, 3),
        "calls_per_job_end": round(per_job, 3),
        "completion_calls": total - before,
        "list_calls": sum(n for op, n in calls.items() if ".List" in op),
        "counting_s": round(counting_s, 1),
        "completion_s": round(completion_s, 1),
    }
