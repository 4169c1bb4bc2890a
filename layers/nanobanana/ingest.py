"""Ingest: a prompt file uploaded under prompts/ becomes one jobs-queue message per job.

The file is read twice, streamed both times: first to check it as a whole (a file that cannot be read
enqueues nothing), then to send its jobs ten at a time. Each message carries the upload's identity, so
that a duplicate event or a retried ingest can never make generate pay twice. Before the first send the
run is opened with its total (see `batches`); the invalid jobs are counted after their records are
written, and if that ends the run (every other job has ended already), ingest completes it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from nanobanana import metrics as names
from nanobanana.batches import BatchTable, Completion, RunKey
from nanobanana.config import Settings
from nanobanana.errors import ErrorType, InvalidJobError, PipelineError
from nanobanana.events import Publisher
from nanobanana.files import FileError, ParsedLine, batch_name, check_batch, check_file, read_jobs
from nanobanana.messages import ORIGIN_ATTRIBUTE, ORIGIN_INGEST, Work, envelope, utc_timestamp
from nanobanana.observability import count, logger
from nanobanana.results import record
from nanobanana.storage import INGEST_ERROR_FILE, Storage, output_key

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SEND_ATTEMPTS = 3
PROGRESS_EVERY = 10_000


@dataclass(frozen=True)
class Upload:
    """One upload of a prompt file, as an S3 event names it."""

    bucket: str
    key: str
    size: int
    version: str | None
    sequencer: str | None

    @property
    def batch(self) -> str:
        return batch_name(self.key)


def uploads(record: SQSRecord) -> Iterator[Upload]:
    """The uploads an S3 notification carries (none for the s3:TestEvent S3 sends on setup)."""
    body = json.loads(record.body)
    if body.get("Event") == "s3:TestEvent":
        logger.info("S3 test event, nothing to ingest", extra={"bucket": body.get("Bucket")})
        return
    for s3_record in S3Event(body).records:
        obj = s3_record.s3.get_object
        yield Upload(
            bucket=s3_record.s3.bucket.name,
            key=unquote_plus(obj.key),
            size=obj.size or 0,
            version=obj.get("versionId"),
            sequencer=obj.get("sequencer"),
        )


def message_body(
    parsed: ParsedLine, *, batch: str, source: dict[str, Any], upload: str, created_at: str | None = None
) -> str:
    """A job's queue message, or the InvalidJobError that keeps it off the queue (`check` says the same)."""
    if parsed.job is None:
        assert parsed.error is not None
        raise parsed.error
    try:
        return envelope(parsed.job, batch=batch, source=source, upload=upload, created_at=created_at)
    except ValueError as exc:  # pydantic's serialization errors: one job's, never the file's
        raise InvalidJobError("", f"cannot be written as a queue message ({type(exc).__name__})") from None


