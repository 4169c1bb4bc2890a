"""Batch runs: an upload's progress while it runs, and its completion files when its last job ends.

A run is one upload of a prompt file. Its state is one item of the batches table, keyed by
(batch, upload): Ingest opens it with the total before it sends a job; each job's end is added to it
exactly once, by the call that moved the job to its final state (so no redelivery counts twice); the
invalid jobs Ingest failed itself are added once, after their records are written. Counting is an
atomic update that answers with the new totals, so exactly one call sees the run reach its total: that
call claims the completion and writes `_results.jsonl`, `_failed.jsonl`, then `_batch.json`. The claim
lapses with the claimer's invocation, so a redelivery can finish what a crashed one began, and no two
invocations ever write the files at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from nanobanana import metrics as names
from nanobanana.config import Settings
from nanobanana.errors import ErrorType
from nanobanana.events import Publisher
from nanobanana.files import ParsedLine, extension_of, read_jobs
from nanobanana.jobs import job_line
from nanobanana.messages import utc_timestamp
from nanobanana.observability import count, logger
from nanobanana.storage import Storage, output_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_events import EventBridgeClient

BATCH_FILE = "_batch.json"
RESULTS_FILE = "_results.jsonl"
FAILED_FILE = "_failed.jsonl"
#: The files a run's completion writes: never result records, never a prompt file's job.
COMPLETION_FILES = (BATCH_FILE, RESULTS_FILE, FAILED_FILE)
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
#: How long a run's state is kept after its last change; `_batch.json` is the lasting account.
TTL_SECONDS = 30 * 24 * 3600
#: Result records fetched at once while the completion files are assembled.
FETCH_WINDOW = 64
FETCH_THREADS = 16
#: How long a completion claim lasts: Lambda's longest invocation, so a crashed claimer's lapses.
CLAIM_SECONDS = 15 * 60

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class CompletionBusy(Exception):
    """Another invocation holds the run's completion: look again once its claim may have lapsed."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"the run's completion is held by another invocation for {wait_seconds:.0f} s")
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class RunKey:
    batch: str
    upload: str

    def item_key(self) -> dict[str, AttributeValueTypeDef]:
        return {"batch": {"S": self.batch}, "upload": {"S": self.upload}}


