"""The circuit breaker: when most recent gateway calls of the whole deployment fail, stop calling for a while.

Every invocation shares its state, kept in the guards table (DynamoDB) and changed only by conditional
or atomic updates:

* `breaker#calls#<generation>#<slot>`: calls and retryable failures (5xx, timeouts, connection errors,
  429), counted with atomic ADDs in windows of `window_seconds`. A new generation starts at each close,
  so the failures that opened the circuit never reopen it.
* `breaker`: the circuit itself: closed, or open until `open_until_ms`. When the pause is over a few
  calls per round (`probes`) are let through; a probe that gets an answer closes the circuit, a probe
  that fails opens it again for twice the pause, never longer than `max_open_seconds`.

The hot path stays cheap: each process reads the circuit through a cache of `cache_seconds`, and each
call costs one atomic write (its outcome). Only the process whose conditional update wins reports a
change of state, so each change is logged and counted once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CIRCUIT_KEY = "breaker"
CALLS_PREFIX = "breaker#calls"


@dataclass(frozen=True)
class BreakerConfig:
    """The thresholds (template parameters BreakerMinCalls, BreakerFailurePercent, BreakerOpenSeconds)."""

    #: calls a window must hold before it may open the circuit (a lone job's retries never do)
    min_calls: int = 10
    #: share of those calls that failed with a retryable error
    failure_ratio: float = 0.5
    #: the first pause; also the length of a probe round
    open_seconds: float = 30.0
    #: the longest pause, however many probes failed: a blip never becomes an hour of waiting
    max_open_seconds: float = 300.0
    window_seconds: float = 30.0
    probes: int = 3
    cache_seconds: float = 2.0
    ttl_seconds: int = 24 * 3600


@dataclass(frozen=True)
class Circuit:
    """The shared state, as last read. Times are epoch milliseconds."""

    open: bool = False
    generation: int = 0
    opened_ms: int = 0
    open_until_ms: int = 0
    pause_ms: int = 0
    cause: str = ""

    def describe(self, now: float) -> str:
        """closed, open (with the seconds left), or half-open (probing)."""
        if not self.open:
            return "closed"
        left = self.open_until_ms / 1000 - now
        return f"open ({left:.0f} s left)" if left > 0 else "half-open (probing)"


@dataclass(frozen=True)
class Admission:
    """May this call go ahead? A probe's outcome decides the circuit; a refused call waits `wait_seconds`."""

    allowed: bool
    circuit: Circuit
    probe: bool = False
    wait_seconds: float = 0.0
    #: this call took the first probe of a round: the circuit went half-open
    first_probe: bool = False


@dataclass(frozen=True)
class Transition:
    """A change of state made by this process: the caller logs it and sets the metric."""

    opened: bool
    circuit: Circuit
    calls: int = 0
    failures: int = 0


