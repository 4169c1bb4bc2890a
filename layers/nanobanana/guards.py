"""Guards before every paid call: the daily budget (once per job) and the circuit breaker (before each call).

`Guards.before_job` reserves the job's price against the day's budget and hands back a `Ticket`, the gate
the gateway client asks before each call and tells after it; `Guards.after_job` turns the reservation
into what was paid. A job that may not be called gets a `Failure` with the delay it should wait in the
queue, so the generate path treats it like any other retryable failure: deferred, or on its last delivery
ended with a record. Logs and metrics are written here, on the event loop, where each job's log keys are.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from nanobanana import metrics as names
from nanobanana.breaker import Admission, Breaker, BreakerConfig, Circuit, Transition
from nanobanana.budget import DailyBudget, Refusal, Reservation
from nanobanana.client import BeforeCall, Failure, Success
from nanobanana.config import Settings
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.observability import count, logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T = TypeVar("T")

#: What a gateway that is down or overwhelmed answers; a 4xx or a refusal is a gateway that works.
BREAKER_FAILURES = frozenset({ErrorType.SERVER_ERROR, ErrorType.TIMEOUT, ErrorType.RATE_LIMITED})
#: Jobs held for the next UTC day come back spread over this many seconds after midnight.
NEXT_DAY_SPREAD_SECONDS = 300.0
#: The guards' own threads (each may hold a DynamoDB connection at once).
GUARD_THREADS = 16


def breaker_config(settings: Settings) -> BreakerConfig:
    return BreakerConfig(
        min_calls=settings.breaker_min_calls,
        failure_ratio=settings.breaker_failure_percent / 100,
        open_seconds=settings.breaker_open_seconds,
        max_open_seconds=max(settings.breaker_open_seconds, BreakerConfig.max_open_seconds),
    )


class Guards:
    """The deployment's guards; either may be off (no breaker: BreakerMinCalls 0; no cap: budget 0)."""

    def __init__(
        self,
        breaker: Breaker | None = None,
        budget: DailyBudget | None = None,
        *,
        price_usd: float = 0.0,
        wait_for_next_day: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.breaker = breaker
        self.budget = budget if budget is not None and budget.capped else None
        self.price_usd = price_usd
        self.wait_for_next_day = wait_for_next_day
        self.rng = rng or random.Random()
        # their own threads: a guard's DynamoDB call must not queue behind a batch's S3 writes
        self.pool = ThreadPoolExecutor(max_workers=GUARD_THREADS, thread_name_prefix="nanobanana-guards")

    @classmethod
    def from_settings(cls, settings: Settings, client: DynamoDBClient) -> Guards:
        table = settings.guards_table
        on = bool(table)
        return cls(
            Breaker(table, client, breaker_config(settings)) if on and settings.breaker_min_calls else None,
            DailyBudget(table, settings.daily_budget_usd, client) if on else None,
            price_usd=settings.price_per_image_usd,
            wait_for_next_day=settings.over_budget == "wait",
        )

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call, *args)

    async def before_job(self) -> Ticket | Failure:
        """Reserve the job's price; if the day's budget is spent, a Failure with the wait for the next day."""
        if self.budget is None:
            return Ticket(self, None)
        reserved = await self._run(self.budget.reserve, self.price_usd)
        if isinstance(reserved, Reservation):
            return Ticket(self, reserved)
        count(names.BUDGET_EXHAUSTED)
        logger.warning(
            "daily budget spent: job not called",
            extra={
                "day": reserved.day,
                "budget_usd": str(reserved.limit),
                "committed_usd": str(reserved.committed),
            },
        )
        wait = reserved.seconds_to_next_day + self.rng.uniform(0, NEXT_DAY_SPREAD_SECONDS)
        return Failure(
            budget_error(reserved, retryable=self.wait_for_next_day),
            attempts=0,
            latency_ms=0,
            retries=[],
            retry_after=wait if self.wait_for_next_day else None,
        )

    async def after_job(self, ticket: Ticket, outcome: Success | Failure) -> None:
        """The reservation becomes what was paid (nothing, when no answer carried an image)."""
        if self.budget is not None and ticket.reservation is not None:
            await self._run(self.budget.settle, ticket.reservation, outcome.cost_usd)


