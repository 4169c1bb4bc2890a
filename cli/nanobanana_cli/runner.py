"""The Lambda side of a local run: SQS event-source mappings feeding per-thread execution environments.

It plays what Lambda does with an SQS queue: poll, build real SQS event records, invoke one batch at a
time per execution environment, delete what succeeded, leave `batchItemFailures` to be redelivered (and
dead-lettered by the queue's redrive policy, which moto enforces on receive, as SQS does).
"""

from __future__ import annotations

import base64
import importlib.util
import math
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
#: Progress is redrawn at most this often.
TICK_SECONDS = 0.25
#: Consecutive empty readings of every queue before a run counts as drained (see `drain`).
EMPTY_READINGS = 3
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


def messages_in(queue_name: str) -> int:
    """Messages in the queue in any state (visible, in flight, delayed), read at one instant.

    Unlike GetQueueAttributes, which moto answers by walking every message several times (tens of
    milliseconds for a few hundred), this costs nothing: the runner reads it many times a second.
    """
    return len(sqs_backends[ACCOUNT_ID][REGION].get_queue(queue_name)._messages)


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
                self.mapping.wake.set()

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


#: Decides, before an invocation, whether a record is handed to the function at all (False: the
#: message is deleted unseen, as a job already done is).
Admit = Callable[[dict[str, Any]], bool]
#: Told of every invocation's end: its records, and which of them failed or were given back delayed.
OnComplete = Callable[["Invocation", set[str]], None]


class EventSourceMapping:
    """Lambda's SQS poller for one function: ReceiveMessage, invoke, delete or leave for redelivery.

    `admit` and `on_complete` let a runner skip work it already has and see each invocation end; `wake`
    is set whenever an environment becomes idle, so that one poller can serve several mappings without
    sleeping through the moment work can be handed out (`drain` gives all its mappings one).
    """

    def __init__(
        self,
        function: Function,
        source: Queue,
        concurrency: int,
        *,
        admit: Admit | None = None,
        on_complete: OnComplete | None = None,
    ) -> None:
        self.function = function
        self.source = source
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.admit = admit
        self.on_complete = on_complete
        self.wake = threading.Event()
        self.idle: queue.Queue[ExecutionEnvironment] = queue.Queue()
        self.environments = [ExecutionEnvironment(self, index) for index in range(concurrency)]
        self._ahead: list[dict[str, Any]] = []
        self.deleted = 0
        self.skipped = 0
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
        records = self._admitted(self._take())
        if not records:
            self.idle.put(environment)
            return False
        visible_at = {r["receiptHandle"]: _visible_at(self.source.name, r["receiptHandle"]) for r in records}
        environment.inbox.put(Invocation(records, visible_at))
        return True

    def _take(self) -> list[dict[str, Any]]:
        """A batch for one invocation, from what was received ahead (Lambda's poller, too, receives ten
        at a time and hands them out): moto walks the whole queue on every ReceiveMessage."""
        size = self.function.batch_size
        if len(self._ahead) < size:
            self._ahead.extend(self._receive(SQS_MAX_MESSAGES * math.ceil(size / SQS_MAX_MESSAGES)))
        batch, self._ahead = self._ahead[:size], self._ahead[size:]
        return batch

    def _receive(self, wanted: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < wanted:
            got = self.sqs.receive_message(
                QueueUrl=self.source.url,
                MaxNumberOfMessages=min(SQS_MAX_MESSAGES, wanted - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                break
            messages.extend(dict(message) for message in got)
        return [sqs_record(message, self.source.arn) for message in messages]

    def _admitted(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records to invoke with; the others are deleted here, never reaching the function."""
        if self.admit is None:
            return records
        admitted = [record for record in records if self.admit(record)]
        refused = [record for record in records if record not in admitted]
        self._delete(refused)
        with self._lock:
            self.skipped += len(refused)
        return admitted

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), SQS_MAX_MESSAGES):
            chunk = records[start : start + SQS_MAX_MESSAGES]
            self.sqs.delete_message_batch(
                QueueUrl=self.source.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )

    def complete(self, invocation: Invocation, failed: set[str]) -> None:
        """Delete the successes; a failure the handler did not delay comes back after a short local wait."""
        done = [r for r in invocation.records if r["messageId"] not in failed]
        self._delete(done)
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
        if self.on_complete is not None:
            self.on_complete(invocation, failed)

    @property
    def in_flight(self) -> int:
        """Environments running an invocation now."""
        return len(self.environments) - self.idle.qsize()

    @property
    def busy(self) -> bool:
        return self.in_flight > 0

    def stop(self, abandon: threading.Event | None = None) -> None:
        """Let running invocations finish, then end every environment's thread; unless `abandon` is set
        meanwhile: then the threads (daemons) are left to die with the process. Messages received
        ahead go back to the queue at once."""
        for record in self._ahead:
            self.sqs.change_message_visibility(
                QueueUrl=self.source.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )
        self._ahead = []
        for environment in self.environments:
            environment.inbox.put(None)
        for environment in self.environments:
            while environment.thread.is_alive() and not (abandon and abandon.is_set()):
                environment.thread.join(POLL_INTERVAL_SECONDS)


def event_source_mappings(
    stack: Stack,
    concurrency: int,
    *,
    admit: Admit | None = None,
    on_complete: Callable[[bool], OnComplete] | None = None,
) -> list[EventSourceMapping]:
    """Each function polling its queue as the template wires them; Generate in `concurrency` environments.

    The one wiring of `up`, `local` and the tests' harness: `admit` screens Generate's records, and
    `on_complete(generate)` gives each mapping its callback (for Generate or not)."""
    mappings = []
    for logical_id, function in stack.functions.items():
        generate = logical_id == GENERATE_FUNCTION
        mappings.append(
            EventSourceMapping(
                function,
                stack.queue(function.queue_arn),
                concurrency if generate else 1,
                admit=admit if generate else None,
                on_complete=on_complete(generate) if on_complete else None,
            )
        )
    return mappings


def queue_depth(sqs: Any, url: str) -> int:
    """Messages in the queue in any state: visible, in flight or delayed, in one read of the counters."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def drain(
    mappings: list[EventSourceMapping],
    on_tick: Callable[[], None] = lambda: None,
    stop: threading.Event | None = None,
) -> bool:
    """Poll every mapping until every source queue is empty; False if `stop` was set first.

    Work is handed out as soon as an environment is idle (the mappings' `wake`), not at the next tick.
    The queues count as drained only after EMPTY_READINGS consecutive readings, spaced by the poll
    interval, in which no environment was running and no queue held a message in any state: a message
    changing hands (redelivered, moved to a dead-letter queue, sent by a handler that just returned)
    can be missed by one reading, never by several in a row.
    """
    wake = mappings[0].wake
    for mapping in mappings:
        mapping.wake = wake  # one event for all: any idle environment wakes the poller
    empty_readings = 0
    last_tick = 0.0
    while stop is None or not stop.is_set():
        wake.clear()
        dispatched = False
        for mapping in mappings:
            while mapping.poll():
                dispatched = True
        if time.monotonic() - last_tick >= TICK_SECONDS:
            on_tick()
            last_tick = time.monotonic()
        if dispatched or any(mapping.busy for mapping in mappings):
            empty_readings = 0
        elif all(messages_in(mapping.source.name) == 0 for mapping in mappings):
            empty_readings += 1
            if empty_readings >= EMPTY_READINGS:
                on_tick()
                return True
        else:
            empty_readings = 0
        wake.wait(POLL_INTERVAL_SECONDS)
    return False


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
