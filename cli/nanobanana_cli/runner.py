"""The Lambda side of a local run: SQS event-source mappings feeding per-thread execution environments.

It plays what Lambda does with an SQS queue: poll, build real SQS event records, invoke one batch at a
time per execution environment, delete what succeeded, leave `batchItemFailures` to be redelivered (and
dead-lettered by the queue's redrive policy, which moto enforces on receive, as SQS does).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
from moto.sqs.models import sqs_backends

from nanobanana_cli.stack import ACCOUNT_ID, GENERATE_FUNCTION, REGION, Function, Queue, Stack

#: Locally, a failed message the handler did not delay is retried after this many seconds instead of
#: the queue's VisibilityTimeout (minutes), so that a local run does not sit idle.
LOCAL_REDELIVERY_SECONDS = 1
POLL_INTERVAL_SECONDS = 0.05
SQS_MAX_MESSAGES = 10

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as `context`, with the deadline of this invocation."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    deadline: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    @classmethod
    def starting_now(cls, function: Function, timeout: float | None = None) -> LambdaContext:
        """The context of an invocation of `function` starting now; `timeout` overrides the template's."""
        return cls(
            function_name=function.name,
            memory_limit_in_mb=function.memory_mb,
            invoked_function_arn=function.arn,
            deadline=time.monotonic() + (function.timeout_seconds if timeout is None else timeout),
        )


def load_handler(function: Function, instance: str) -> Handler:
    """A fresh copy of the function's module, as a new execution environment imports it on cold start.

    The function's folder is on sys.path while it loads (as /var/task is in Lambda), and its environment
    is in os.environ: handlers read their configuration once, at import.
    """
    os.environ.update(function.environment)
    name = f"_nanobanana_local_{function.logical_id}_{instance}"
    spec = importlib.util.spec_from_file_location(name, function.handler_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {function.handler_file}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(function.code))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(function.code))
    handler: Handler = getattr(module, function.handler_name)
    return handler


