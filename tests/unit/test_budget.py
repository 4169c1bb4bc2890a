"""The daily budget through moto's DynamoDB: reservations, settling, the UTC day, and concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from conftest import GUARDS_TABLE

from nanobanana.budget import DailyBudget, Refusal, Reservation

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
PRICE = 0.039


def budget(dynamodb: DynamoDBClient, limit: float = 0.10, now: float = NOON) -> DailyBudget:
    return DailyBudget(GUARDS_TABLE, limit, dynamodb, clock=lambda: now)


def test_two_images_fit_in_ten_cents_the_third_is_refused(dynamodb: DynamoDBClient) -> None:
    day = budget(dynamodb)
    first, second, third = (day.reserve(PRICE) for _ in range(3))
    assert first == second == Reservation("2026-11-28", Decimal("0.039"))
    assert isinstance(third, Refusal)
    assert (third.committed, third.limit, third.amount) == (
        Decimal("0.078"),
        Decimal("0.1"),
        Decimal("0.039"),
    )
    assert third.seconds_to_next_day == 12 * 3600
    assert day.committed() == Decimal("0.078")


def test_a_job_dearer_than_the_whole_budget_is_refused_on_an_empty_day(dynamodb: DynamoDBClient) -> None:
    assert isinstance(budget(dynamodb, limit=0.02).reserve(PRICE), Refusal)
    assert budget(dynamodb).committed() == 0


def test_settling_turns_the_reservation_into_what_was_paid(dynamodb: DynamoDBClient) -> None:
    day = budget(dynamodb, limit=1.0)
    paid, unpaid, two_images = (day.reserve(PRICE) for _ in range(3))
    assert isinstance(paid, Reservation) and isinstance(unpaid, Reservation)
    assert isinstance(two_images, Reservation)
    day.settle(paid, PRICE)
    day.settle(unpaid, 0.0)  # no image was paid for: released whole
    day.settle(two_images, 2 * PRICE)
    assert day.committed() == Decimal("0.117")


def test_a_reservation_settles_against_its_own_day(dynamodb: DynamoDBClient) -> None:
    before_midnight = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC).timestamp()
    late = budget(dynamodb, now=before_midnight)
    reservation = late.reserve(PRICE)
    assert isinstance(reservation, Reservation)
    assert late.seconds_to_next_day() == 1
    budget(dynamodb, now=before_midnight + 2).settle(reservation, 0.0)
    assert late.committed("2026-11-28") == 0
    assert late.committed("2026-11-29") == 0


def test_a_new_utc_day_starts_from_nothing(dynamodb: DynamoDBClient) -> None:
    assert isinstance(budget(dynamodb).reserve(0.1), Reservation)
    assert isinstance(budget(dynamodb).reserve(PRICE), Refusal)
    assert isinstance(budget(dynamodb, now=NOON + 24 * 3600).reserve(PRICE), Reservation)


def test_no_cap_reserves_nothing_and_writes_nothing(dynamodb: DynamoDBClient) -> None:
    free = budget(dynamodb, limit=0)
    reservation = free.reserve(1000.0)
    assert reservation == Reservation("2026-11-28", Decimal(0))
    free.settle(reservation, 1000.0)
    assert dynamodb.scan(TableName=GUARDS_TABLE)["Items"] == []


def test_twenty_concurrent_reservations_never_overspend(dynamodb: DynamoDBClient) -> None:
    day = budget(dynamodb)
    start = threading.Barrier(20)
    outcomes: list[Reservation | Refusal] = []
    lock = threading.Lock()

    def reserve() -> None:
        start.wait()
        outcome = day.reserve(PRICE)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(outcome, Reservation) for outcome in outcomes) == 2
    assert day.committed() == Decimal("0.078") <= day.limit
