"""The stack of template.yaml in moto, wired to the stand-in gateway, with the runner's Lambda plumbing.

Tests either drain the queues through the real handlers (as `nanobanana local` does) or invoke a handler
on records they received themselves, to look at one invocation's answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from nanobanana.local.runner import (
    EventSourceMapping,
    LambdaContext,
    drain,
    load_handler,
    preserved_environ,
    sqs_record,
)
from nanobanana.local.stack import LOCAL_ENVIRONMENT, REGION, Stack, provision_template
from nanobanana.local.standin import StandInGateway

API_KEY = "sk-test-integration-0123456789"


@dataclass
class Pipeline:
    stack: Stack
    gateway: StandInGateway

    def __post_init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)

    @property
    def ingest(self) -> Any:
        return self.stack.functions["IngestFunction"]

    @property
    def generate(self) -> Any:
        return self.stack.functions["GenerateFunction"]

    @property
    def prompts_queue(self) -> str:
        return self.stack.queue(self.ingest.queue_arn).url

    @property
    def jobs_queue(self) -> str:
        return self.stack.queue(self.generate.queue_arn).url

    def put(self, key: str, body: str | bytes) -> None:
        self.s3.put_object(
            Bucket=self.stack.bucket, Key=key, Body=body.encode() if isinstance(body, str) else body
        )

    def send_job(self, job: dict[str, Any] | str) -> None:
        self.sqs.send_message(
            QueueUrl=self.jobs_queue, MessageBody=job if isinstance(job, str) else json.dumps(job)
        )

    def run(self, concurrency: int = 2) -> None:
        """Drain both queues through the real handlers, as the event-source mappings would."""
        mappings = [
            EventSourceMapping(self.ingest, self.stack.queue(self.ingest.queue_arn), 1),
            EventSourceMapping(self.generate, self.stack.queue(self.generate.queue_arn), concurrency),
        ]
        try:
            drain(mappings)
        finally:
            for mapping in mappings:
                mapping.stop()

    def receive(self, queue_url: str, count: int = 10) -> list[dict[str, Any]]:
        """Take up to `count` messages off a queue as Lambda event records."""
        got = self.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=count,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return [sqs_record(dict(message), arn) for message in got]

    def invoke(
        self, function: Any, records: list[dict[str, Any]], timeout: float | None = None
    ) -> dict[str, Any]:
        """One invocation of a freshly loaded handler, with a Lambda-like context."""
        import time

        handler = load_handler(function, f"test{id(records)}")
        context = LambdaContext(
            function_name=function.name,
            memory_limit_in_mb=function.memory_mb,
            invoked_function_arn=function.arn,
            deadline=time.monotonic() + (timeout or function.timeout_seconds),
        )
        result: dict[str, Any] = handler({"Records": records}, context)
        return result

    def depth(self, queue_url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
        return sum(int(attributes[name]) for name in names)

    def keys(self, prefix: str = "outputs/") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def result(self, batch: str, job_id: str) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=self.stack.bucket, Key=f"outputs/{batch}/{job_id}.json")[
            "Body"
        ].read()
        record: dict[str, Any] = json.loads(body)
        return record

    def results(self, batch: str) -> dict[str, dict[str, Any]]:
        names = [k for k in self.keys(f"outputs/{batch}/") if k.endswith(".json") and "/_" not in k]
        return {
            k.rsplit("/", 1)[1].removesuffix(".json"): self.result(batch, k.rsplit("/", 1)[1][:-5])
            for k in names
        }


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    with StandInGateway(api_key=API_KEY) as standin:
        yield standin


@pytest.fixture
def pipeline(gateway: StandInGateway) -> Iterator[Pipeline]:
    with preserved_environ():
        os.environ.update(LOCAL_ENVIRONMENT)
        with mock_aws():
            yield Pipeline(provision_template({"ApiBaseUrl": gateway.base_url}, API_KEY), gateway)


@pytest.fixture
def tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (250, 220, 40)).save(buffer, format="PNG")
    return buffer.getvalue()