class Breaker:
    """The deployment's circuit, read through a short per-process cache. Thread-safe; blocking (boto3)."""

    def __init__(
        self,
        table: str,
        client: DynamoDBClient,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.dynamodb = client
        self.config = config or BreakerConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._cached: tuple[float, Circuit] | None = None

    # -- reading --------------------------------------------------------------------------------------

    def circuit(self, *, fresh: bool = False) -> Circuit:
        """The circuit as of at most cache_seconds ago (`fresh`: read now)."""
        now = self.clock()
        with self._lock:
            cached = self._cached
        if not fresh and cached is not None and now - cached[0] < self.config.cache_seconds:
            return cached[1]
        item = self.dynamodb.get_item(TableName=self.table, Key=_key(CIRCUIT_KEY), ConsistentRead=True)
        return self._remember(_circuit(item.get("Item")))

    def _remember(self, circuit: Circuit) -> Circuit:
        with self._lock:
            self._cached = (self.clock(), circuit)
        return circuit

    # -- before a call ----------------------------------------------------------------------------------

    def admit(self) -> Admission:
        """Closed: go. Open: wait out the pause. Pause over: a few probes per round go, the rest wait."""
        circuit = self.circuit()
        if not circuit.open:
            return Admission(True, circuit)
        now_ms = self._now_ms()
        if now_ms < circuit.open_until_ms:
            return self._refuse(circuit, (circuit.open_until_ms - now_ms) / 1000)
        round_ms = int(self.config.open_seconds * 1000)
        probe_round = (now_ms - circuit.open_until_ms) // round_ms
        first = self._take_probe(circuit, probe_round)
        if first is not None:
            return Admission(True, circuit, probe=True, first_probe=first)
        circuit = self.circuit(fresh=True)
        if not circuit.open:
            return Admission(True, circuit)
        # the probes of this round are out: wait for the next round, when they will have answered
        now_ms = self._now_ms()
        left_ms = round_ms - (now_ms - circuit.open_until_ms) % round_ms
        return self._refuse(circuit, max(circuit.open_until_ms - now_ms, left_ms) / 1000)

    def _refuse(self, circuit: Circuit, seconds: float) -> Admission:
        """Refused calls come back spread over a fifth of the pause, not all in the same second."""
        jitter = self.rng.uniform(0, self.config.open_seconds / 5)
        return Admission(False, circuit, wait_seconds=max(1.0, seconds + jitter))

    def _take_probe(self, circuit: Circuit, probe_round: int) -> bool | None:
        """A probe slot of this round: True if it is the round's first, False if a later one, None if
        all are taken (or the circuit changed meanwhile)."""
        same_opening = "#state = :open AND opened_ms = :opened AND open_until_ms = :until"
        values = {
            ":open": {"S": "open"},
            ":opened": _n(circuit.opened_ms),
            ":until": _n(circuit.open_until_ms),
            ":round": _n(probe_round),
            ":one": _n(1),
        }
        taken = self._update(
            CIRCUIT_KEY,
            "SET probes = probes + :one",
            f"{same_opening} AND probe_round = :round AND probes < :max",
            {**values, ":max": _n(self.config.probes)},
        )
        if taken is not None:
            return int(taken["probes"]["N"]) == 1
        if self._update(
            CIRCUIT_KEY,
            "SET probe_round = :round, probes = :one",
            f"{same_opening} AND probe_round < :round",
            values,
        ):
            return True
        return None

    # -- after a call -------------------------------------------------------------------------------------

    def record(self, admission: Admission, failure: str | None) -> Transition | None:
        """Count one call's outcome (`failure`: the retryable error type, or None) and change the circuit
        if it calls for it: a probe decides; otherwise enough failures in the window open it."""
        circuit = admission.circuit if admission.probe else self.circuit()
        counts = self._count(circuit.generation, failure is not None)
        if admission.probe:
            return self._reopen(circuit) if failure else self._close(circuit)
        calls, failures = counts
        if (
            failure is not None
            and not circuit.open
            and calls >= self.config.min_calls
            and failures >= self.config.failure_ratio * calls
        ):
            return self._open(circuit, failure, calls, failures)
        return None

    def _count(self, generation: int, failed: bool) -> tuple[int, int]:
        slot = int(self.clock() // self.config.window_seconds)
        item = self.dynamodb.update_item(
            TableName=self.table,
            Key=_key(f"{CALLS_PREFIX}#{generation}#{slot}"),
            UpdateExpression="ADD calls :one, failures :failed SET expiration = :expiration",
            ExpressionAttributeValues={
                ":one": _n(1),
                ":failed": _n(int(failed)),
                ":expiration": _n(int(self.clock()) + self.config.ttl_seconds),
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        return int(item["calls"]["N"]), int(item["failures"]["N"])

    def _open(self, circuit: Circuit, cause: str, calls: int, failures: int) -> Transition | None:
        now_ms = self._now_ms()
        pause_ms = int(self.config.open_seconds * 1000)
        opened = replace(
            circuit,
            open=True,
            opened_ms=now_ms,
            open_until_ms=now_ms + pause_ms,
            pause_ms=pause_ms,
            cause=cause,
        )
        changed = self._update(
            CIRCUIT_KEY,
            "SET #state = :open, opened_ms = :opened, open_until_ms = :until, pause_ms = :pause, "
            "cause = :cause, probe_round = :zero, probes = :zero, generation = :generation",
            "(attribute_not_exists(#state) OR #state = :closed) "
            "AND (attribute_not_exists(generation) OR generation = :generation)",
            {
                ":open": {"S": "open"},
                ":closed": {"S": "closed"},
                ":opened": _n(now_ms),
                ":until": _n(opened.open_until_ms),
                ":pause": _n(pause_ms),
                ":cause": {"S": cause},
                ":zero": _n(0),
                ":generation": _n(circuit.generation),
            },
        )
        return self._changed(changed, Transition(True, opened, calls, failures))

    def _reopen(self, circuit: Circuit) -> Transition | None:
        """A probe failed: open again, for twice the last pause (at most max_open_seconds)."""
        now_ms = self._now_ms()
        pause_ms = min(2 * circuit.pause_ms, int(self.config.max_open_seconds * 1000))
        reopened = replace(circuit, open_until_ms=now_ms + pause_ms, pause_ms=pause_ms)
        changed = self._update(
            CIRCUIT_KEY,
            "SET open_until_ms = :new_until, pause_ms = :pause, probe_round = :zero, probes = :zero",
            "#state = :open AND opened_ms = :opened AND open_until_ms = :until",
            {
                ":open": {"S": "open"},
                ":opened": _n(circuit.opened_ms),
                ":until": _n(circuit.open_until_ms),
                ":new_until": _n(reopened.open_until_ms),
                ":pause": _n(pause_ms),
                ":zero": _n(0),
            },
        )
        return self._changed(changed, Transition(True, reopened))

    def _close(self, circuit: Circuit) -> Transition | None:
        """A probe was answered: close, in a new generation of counters."""
        closed = Circuit(generation=circuit.generation + 1)
        changed = self._update(
            CIRCUIT_KEY,
            "SET #state = :closed, generation = :next",
            "#state = :open AND opened_ms = :opened AND open_until_ms = :until",
            {
                ":open": {"S": "open"},
                ":closed": {"S": "closed"},
                ":opened": _n(circuit.opened_ms),
                ":until": _n(circuit.open_until_ms),
                ":next": _n(closed.generation),
            },
        )
        return self._changed(changed, Transition(False, closed))

    def _changed(self, changed: dict[str, Any] | None, transition: Transition) -> Transition | None:
        """Ours: remember the new state. Someone else's change won: read what it is now."""
        if changed is not None:
            self._remember(transition.circuit)
            return transition
        self.circuit(fresh=True)
        return None

    # -- plumbing ---------------------------------------------------------------------------------------

    def _update(self, key: str, update: str, condition: str, values: dict[str, Any]) -> dict[str, Any] | None:
        """A conditional update of one item: the attributes it set, or None when its condition failed."""
        try:
            response = self.dynamodb.update_item(
                TableName=self.table,
                Key=_key(key),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ExpressionAttributeNames={"#state": "state"},  # every condition reads the state
                ReturnValues="UPDATED_NEW",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return None
        return dict(response.get("Attributes", {}))

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _key(name: str) -> dict[str, Any]:
    return {"id": {"S": name}}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _circuit(item: dict[str, Any] | None) -> Circuit:
    if not item:
        return Circuit()

    def number(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    return Circuit(
        open=item.get("state", {}).get("S") == "open",
        generation=number("generation"),
        opened_ms=number("opened_ms"),
        open_until_ms=number("open_until_ms"),
        pause_ms=number("pause_ms"),
        cause=item.get("cause", {}).get("S", ""),
    )