class Ingestor:
    """Reads prompt files from the bucket and sends their jobs to the jobs queue."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        sqs: SQSClient,
        *,
        batches: BatchTable,
        completion: Completion,
        publisher: Publisher,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.sqs = sqs
        self.batches = batches
        self.completion = completion
        self.publisher = publisher

    def identity(self, upload: Upload) -> dict[str, str]:
        """What makes an upload itself: its version id, else the event's sequencer, else the object's etag."""
        upload_id = upload.version or upload.sequencer or self.storage.version_of(upload.key)
        return {"bucket": upload.bucket, "key": upload.key, "upload": upload_id}

    def ingest(self, upload: Upload, upload_id: str) -> dict[str, Any]:
        """Check the whole file, then enqueue its jobs; a file that can't be read gets _ingest_error.json."""
        source = {"bucket": upload.bucket, "key": upload.key}
        try:
            extension = check_file(upload.key, upload.size, self.settings.max_file_bytes)
            total = sum(1 for _ in self._jobs(upload, extension))
        except FileError as exc:
            error = PipelineError(ErrorType.INVALID_JOB, str(exc))
            with contextlib.suppress(FileError):  # a name that is no folder gets no file: the log says why
                check_batch(upload.batch)
                self.storage.put_json(
                    output_key(upload.batch, INGEST_ERROR_FILE),
                    {
                        "batch": upload.batch,
                        "source": source,
                        "upload": upload_id,
                        "error": error.to_record(),
                    },
                )
            logger.warning("prompt file rejected", extra={"key": upload.key, "reason": str(exc)})
            count(names.PROMPT_FILES_INGESTED)
            return {"batch": upload.batch, "enqueued": 0, "invalid": 0, "error": str(exc)}
        run = RunKey(upload.batch, upload_id)
        self.batches.open(run, source=source, version=upload.version, total=total)
        enqueued, invalid = self._enqueue(self._jobs(upload, extension), upload, upload_id, total)
        # after the invalid jobs' records: the run cannot complete before every record is written
        self.completion.settle(self.batches.count_invalid(run, invalid))
        count(names.PROMPT_FILES_INGESTED)
        count(names.JOBS_ENQUEUED, enqueued)
        count(names.INVALID_JOBS, invalid)
        logger.info(
            "prompt file ingested", extra={"key": upload.key, "enqueued": enqueued, "invalid": invalid}
        )
        return {"batch": upload.batch, "enqueued": enqueued, "invalid": invalid, "error": None}

    def _jobs(self, upload: Upload, extension: str) -> Iterator[ParsedLine]:
        return read_jobs(
            self.storage.open_chunks(upload.key, upload.version),
            extension,
            max_jobs=self.settings.max_jobs_per_file,
            max_file_bytes=self.settings.max_file_bytes,
        )

    def _enqueue(
        self, lines: Iterable[ParsedLine], upload: Upload, upload_id: str, total: int
    ) -> tuple[int, int]:
        enqueued = invalid = 0
        outcomes = self._bodies(lines, upload, upload_id)
        while chunk := list(islice(outcomes, 10)):
            done_before = enqueued + invalid
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": str(i),
                    "MessageBody": body,
                    "MessageAttributes": {
                        ORIGIN_ATTRIBUTE: {"DataType": "String", "StringValue": ORIGIN_INGEST}
                    },
                }
                for i, body in enumerate(body for body in chunk if isinstance(body, str))
            ]
            failed = [result for result in chunk if isinstance(result, dict)]
            invalid += len(failed)
            if entries:
                self._send(entries)
                enqueued += len(entries)
            if failed:
                self.publisher.job_ended(failed)
            if (enqueued + invalid) // PROGRESS_EVERY > done_before // PROGRESS_EVERY:
                logger.info("ingest progress", extra={"done": enqueued + invalid, "total": total})
        return enqueued, invalid

    def _bodies(
        self, lines: Iterable[ParsedLine], upload: Upload, upload_id: str
    ) -> Iterator[str | dict[str, Any]]:
        """Message bodies in file order; where a job failed, its result record (written here) instead."""
        created_at = utc_timestamp()
        for parsed in lines:
            source = {"bucket": upload.bucket, "key": upload.key, "line": parsed.line}
            try:
                yield message_body(
                    parsed, batch=upload.batch, source=source, upload=upload_id, created_at=created_at
                )
            except InvalidJobError as error:
                work = Work(
                    parsed.id, upload.batch, upload_id, source, parsed.job, error, created_at=created_at
                )
                yield self._fail(work, error)

    def _fail(self, work: Work, error: PipelineError) -> dict[str, Any]:
        result = record(work, error=error)
        self.storage.put_json(output_key(work.batch, f"{work.id}.json"), result)
        return result

    def _send(self, entries: list[SendMessageBatchRequestEntryTypeDef]) -> None:
        """SendMessageBatch, resending the entries SQS reports as failed; raise if some never go."""
        for _ in range(SEND_ATTEMPTS):
            response = self.sqs.send_message_batch(QueueUrl=self.settings.jobs_queue_url, Entries=entries)
            failed = {f["Id"] for f in response.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return
        raise RuntimeError(f"{len(entries)} job messages could not be sent to the jobs queue")
