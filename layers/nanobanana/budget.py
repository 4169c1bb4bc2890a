"""The daily budget: no call is made that would take the UTC day's spend past DailyBudgetUSD.

One item per UTC day in the guards table, `budget#<YYYY-MM-DD>`, holds `committed`: what has been paid
and what is reserved for calls under way. A job reserves its estimated price before its call with one
conditional ADD (so that concurrent invocations can never reserve past the budget together); when the
answer arrives the reservation becomes the real cost (another ADD of the difference), and it is given
back whole only when no image was paid for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_PREFIX = "budget#"
#: A day's item outlives the day by a week, for `nanobanana status` and for the curious.
TTL_SECONDS = 8 * 24 * 3600
DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Reservation:
    """Money set aside for one job's call, on the UTC day it was made."""

    day: str
    amount: Decimal


@dataclass(frozen=True)
class Refusal:
    """The day's budget cannot take this job: what is committed, and when the next day starts."""

    day: str
    limit: Decimal
    committed: Decimal
    amount: Decimal
    seconds_to_next_day: float


def usd(value: float) -> Decimal:
    """Dollars to the micro-dollar, as DynamoDB stores them exactly."""
    return Decimal(str(round(value, 6)))


class DailyBudget:
    """Reservations against the UTC day's spend (limit 0: no cap, and no DynamoDB call at all)."""

    def __init__(
        self, table: str, limit_usd: float, client: DynamoDBClient, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.table = table
        self.limit = usd(limit_usd)
        self.dynamodb = client
        self.clock = clock

    @property
    def capped(self) -> bool:
        return self.limit > 0

    def day(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")

    def seconds_to_next_day(self) -> float:
        now = datetime.fromtimestamp(self.clock(), UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        return (midnight - now).total_seconds()

    def reserve(self, amount_usd: float) -> Reservation | Refusal:
        """Set `amount_usd` aside today, unless it would take today's commitments past the limit."""
        day, amount = self.day(), usd(amount_usd)
        if not self.capped:
            return Reservation(day, Decimal(0))
        refusal = Refusal(day, self.limit, Decimal(0), amount, self.seconds_to_next_day())
        if amount > self.limit:
            return refusal
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": KEY_PREFIX + day}},
                UpdateExpression="ADD committed :amount SET expiration = :expiration",
                ConditionExpression="attribute_not_exists(committed) OR committed <= :room",
                ExpressionAttributeValues={
                    ":amount": {"N": str(amount)},
                    ":room": {"N": str(self.limit - amount)},
                    ":expiration": {"N": str(int(self.clock()) + TTL_SECONDS)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException as exc:
            old: dict[str, Any] = cast(dict[str, Any], exc.response).get("Item", {})
            committed = Decimal(old["committed"]["N"]) if "committed" in old else Decimal(0)
            return Refusal(day, self.limit, committed, amount, refusal.seconds_to_next_day)
        return Reservation(day, amount)

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        """The reservation becomes the real cost: nothing when no image was paid for, more for two images."""
        if not self.capped:
            return
        delta = usd(cost_usd) - reservation.amount
        if delta == 0:
            return
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"id": {"S": KEY_PREFIX + reservation.day}},
            UpdateExpression="ADD committed :delta",
            ExpressionAttributeValues={":delta": {"N": str(delta)}},
        )

    def committed(self, day: str | None = None) -> Decimal:
        """What the day (today by default) has paid and reserved."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"id": {"S": KEY_PREFIX + (day or self.day())}}, ConsistentRead=True
        ).get("Item", {})
        return Decimal(item["committed"]["N"]) if "committed" in item else Decimal(0)
