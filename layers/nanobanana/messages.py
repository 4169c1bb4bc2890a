"""The jobs queue's messages: what ingest sends, and how generate reads any message it is given.

Ingest wraps each job in an envelope that carries its batch, source and upload identity (marked by a
message attribute); anything else on the queue is a job a user sent straight to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict

from nanobanana.errors import InvalidJobError
from nanobanana.jobs import DEFAULT_SQS_BATCH, BatchName, Job, loads, parse_job, salvage

ORIGIN_ATTRIBUTE = "nanobanana-origin"
ORIGIN_INGEST = "ingest"
#: An SQS message body's limit; a bigger job should reference its images by key.
MAX_MESSAGE_BYTES = 256 * 1024
SQS_UPLOAD = "sqs"


def utc_timestamp(epoch_seconds: float | None = None) -> str:
    """ISO 8601 in UTC to the millisecond, as records and batch files write times: `...T12:00:00.000Z`."""
    moment = datetime.now(UTC) if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Envelope(BaseModel):
    """A job of a prompt file on its way to generate."""

    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")

    job: Job
    batch: BatchName
    source: dict[str, Any]
    upload: str
    #: when ingest read the job (ISO 8601, UTC); absent from messages sent before it was recorded
    created_at: str | None = None


@dataclass(frozen=True)
class Work:
    """One job as generate sees it: a valid job, or the error that makes it fail."""

    id: str
    batch: str
    upload: str
    source: dict[str, Any]
    job: Job | None
    error: InvalidJobError | None = None
    receive_count: int = 1
    metadata: dict[str, Any] | None = field(default=None)
    #: when the job came into being: read by ingest, or sent to the queue (ISO 8601, UTC)
    created_at: str = field(default_factory=utc_timestamp)

    @property
    def key(self) -> dict[str, str]:
        """The idempotency key: a job is generated once per (batch, id, upload)."""
        return {"batch": self.batch, "id": self.id, "upload": self.upload}


def envelope(
    job: Job, *, batch: str, source: dict[str, Any], upload: str, created_at: str | None = None
) -> str:
    """The body ingest sends for one job; InvalidJobError if it cannot fit in a message."""
    body = Envelope(
        job=job, batch=batch, source=source, upload=upload, created_at=created_at
    ).model_dump_json(exclude_none=True)
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidJobError("", "the job is too big for a queue message; put input images in S3 instead")
    return body


def read_message(record: SQSRecord) -> Work:
    """Turn any message of the jobs queue into Work; never raises for a bad body."""
    receive_count = int(record.attributes.approximate_receive_count or 1)
    sent = record.attributes.get("SentTimestamp")  # epoch milliseconds
    created_at = utc_timestamp(int(sent) / 1000) if sent else utc_timestamp()
    attributes = record.message_attributes
    # not .get(): Powertools' wrapper only wraps what [] returns
    origin = attributes[ORIGIN_ATTRIBUTE] if ORIGIN_ATTRIBUTE in attributes else None  # noqa: SIM401
    if origin is not None and origin.string_value == ORIGIN_INGEST:
        env = Envelope.model_validate_json(record.body)
        assert env.job.id is not None  # ingest always names its jobs
        return Work(
            env.job.id,
            env.batch,
            env.upload,
            env.source,
            env.job,
            None,
            receive_count,
            env.job.metadata,
            env.created_at or created_at,
        )
    source = _queue_source(record)
    try:
        obj = loads(record.body)
    except InvalidJobError as unreadable:
        error = InvalidJobError("", f"the message body is {unreadable.detail}")
        return Work(
            record.message_id,
            DEFAULT_SQS_BATCH,
            SQS_UPLOAD,
            source,
            None,
            error,
            receive_count,
            None,
            created_at,
        )
    try:
        job = parse_job(obj, fallback_id=record.message_id)
    except InvalidJobError as error:
        job_id, batch = salvage(obj, "id", record.message_id), salvage(obj, "batch", DEFAULT_SQS_BATCH)
        return Work(job_id, batch, SQS_UPLOAD, source, None, error, receive_count, None, created_at)
    assert job.id is not None
    return Work(
        job.id,
        job.batch or DEFAULT_SQS_BATCH,
        SQS_UPLOAD,
        source,
        job,
        None,
        receive_count,
        job.metadata,
        created_at,
    )


def unreadable(record: SQSRecord, problem: str) -> Work:
    """A message that could not be read at all, as a job of its own that fails as invalid_job: a body
    that cannot be read now never will be, and retrying it would only delay its record."""
    receive_count = int(record.attributes.approximate_receive_count or 1)
    error = InvalidJobError("", f"the message cannot be read ({problem})")
    return Work(
        record.message_id, DEFAULT_SQS_BATCH, SQS_UPLOAD, _queue_source(record), None, error, receive_count
    )


def _queue_source(record: SQSRecord) -> dict[str, Any]:
    return {"queue": record.event_source_arn.rsplit(":", 1)[-1], "message_id": record.message_id}
