"""The paid-call ledger: a job is generated once per (batch, id, upload), whatever is redelivered.

Built on Powertools idempotency's DynamoDB persistence layer (its record format, conditional writes,
in-progress expiry and TTL); its decorator cannot wrap the async generate path, so this module drives
the same layer step by step: claim before the call, finish after the outputs are written, release on a
failure that may be retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Claim(Enum):
    NEW = "new"  # nobody has done it: go ahead
    DONE = "done"  # already finished: skip, never pay again
    BUSY = "busy"  # another invocation holds it right now


@dataclass(frozen=True)
class ClaimResult:
    state: Claim
    #: for BUSY: seconds until the other holder's claim expires
    wait_seconds: float = 0.0


class Ledger:
    def __init__(
        self, table: str, ttl_seconds: int, *, key_prefix: str, client: DynamoDBClient | None = None
    ) -> None:
        self.store = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
        self.store.configure(IdempotencyConfig(expires_after_seconds=ttl_seconds), key_prefix=key_prefix)

    def claim(self, key: dict[str, Any], remaining_ms: int) -> ClaimResult:
        """Take the job for this invocation; the claim lapses when the invocation would have ended."""
        try:
            self.store.save_inprogress(data=key, remaining_time_in_millis=remaining_ms)
        except IdempotencyItemAlreadyExistsError as exc:
            return self._existing(exc.old_data_record or self._fetch(key))
        return ClaimResult(Claim.NEW)

    def finish(self, key: dict[str, Any], summary: dict[str, Any]) -> None:
        """The job has its result record: from now on it is never generated again."""
        self.store.save_success(data=key, result=summary)

    def release(self, key: dict[str, Any], reason: Exception) -> None:
        """Give the job back so that a redelivery may try it (a retryable failure, nothing paid kept)."""
        self.store.delete_record(data=key, exception=reason)

    def _fetch(self, key: dict[str, Any]) -> DataRecord | None:
        try:
            return self.store.get_record(data=key)
        except IdempotencyItemNotFoundError:
            return None

    @staticmethod
    def _existing(record: DataRecord | None) -> ClaimResult:
        if record is None:  # released between the two reads: try again soon
            return ClaimResult(Claim.BUSY, 1.0)
        if record.status == "COMPLETED":
            return ClaimResult(Claim.DONE)
        expires_ms = record.in_progress_expiry_timestamp or 0
        return ClaimResult(Claim.BUSY, max(1.0, expires_ms / 1000 - time.time()))
