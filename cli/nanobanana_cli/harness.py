"""A local stack to drive by hand: the template's resources in moto, the real handlers, a gateway.

Tests and benchmarks provision it with `local_pipeline`, then put prompt files, send jobs, drain the
queues as the event-source mappings would, or invoke one handler on records they took off a queue.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto import mock_aws

from nanobanana.batches import BATCH_FILE, COMPLETION_FILES, FAILED_FILE, RESULTS_FILE
from nanobanana.storage import INGEST_ERROR_FILE, output_key
from nanobanana_cli.runner import (
    LambdaContext,
    drain,
    event_source_mappings,
    load_handler,
    preserved_environ,
    queue_depth,
    sqs_record,
)
from nanobanana_cli.stack import LOCAL_ENVIRONMENT, REGION, Function, Stack, provision_template
from nanobanana_cli.standin import StandInGateway

#: JSON files of a batch folder that are not a job's result record.
NOT_RECORDS = frozenset({INGEST_ERROR_FILE, *COMPLETION_FILES})


@dataclass
class Pipeline:
    """The provisioned stack and the gateway its functions call (None: one in another process)."""

    stack: Stack
    gateway: StandInGateway | None

    def __post_init__(self) -> None:
        #: message bodies handlers sent inside `captured_sends`
        self.sent: list[str] = []
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)

    @property
    def ingest(self) -> Function:
        return self.stack.functions["IngestFunction"]

    @property
    def generate(self) -> Function:
        return self.stack.functions["GenerateFunction"]

    @property
    def prompts_queue(self) -> str:
        return self.stack.queue(self.ingest.queue_arn).url

    @property
    def jobs_queue(self) -> str:
        return self.stack.queue(self.generate.queue_arn).url

    @property
    def results_queue(self) -> str:
        return self.stack.queues["ResultsQueue"].url

    def events(self) -> list[dict[str, Any]]:
        """Take every event off the results queue (EventBridge's envelope: detail-type, detail ...)."""
        taken: list[dict[str, Any]] = []
        while messages := self.sqs.receive_message(QueueUrl=self.results_queue, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                taken.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.results_queue, ReceiptHandle=message["ReceiptHandle"])
        return taken

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
        mappings = event_source_mappings(self.stack, concurrency)
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
        handler = load_handler(function, f"test{id(records)}")
        result: dict[str, Any] = handler({"Records": records}, LambdaContext.starting_now(function, timeout))
        return result

    @contextmanager
    def captured_sends(self, *, keep: bool = True) -> Iterator[Counter[str]]:
        """Answer the SQS sends of handlers loaded inside the block here, keeping their message bodies.

        For ingest at scale: moto's SQS counts every message of a queue on each send, so 100,000 jobs
        would take it many minutes. The handler's code runs unchanged; only the send's answer is local.
        The counter has one entry per SQS operation called; with `keep`, the bodies are in `self.sent`.
        """
        calls: Counter[str] = Counter()

        def answer(params: dict[str, Any], model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            calls[model.name] += 1
            request = json.loads(params["body"])  # SQS speaks JSON: the serialized call
            entries = request.get("Entries") or [{"Id": "0", **request}]
            if keep:
                self.sent.extend(entry["MessageBody"] for entry in entries)
            successful = [
                {
                    "Id": entry["Id"],
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": _md5(entry["MessageBody"]),
                }
                for entry in entries
            ]
            parsed = {"Successful": successful, "Failed": []} if "Entries" in request else successful[0]
            return AWSResponse("https://sqs.local/", 200, HTTPHeaders(), None), parsed

        # clients built from now on (a handler's, at its cold start) are answered here
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        hook = cast(Callable[..., None], answer)  # a before-call hook may answer in the call's place
        for operation in ("SendMessageBatch", "SendMessage"):
            events.register(f"before-call.sqs.{operation}", hook)
        try:
            yield calls
        finally:
            for operation in ("SendMessageBatch", "SendMessage"):
                events.unregister(f"before-call.sqs.{operation}", hook)

    def depth(self, queue_url: str) -> int:
        return queue_depth(self.sqs, queue_url)

    def keys(self, prefix: str = "outputs/") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def result(self, batch: str, job_id: str) -> dict[str, Any]:
        key = output_key(batch, f"{job_id}.json")
        body = self.s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()
        record: dict[str, Any] = json.loads(body)
        return record

    def results(self, batch: str) -> dict[str, dict[str, Any]]:
        """The batch's result records by job id (its own folder only, without _ingest_error.json or
        the completion files)."""
        folder = output_key(batch, "")
        names = [key.removeprefix(folder) for key in self.keys(folder)]
        files = [n for n in names if n.endswith(".json") and "/" not in n and n not in NOT_RECORDS]
        return {name.removesuffix(".json"): self.result(batch, name.removesuffix(".json")) for name in files}

    def completion(self, batch: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """A completed run's `_batch.json`, `_results.jsonl` and `_failed.jsonl`, read back."""

        def text(name: str) -> str:
            key = output_key(batch, name)
            return str(self.s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read().decode())

        summary: dict[str, Any] = json.loads(text(BATCH_FILE))
        results = [json.loads(line) for line in text(RESULTS_FILE).splitlines()]
        failed = [json.loads(line) for line in text(FAILED_FILE).splitlines()]
        return summary, results, failed

    def versions(self, key: str) -> int:
        """How many times an object was written (the bucket is versioned)."""
        listed = self.s3.list_object_versions(Bucket=self.stack.bucket, Prefix=key).get("Versions", [])
        return sum(1 for version in listed if version["Key"] == key)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@contextmanager
def local_pipeline(
    base_url: str,
    api_key: str,
    gateway: StandInGateway | None = None,
    parameters: Mapping[str, str] | None = None,
) -> Iterator[Pipeline]:
    """The template's stack in moto, its functions calling `base_url` with `api_key` (the secret's value);
    `gateway` is the stand-in serving it, when it runs in this process; `parameters`: the template's."""
    with preserved_environ():
        os.environ.update(LOCAL_ENVIRONMENT)
        with mock_aws():
            stack = provision_template({"ApiBaseUrl": base_url, **(parameters or {})}, api_key)
            yield Pipeline(stack, gateway)