@dataclass(frozen=True)
class BatchStatus:
    """A run's numbers, as the table holds them and `_batch.json` writes them."""

    batch: str
    upload: str
    source: dict[str, Any]
    status: str
    total: int
    succeeded: int = 0
    failed: int = 0
    images: int = 0
    cost_usd: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    completed_at: str | None = None
    #: the prompt file's version id, when the bucket is versioned: completion reads what ingest read
    version: str | None = None
    #: until when (epoch seconds) an invocation holds the writing of the completion files
    completing_until: float = 0.0

    @property
    def key(self) -> RunKey:
        return RunKey(self.batch, self.upload)

    @property
    def done(self) -> int:
        """Jobs that have ended, succeeded or failed."""
        return self.succeeded + self.failed

    @property
    def all_ended(self) -> bool:
        return self.done >= self.total

    def to_json(self) -> dict[str, Any]:
        """`_batch.json`: the contract's fields, in the contract's order."""
        return {
            "batch": self.batch,
            "upload": self.upload,
            "source": self.source,
            "status": self.status,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "images": self.images,
            "cost_usd": round(self.cost_usd, 6),
            "errors": dict(sorted(self.errors.items())),
            "created_at": self.created_at,
            "completed_at": self.completed_at,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BatchStatus:
        data = {name: _deserializer.deserialize(value) for name, value in item.items()}
        return cls(
            batch=str(data["batch"]),
            upload=str(data["upload"]),
            source=_plain(data.get("source") or {}),
            status=str(data.get("status", IN_PROGRESS)),
            total=int(data["total"]),
            succeeded=int(data.get("succeeded", 0)),
            failed=int(data.get("failed", 0)),
            images=int(data.get("images", 0)),
            cost_usd=float(data.get("cost_usd", 0)),
            errors={str(k): int(v) for k, v in (data.get("errors") or {}).items()},
            created_at=str(data.get("created_at", "")),
            completed_at=str(data["completed_at"]) if data.get("completed_at") else None,
            version=str(data["version"]) if data.get("version") else None,
            completing_until=float(data.get("completing_until", 0)),
        )


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints or floats, so that a status reads as the JSON it came from."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


def _number(value: float) -> AttributeValueTypeDef:
    return {"N": repr(round(value, 6)) if isinstance(value, float) else str(value)}


class BatchTable:
    """The batches table: one item per run, counted atomically."""

    def __init__(self, table: str, client: DynamoDBClient) -> None:
        self.table = table
        self.client = client

    def open(self, key: RunKey, *, source: dict[str, Any], version: str | None, total: int) -> None:
        """Record a run and its total before any of its jobs can end; a second open (a retried ingest)
        changes nothing."""
        item: dict[str, Any] = {
            "batch": key.batch,
            "upload": key.upload,
            "source": source,
            "status": IN_PROGRESS,
            "total": total,
            "succeeded": 0,
            "failed": 0,
            "images": 0,
            "cost_usd": 0,
            "errors": {},
            "created_at": utc_timestamp(),
            "expiration": int(time.time()) + TTL_SECONDS,
        }
        if version:
            item["version"] = version
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.put_item(
                TableName=self.table,
                Item={name: _serializer.serialize(value) for name, value in item.items()},
                ConditionExpression="attribute_not_exists(#b)",
                ExpressionAttributeNames={"#b": "batch"},
            )

    def count(self, key: RunKey, record: dict[str, Any]) -> BatchStatus | None:
        """Add one job's end (from its result record); the run's new numbers, or None if the run is not
        tracked (an SQS message, or a run older than this table's items)."""
        error = record.get("error") or {}
        succeeded = record.get("status") == "succeeded"
        return self._add(
            key,
            succeeded=int(succeeded),
            failed=int(not succeeded),
            images=len(record.get("images") or []),
            cost_usd=float(record.get("cost_usd") or 0.0),
            errors={str(error["type"]): 1} if not succeeded and error.get("type") else {},
        )

    def count_invalid(self, key: RunKey, invalid: int) -> BatchStatus | None:
        """Add the jobs Ingest failed itself, once per run however often Ingest is retried; the run's
        numbers either way."""
        try:
            return self._add(key, failed=invalid, errors={ErrorType.INVALID_JOB: invalid}, once="invalid")
        except self.client.exceptions.ConditionalCheckFailedException:
            pass
        return self.get(key)

    def _add(
        self,
        key: RunKey,
        *,
        succeeded: int = 0,
        failed: int = 0,
        images: int = 0,
        cost_usd: float = 0.0,
        errors: dict[str, int],
        once: str | None = None,
    ) -> BatchStatus | None:
        names = {"#total": "total"}
        values: dict[str, AttributeValueTypeDef] = {
            ":s": _number(succeeded),
            ":f": _number(failed),
            ":i": _number(images),
            ":c": _number(cost_usd),
        }
        sets = []
        for n, (error_type, number) in enumerate((t, n) for t, n in errors.items() if n):
            names[f"#e{n}"] = error_type
            values[f":e{n}"] = _number(number)
            values[":zero"] = _number(0)
            sets.append(f"errors.#e{n} = if_not_exists(errors.#e{n}, :zero) + :e{n}")
        condition = "attribute_exists(#total)"
        if once:
            names["#once"] = f"counted_{once}"
            values[":true"] = {"BOOL": True}
            sets.append("#once = :true")
            condition += " AND attribute_not_exists(#once)"
        expression = "ADD succeeded :s, failed :f, images :i, cost_usd :c" + (
            f" SET {', '.join(sets)}" if sets else ""
        )
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=key.item_key(),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            if once is None:
                return None  # no such run: nothing to count
            raise
        return BatchStatus.from_item(dict(response["Attributes"]))

    def get(self, key: RunKey) -> BatchStatus | None:
        item = self.client.get_item(TableName=self.table, Key=key.item_key(), ConsistentRead=True).get("Item")
        return BatchStatus.from_item(dict(item)) if item else None

    def claim_completion(self, key: RunKey, seconds: float) -> bool:
        """Take the writing of the run's files for `seconds` (an invocation's remaining time); False if the
        run is completed, CompletionBusy if another invocation holds the claim."""
        now = time.time()
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key.item_key(),
                UpdateExpression="SET completing_until = :until",
                ConditionExpression=(
                    "#status = :in_progress AND "
                    "(attribute_not_exists(completing_until) OR completing_until < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":until": _number(now + seconds),
                    ":now": _number(now),
                    ":in_progress": {"S": IN_PROGRESS},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            current = self.get(key)
            if current is None or current.status == COMPLETED:
                return False
            raise CompletionBusy(max(1.0, current.completing_until - now)) from None
        return True

    def mark_completed(self, key: RunKey, completed_at: str) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=key.item_key(),
            UpdateExpression="SET #status = :completed, completed_at = :at REMOVE completing_until",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":completed": {"S": COMPLETED}, ":at": {"S": completed_at}},
        )

    def read_status(self, batch: str | None = None) -> list[BatchStatus]:
        """The runs of one batch (every upload of its file), or of every batch; newest first."""
        items: list[dict[str, Any]] = []
        if batch is None:
            pages: Iterable[Any] = self.client.get_paginator("scan").paginate(TableName=self.table)
        else:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="#b = :b",
                ExpressionAttributeNames={"#b": "batch"},
                ExpressionAttributeValues={":b": {"S": batch}},
            )
        for page in pages:
            items.extend(page.get("Items", []))
        runs = [BatchStatus.from_item(item) for item in items]
        return sorted(runs, key=lambda run: (run.created_at, run.batch), reverse=True)


