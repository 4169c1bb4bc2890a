"""The paid-call ledger: one DynamoDB item per job (batch, id, upload), whatever is redelivered.

It says who holds the job now, how many gateway calls the job made over all its deliveries, what was
paid for and where it is kept, and whether the job has ended. Every change is one conditional write,
so two deliveries can never both pay. A job moves through three states:

- OPEN: nothing kept yet. The holder may call the gateway, one `reserve_call` per call, at most
  `max_calls` in all; `release` lets a redelivery hold it again (the count stays).
- PAID: an answer with images arrived and `mark_paid` recorded where they are kept. A redelivery
  finishes the job from that record and never calls the gateway again.
- FINAL: the job's result record is written (`finish`). Nothing changes it any more.

Numbers come back from DynamoDB as `Decimal` (moto returns them the same way); they are turned into
int and float in one place, `_plain`, before any arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

OPEN, PAID, FINAL = "OPEN", "PAID", "FINAL"
#: Attribute names that are DynamoDB reserved words.
_NAMES = {"#status": "status"}


class Claim(Enum):
    NEW = "new"  # nothing kept yet: this invocation may call the gateway
    PAID = "paid"  # an answer was paid for and kept: finish from `ClaimResult.paid`, never call again
    DONE = "done"  # the job has ended: skip, never pay again
    BUSY = "busy"  # another invocation holds it right now


@dataclass(frozen=True)
class ClaimResult:
    state: Claim
    key: dict[str, str] = field(default_factory=dict)
    #: who holds the claim (NEW and PAID): the other calls of this ledger name it
    token: str = ""
    #: for BUSY: seconds until the other holder's claim lapses
    wait_seconds: float = 0.0
    #: gateway calls made for the job so far, over all its deliveries
    calls: int = 0
    #: estimated price of every answer paid for so far
    cost_usd: float = 0.0
    #: for PAID: what `mark_paid` kept (where the images are and what the gateway answered)
    paid: dict[str, Any] | None = None
    #: the error record of the delivery that last released the job, if any
    last_error: dict[str, Any] | None = None
    #: when that delivery was told it may call again (epoch seconds; 0: at once)
    not_before: float = 0.0


class CallLimitReached(Exception):
    """The job has made its `max_calls` gateway calls: it must end with its last error."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        super().__init__(f"the job made {calls} gateway calls, its limit (MaxGatewayCallsPerJob)")


class ClaimLost(Exception):
    """The claim lapsed and another delivery holds the job: this one must not call the gateway."""