def _message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS message attributes in the shape Lambda puts in an event (camelCase, binary as base64)."""

    def encode(values: list[bytes]) -> list[str]:
        return [base64.b64encode(value).decode() for value in values]

    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode()
            if "BinaryValue" in value
            else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": encode(value.get("BinaryListValues", [])),
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of a Lambda SQS event, from a ReceiveMessage result."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def _visible_at(queue_name: str, receipt_handle: str) -> float | None:
    """When moto will show the message again: how the runner sees whether a handler delayed it."""
    sqs_queue = sqs_backends[ACCOUNT_ID][REGION].get_queue(queue_name)
    for message in list(sqs_queue._messages):
        if message.receipt_handle == receipt_handle:
            return float(message.visible_at)
    return None


@dataclass
class Invocation:
    records: list[dict[str, Any]]
    visible_at: dict[str, float | None]


class ExecutionEnvironment:
    """One Lambda execution environment: its own module copy, its own thread, one invocation at a time."""

    def __init__(self, mapping: EventSourceMapping, instance: int) -> None:
        self.mapping = mapping
        self.handler = load_handler(mapping.function, str(instance))
        self.inbox: queue.Queue[Invocation | None] = queue.Queue(maxsize=1)
        self.thread = threading.Thread(
            target=self._serve, name=f"{mapping.function.logical_id}-{instance}", daemon=True
        )

    def _serve(self) -> None:
        while (invocation := self.inbox.get()) is not None:
            try:
                self.mapping.complete(invocation, self._invoke(invocation.records))
            finally:
                self.mapping.idle.put(self)

    def _invoke(self, records: list[dict[str, Any]]) -> set[str]:
        """Run the handler; the ids of the records that failed (all of them if it raised)."""
        function = self.mapping.function
        context = LambdaContext.starting_now(function)
        ids = {record["messageId"] for record in records}
        try:
            response = self.handler({"Records": records}, context)
        except Exception:
            print(f"{function.logical_id} invocation {context.aws_request_id} failed:", flush=True)
            traceback.print_exc(file=sys.stdout)
            return ids
        failures = (response or {}).get("batchItemFailures") or []
        return {str(item["itemIdentifier"]) for item in failures} & ids


class EventSourceMapping:
    """Lambda's SQS poller for one function: ReceiveMessage, invoke, delete or leave for redelivery."""

    def __init__(self, function: Function, source: Queue, concurrency: int) -> None:
        self.function = function
        self.source = source
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.idle: queue.Queue[ExecutionEnvironment] = queue.Queue()
        self.environments = [ExecutionEnvironment(self, index) for index in range(concurrency)]
        self.deleted = 0
        self._lock = threading.Lock()
        for environment in self.environments:
            environment.thread.start()
            self.idle.put(environment)

    def poll(self) -> bool:
        """Hand one batch to an idle environment; False when none is idle or the queue gave nothing."""
        try:
            environment = self.idle.get_nowait()
        except queue.Empty:
            return False
        records = self._receive()
        if not records:
            self.idle.put(environment)
            return False
        visible_at = {r["receiptHandle"]: _visible_at(self.source.name, r["receiptHandle"]) for r in records}
        environment.inbox.put(Invocation(records, visible_at))
        return True

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.function.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.source.url,
                MaxNumberOfMessages=min(SQS_MAX_MESSAGES, self.function.batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                break
            messages.extend(dict(message) for message in got)
        return [sqs_record(message, self.source.arn) for message in messages]

    def complete(self, invocation: Invocation, failed: set[str]) -> None:
        """Delete the successes; a failure the handler did not delay comes back after a short local wait."""
        done = [r for r in invocation.records if r["messageId"] not in failed]
        for start in range(0, len(done), SQS_MAX_MESSAGES):
            chunk = done[start : start + SQS_MAX_MESSAGES]
            self.sqs.delete_message_batch(
                QueueUrl=self.source.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
        for record in invocation.records:
            handle = record["receiptHandle"]
            if (
                record["messageId"] in failed
                and _visible_at(self.source.name, handle) == invocation.visible_at[handle]
            ):
                self.sqs.change_message_visibility(
                    QueueUrl=self.source.url, ReceiptHandle=handle, VisibilityTimeout=LOCAL_REDELIVERY_SECONDS
                )
        with self._lock:
            self.deleted += len(done)

    @property
    def busy(self) -> bool:
        return self.idle.qsize() < len(self.environments)

    def stop(self) -> None:
        for environment in self.environments:
            environment.inbox.put(None)
        for environment in self.environments:
            environment.thread.join()


def event_source_mappings(stack: Stack, concurrency: int) -> list[EventSourceMapping]:
    """Each function polling its queue as the template wires them; Generate in `concurrency` environments."""
    return [
        EventSourceMapping(
            function, stack.queue(function.queue_arn), concurrency if lid == GENERATE_FUNCTION else 1
        )
        for lid, function in stack.functions.items()
    ]


def queue_depth(sqs: Any, url: str) -> int:
    """Messages in the queue in any state: visible, in flight or delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def drain(mappings: list[EventSourceMapping], on_tick: Callable[[], None] = lambda: None) -> None:
    """Poll every mapping until every source queue is empty, in-flight messages included."""
    sqs = boto3.client("sqs", region_name=REGION)
    while True:
        polled = [mapping.poll() for mapping in mappings]  # every mapping polls, each tick
        on_tick()
        if any(polled):
            continue
        if not any(mapping.busy for mapping in mappings) and all(
            queue_depth(sqs, mapping.source.url) == 0 for mapping in mappings
        ):
            return
        time.sleep(POLL_INTERVAL_SECONDS)


def serve(mappings: list[EventSourceMapping], stop: threading.Event) -> None:
    """Poll every mapping until `stop` is set: the mappings of a stack that keeps running (`up`)."""
    while not stop.is_set():
        polled = [mapping.poll() for mapping in mappings]  # every mapping polls, each tick
        if not any(polled):
            stop.wait(POLL_INTERVAL_SECONDS)


@contextmanager
def preserved_environ() -> Iterator[None]:
    """Handlers are configured through os.environ; a run leaves the caller's environment as it found it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