class Ticket:
    """One job's pass through the guards: the circuit is asked before each call and told after it."""

    def __init__(self, guards: Guards, reservation: Reservation | None) -> None:
        self.guards = guards
        self.reservation = reservation
        self._admission: Admission | None = None

    def before(self, then: BeforeCall) -> BeforeCall:
        """The client's hook: the circuit first (a call it holds back is not counted), then `then`."""

        async def before_call(last: PipelineError | None) -> None:
            await self.admit(last)
            await then(last)

        return before_call

    async def admit(self, last: PipelineError | None) -> None:
        """Raise, if the circuit is open, the error this delivery ends with: the last call's, or the
        circuit's before any call, with the wait in the queue as its retry_after."""
        breaker = self.guards.breaker
        if breaker is None:
            return
        admission = self._admission = await self.guards._run(breaker.admit)
        if admission.first_probe:
            logger.warning("gateway circuit half-open: probing", extra=_circuit_log(admission.circuit))
        if admission.allowed:
            return
        count(names.GATEWAY_CIRCUIT_OPEN, 1)
        if last is not None:
            raise last.noted(
                "calls paused: the circuit breaker is open",
                retryable=True,
                retry_after=admission.wait_seconds,
            )
        circuit = admission.circuit
        cause = ErrorType(circuit.cause) if circuit.cause in set(ErrorType) else ErrorType.SERVER_ERROR
        raise PipelineError(
            cause,
            f"not called: the circuit breaker is open since most recent gateway calls failed ({cause}); "
            "jobs wait in the queue and calls resume once a few probes are answered",
            retry_after=admission.wait_seconds,
        )

    async def after_call(self, error: PipelineError | None) -> None:
        """Count the call's outcome; log and set the metric if it changed the circuit."""
        breaker, admission = self.guards.breaker, self._admission
        if breaker is None or admission is None:
            return
        failure = str(error.type) if error is not None and error.type in BREAKER_FAILURES else None
        transition = await self.guards._run(breaker.record, admission, failure)
        if transition is not None:
            _report(transition)


def _report(transition: Transition) -> None:
    """One log line and one metric value for each change of state (only the process that made it)."""
    circuit = transition.circuit
    count(names.GATEWAY_CIRCUIT_OPEN, int(transition.opened))
    if not transition.opened:
        logger.warning(
            "gateway circuit closed: a probe was answered, calls resume", extra=_circuit_log(circuit)
        )
    elif transition.calls:
        logger.warning(
            "gateway circuit opened: most recent calls failed, jobs wait in the queue",
            extra={**_circuit_log(circuit), "calls": transition.calls, "failures": transition.failures},
        )
    else:
        logger.warning("gateway circuit opened again: a probe failed", extra=_circuit_log(circuit))


def _circuit_log(circuit: Circuit) -> dict[str, object]:
    return {"circuit": {"cause": circuit.cause, "pause_s": circuit.pause_ms / 1000}}


def budget_error(refusal: Refusal, *, retryable: bool) -> PipelineError:
    return PipelineError(
        ErrorType.BUDGET_EXCEEDED,
        f"not called: the daily budget of ${refusal.limit} (DailyBudgetUSD) is spent for {refusal.day} "
        f"(UTC): ${refusal.committed} paid or reserved, and this job needs ${refusal.amount}",
        retryable=retryable,
    )


@dataclass(frozen=True)
class GuardStatus:
    """What the local runner shows: the circuit and what is left of today's budget (None: no cap)."""

    circuit: str
    budget_usd: float | None
    spent_usd: float

    def describe(self) -> str:
        budget = (
            f"budget ${self.budget_usd - self.spent_usd:.2f} of ${self.budget_usd:.2f} left today"
            if self.budget_usd is not None
            else "no daily budget"
        )
        return f"circuit {self.circuit}, {budget}"


def guard_status(settings: Settings, client: DynamoDBClient) -> GuardStatus:
    """The guards' shared state, read fresh (for progress lines and reports, not the hot path)."""
    table = settings.guards_table
    circuit = Breaker(table, client).circuit(fresh=True) if settings.breaker_min_calls else None
    budget = DailyBudget(table, settings.daily_budget_usd, client)
    return GuardStatus(
        circuit=circuit.describe(budget.clock()) if circuit is not None else "off",
        budget_usd=float(budget.limit) if budget.capped else None,
        spent_usd=float(budget.committed()) if budget.capped else 0.0,
    )
