"""Events on EventBridge: every job's end and every run's completion, for integrators to react to.

Source `nanobanana`; detail-types `Job Succeeded`, `Job Failed` (detail: the result record plus `bucket`
and `stack`) and `Batch Completed` (detail: `_batch.json` plus `bucket` and `stack`). An entry may not
exceed 256 KB: a record too big for one (a long `text`, a big `metadata`) is sent without its biggest
fields, named in `truncated`; the whole record stays in the bucket.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nanobanana.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE = "nanobanana"
JOB_SUCCEEDED = "Job Succeeded"
JOB_FAILED = "Job Failed"
BATCH_COMPLETED = "Batch Completed"
#: EventBridge's limit for one entry (source, detail-type and detail, in UTF-8 bytes).
MAX_ENTRY_BYTES = 256 * 1024
#: A record's fields that may be left out of an event, biggest contributors first.
TRIMMABLE = ("text", "metadata", "prompt", "retries", "request")
#: PutEvents takes at most this many entries per call.
MAX_ENTRIES = 10
SEND_ATTEMPTS = 3


def entry_bytes(source: str, detail_type: str, detail: str) -> int:
    """An entry's size as EventBridge counts it."""
    return len(source.encode()) + len(detail_type.encode()) + len(detail.encode())


def fit(detail_type: str, detail: dict[str, Any]) -> str:
    """The detail as JSON, trimmed of its biggest optional fields until the entry fits in 256 KB."""
    text = json.dumps(detail, ensure_ascii=False)
    trimmed: list[str] = []
    for name in TRIMMABLE:
        if entry_bytes(SOURCE, detail_type, text) <= MAX_ENTRY_BYTES:
            break
        if detail.get(name) is not None:
            detail = {**detail, name: None}
            trimmed.append(name)
            text = json.dumps({**detail, "truncated": trimmed}, ensure_ascii=False)
    if entry_bytes(SOURCE, detail_type, text) > MAX_ENTRY_BYTES:  # only the essentials are left to send
        keep = ("id", "batch", "status", "images", "error", "source", "bucket", "stack")
        text = json.dumps({**{k: detail.get(k) for k in keep}, "truncated": True}, ensure_ascii=False)
    return text


class Publisher:
    """Puts the pipeline's events on its bus. An event that cannot be sent is logged, never raised:
    the job it tells of has ended and its record is written."""

    def __init__(self, client: EventBridgeClient, *, bus: str, stack: str, bucket: str) -> None:
        self.client = client
        self.bus = bus
        self.context = {"bucket": bucket, "stack": stack}

    def job_ended(self, records: Sequence[dict[str, Any]]) -> None:
        """`Job Succeeded` or `Job Failed` for each result record."""
        self._put(
            [(JOB_SUCCEEDED if record["status"] == "succeeded" else JOB_FAILED, record) for record in records]
        )

    def batch_completed(self, summary: dict[str, Any]) -> None:
        self._put([(BATCH_COMPLETED, summary)])

    def _put(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        entries: list[PutEventsRequestEntryTypeDef] = [
            {
                "Source": SOURCE,
                "DetailType": detail_type,
                "Detail": fit(detail_type, {**detail, **self.context}),
                "EventBusName": self.bus,
            }
            for detail_type, detail in events
        ]
        for start in range(0, len(entries), MAX_ENTRIES):
            self._send(entries[start : start + MAX_ENTRIES])

    def _send(self, entries: list[PutEventsRequestEntryTypeDef]) -> None:
        """PutEvents, resending the entries it reports as failed (throttling, an internal error)."""
        failures: list[str] = []
        for _ in range(SEND_ATTEMPTS):
            try:
                response = self.client.put_events(Entries=entries)
            except Exception as exc:  # boto3 has retried already: the event is lost, the job is not
                failures = [f"{type(exc).__name__}: {exc}"]
                break
            results = response.get("Entries", [])
            failed = [i for i, result in enumerate(results) if result.get("ErrorCode")]
            failures = [str(results[i].get("ErrorMessage") or results[i].get("ErrorCode")) for i in failed]
            entries = [entries[i] for i in failed]
            if not entries:
                return
        logger.error(
            "events could not be put on the bus",
            extra={"bus": self.bus, "count": len(entries), "errors": failures[:3]},
        )
