"""The ledger on DynamoDB's real types (moto returns numbers as Decimal, as DynamoDB does)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from nanobanana.ledger import CallLimitReached, Claim, ClaimLost, Ledger

KEY = {"batch": "cats", "id": "00001", "upload": "v1"}


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="ledger",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Ledger("ledger", 3600, key_prefix="generate", max_calls=3, client=client)


def lapse() -> None:
    time.sleep(0.01)


def test_a_held_job_is_busy_until_its_holder_would_have_ended(ledger: Ledger) -> None:
    assert ledger.claim(KEY, remaining_ms=300_000).state is Claim.NEW
    held = ledger.claim(KEY, remaining_ms=300_000)
    assert held.state is Claim.BUSY
    assert 290 < held.wait_seconds <= 300


def test_a_crashed_holder_lapses_and_the_next_delivery_takes_over_with_its_count(ledger: Ledger) -> None:
    first = ledger.claim(KEY, remaining_ms=1)
    assert ledger.reserve_call(first) == 1
    lapse()  # the invocation died without a word: its claim ran out with it
    second = ledger.claim(KEY, remaining_ms=300_000)
    assert second.state is Claim.NEW
    assert second.calls == 1
    with pytest.raises(ClaimLost):
        ledger.reserve_call(first)
    assert ledger.reserve_call(second) == 2


def test_calls_are_counted_over_deliveries_up_to_the_limit(ledger: Ledger) -> None:
    first = ledger.claim(KEY, remaining_ms=300_000)
    assert [ledger.reserve_call(first), ledger.reserve_call(first)] == [1, 2]
    ledger.release(first, {"type": "server_error", "detail": "503", "status_code": 503})
    second = ledger.claim(KEY, remaining_ms=300_000)
    assert second.state is Claim.NEW
    assert second.calls == 2
    assert second.last_error == {"type": "server_error", "detail": "503", "status_code": 503}
    assert ledger.reserve_call(second) == 3
    with pytest.raises(CallLimitReached) as limit:
        ledger.reserve_call(second)
    assert limit.value.calls == 3


def test_what_was_paid_is_kept_for_the_next_delivery_which_never_calls_again(ledger: Ledger) -> None:
    first = ledger.claim(KEY, remaining_ms=300_000)
    ledger.reserve_call(first)
    kept = {"images": ["outputs/cats/00001.png"], "model": "m", "latency_ms": 1200, "text": None}
    ledger.mark_paid(first, kept, 0.039)
    assert ledger.claim(KEY, remaining_ms=300_000).state is Claim.BUSY  # still held by the first
    ledger.release(first)
    again = ledger.claim(KEY, remaining_ms=300_000)
    assert again.state is Claim.PAID
    assert again.paid == kept
    assert again.cost_usd == pytest.approx(0.039)
    assert again.calls == 1
    with pytest.raises(ClaimLost):  # a paid job makes no more calls, whoever asks
        ledger.reserve_call(again)


def test_the_transition_to_final_happens_once(ledger: Ledger) -> None:
    claim = ledger.claim(KEY, remaining_ms=300_000)
    assert ledger.finish(KEY, {"status": "succeeded"}) is True
    assert ledger.finish(KEY, {"status": "succeeded"}) is False
    assert ledger.claim(KEY, remaining_ms=300_000).state is Claim.DONE
    ledger.release(claim)  # a late release changes nothing
    assert ledger.claim(KEY, remaining_ms=300_000).state is Claim.DONE


def test_a_job_that_was_never_claimed_can_end(ledger: Ledger) -> None:
    """An invalid job never reaches the gateway, but its end is a transition to final all the same."""
    assert ledger.finish(KEY, {"status": "failed"}) is True
    assert ledger.finish(KEY, {"status": "failed"}) is False