class Ledger:
    """The jobs' items in the idempotency table (key attribute `id`, time to live in `expiration`)."""

    def __init__(
        self,
        table: str,
        ttl_seconds: int,
        *,
        key_prefix: str,
        max_calls: int = 8,
        client: DynamoDBClient | None = None,
    ) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix
        self.max_calls = max_calls
        self.client = client or boto3.client("dynamodb")

    def claim(self, key: dict[str, str], remaining_ms: int) -> ClaimResult:
        """Hold the job for this invocation; the hold lapses when the invocation would have ended, so
        that a crashed or timed-out invocation never keeps its jobs from a redelivery."""
        now_ms = _now_ms()
        token = uuid.uuid4().hex
        try:
            item = self._update(
                key,
                "SET holder = :me, held_until = :until, expiration = :ttl, "
                "calls = if_not_exists(calls, :zero), cost_usd = if_not_exists(cost_usd, :zero), "
                "#status = if_not_exists(#status, :open)",
                "attribute_not_exists(id) OR (#status <> :final AND held_until < :now)",
                {
                    ":me": token,
                    ":until": now_ms + remaining_ms,
                    ":ttl": now_ms // 1000 + self.ttl_seconds,
                    ":zero": 0,
                    ":open": OPEN,
                    ":final": FINAL,
                    ":now": now_ms,
                },
            )
        except _Refused as refused:
            if refused.item.get("status") == FINAL:
                return ClaimResult(Claim.DONE, key)
            wait_s = (int(refused.item.get("held_until", 0)) - now_ms) / 1000
            return ClaimResult(Claim.BUSY, key, wait_seconds=max(1.0, wait_s))
        state = Claim.PAID if item["status"] == PAID else Claim.NEW
        return ClaimResult(
            state,
            key,
            token=token,
            calls=int(item["calls"]),
            cost_usd=float(item["cost_usd"]),
            paid=item.get("paid"),
            last_error=item.get("last_error"),
            not_before=float(item.get("not_before", 0)),
        )

    def reserve_call(self, claim: ClaimResult) -> int:
        """Count one gateway call before it is made (a crash during the call still counts it) and
        return the job's number of calls so far. CallLimitReached at `max_calls`; ClaimLost when the
        hold has passed to another delivery."""
        try:
            item = self._update(
                claim.key,
                "SET calls = calls + :one",
                "holder = :me AND #status = :open AND calls < :max",
                {":one": 1, ":me": claim.token, ":open": OPEN, ":max": self.max_calls},
            )
        except _Refused as refused:
            if (
                refused.item.get("holder") == claim.token
                and int(refused.item.get("calls", 0)) >= self.max_calls
            ):
                raise CallLimitReached(int(refused.item["calls"])) from None
            raise ClaimLost(f"job {claim.key} is no longer held by this invocation") from None
        return int(item["calls"])

    def mark_paid(self, claim: ClaimResult, paid: dict[str, Any], cost_usd: float) -> None:
        """Record an answer that was paid for: where its images are kept and what the gateway said. From
        now on a redelivery finishes the job from `paid`; the job is never called again."""
        self._update(
            claim.key,
            "SET #status = :paid, paid = :kept ADD cost_usd :cost",
            "#status = :open",
            {":paid": PAID, ":kept": paid, ":cost": cost_usd, ":open": OPEN},
        )

    def finish(self, key: dict[str, str], summary: dict[str, Any]) -> bool:
        """The job has its result record: make it final, whoever holds it.

        This is the job's one transition to final, a single conditional write: it returns True for the
        one call that made the transition and False when the job had already ended (a duplicate or a
        late delivery). Whatever must happen exactly once per job's end (counting it into its batch)
        hooks this return value.
        """
        try:
            self._update(
                key,
                "SET #status = :final, summary = :summary, expiration = if_not_exists(expiration, :ttl) "
                "REMOVE holder, held_until",
                "attribute_not_exists(id) OR #status <> :final",
                {":final": FINAL, ":summary": summary, ":ttl": int(time.time()) + self.ttl_seconds},
            )
        except _Refused:
            return False
        return True

    def release(
        self, claim: ClaimResult, error: dict[str, Any] | None = None, *, not_before: float | None = None
    ) -> None:
        """Let go of the job so that a redelivery may hold it: its calls, cost and anything paid and
        kept stay. `error`, when given, is kept as the job's last error; `not_before` (epoch seconds) as
        the time before which the gateway asked not to be called again."""
        values: dict[str, Any] = {":zero": 0, ":me": claim.token}
        update = "SET held_until = :zero"
        if error is not None:
            update, values[":error"] = f"{update}, last_error = :error", error
        if not_before is not None:
            update, values[":not_before"] = f"{update}, not_before = :not_before", not_before
        with suppress(_Refused):  # refused: another delivery holds it now, nothing of ours to let go
            self._update(claim.key, f"{update} REMOVE holder", "holder = :me", values)

    def _update(
        self, key: dict[str, str], update: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        """One conditional UpdateItem; the item after it, or _Refused with the item as it was."""
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": self._id(key)}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={k: v for k, v in _NAMES.items() if k in update + condition},
                ExpressionAttributeValues={k: _SERIALIZER.serialize(_dynamo(v)) for k, v in values.items()},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise _Refused(_plain_item(exc.response.get("Item", {}))) from None  # type: ignore[arg-type]
        return _plain_item(response["Attributes"])

    def _id(self, key: dict[str, str]) -> str:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return f"{self.key_prefix}#{digest}"


class _Refused(Exception):
    """A condition did not hold; `item` is the item as it was (empty when there was none)."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item


_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dynamo(value: Any) -> Any:
    """A value DynamoDB can store: floats as Decimal (boto3 refuses float), recursively."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dynamo(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """DynamoDB's Decimal as int or float, recursively: the only place the ledger meets Decimal."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _plain_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in item.items()}