class Completion:
    """Writes a run's completion files and tells of it, once."""

    def __init__(
        self,
        table: BatchTable,
        storage: Storage,
        publisher: Publisher,
        settings: Settings,
    ) -> None:
        self.table = table
        self.storage = storage
        self.publisher = publisher
        self.settings = settings
        # its own threads: completion itself runs on a caller's I/O thread
        self.pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="nanobanana-completion")

    def settle(self, status: BatchStatus | None) -> bool:
        """Complete the run if every job has ended and nobody has completed it; True if this call did.

        CompletionBusy: another invocation holds the claim (and may crash before it is done), so the
        caller should look again later.
        """
        if status is None or status.status == COMPLETED or not status.all_ended:
            return False
        if not self.table.claim_completion(status.key, CLAIM_SECONDS):
            return False
        completed_at = utc_timestamp()
        self._write_files(status)
        summary = {**status.to_json(), "status": COMPLETED, "completed_at": completed_at}
        self.storage.put_json(output_key(status.batch, BATCH_FILE), summary)
        self.publisher.batch_completed(summary)
        self.table.mark_completed(status.key, completed_at)
        count(names.BATCHES_COMPLETED)
        logger.info("batch completed", extra={k: summary[k] for k in ("total", "succeeded", "failed")})
        return True

    def _write_files(self, status: BatchStatus) -> None:
        """`_results.jsonl` in the file's job order, `_failed.jsonl` of what is worth sending again."""
        results, failed = io.BytesIO(), io.BytesIO()
        for parsed, result in self._records(status):
            results.write(_jsonl(result))
            error = result.get("error") or {}
            if (
                result.get("status") == "failed"
                and error.get("type") != ErrorType.INVALID_JOB
                and parsed.job is not None
            ):
                failed.write(_jsonl(job_line(parsed.job, openai_batch=parsed.openai_batch)))
        for name, body in ((RESULTS_FILE, results), (FAILED_FILE, failed)):
            self.storage.put(output_key(status.batch, name), body.getvalue(), "application/x-ndjson")

    def _records(self, status: BatchStatus) -> Iterator[tuple[ParsedLine, dict[str, Any]]]:
        """Each job of the run's file, in order, with its result record (fetched a window at a time)."""
        key = str(status.source["key"])
        jobs = read_jobs(
            self.storage.open_chunks(key, status.version),
            extension_of(key),
            max_jobs=self.settings.max_jobs_per_file,
            max_file_bytes=self.settings.max_file_bytes,
        )
        while window := list(islice(jobs, FETCH_WINDOW)):
            keys = [output_key(status.batch, f"{parsed.id}.json") for parsed in window]
            for parsed, result in zip(window, self.pool.map(self.storage.get_json, keys), strict=True):
                if result is None:
                    logger.warning("a job of the run has no result record", extra={"job_id": parsed.id})
                    continue
                yield parsed, result


def _jsonl(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def read_status(dynamodb: DynamoDBClient, table: str, batch: str | None = None) -> list[BatchStatus]:
    """Runs in progress and done, newest first, for `nanobanana status` and `watch` (`table`: the stack's
    output BatchesTableName). A run's `to_json()` has `_batch.json`'s shape, `status` `in_progress` until
    its last job has ended; `done` and `total` make a progress bar."""
    return BatchTable(table, dynamodb).read_status(batch)


def batch_tracking(
    settings: Settings, storage: Storage, dynamodb: DynamoDBClient, events: EventBridgeClient
) -> tuple[BatchTable, Completion, Publisher]:
    """What both functions need to count runs, complete them and tell of it, from their settings."""
    table = BatchTable(settings.batches_table, dynamodb)
    publisher = Publisher(
        events, bus=settings.event_bus_name, stack=settings.stack_name, bucket=settings.bucket
    )
    return table, Completion(table, storage, publisher, settings), publisher
