"""A gateway down for the first seconds of a 40-job run, then recovering: the calls made while it was
down, with the circuit breaker and without it (BreakerMinCalls 0). Every job must succeed with one paid
call either way; the breaker's worth is the calls it spares a gateway that is already failing.

The breaker's pause is 5 s here (deployed default: 30 s), so that the run takes seconds, not minutes.
"""

from __future__ import annotations

import time
from typing import Any

from nanobanana_cli.harness import local_pipeline
from nanobanana_cli.standin import StandInGateway

API_KEY = "sk-bench"
JOBS = 40
DOWN_SECONDS = 5.0
#: BreakerOpenSeconds for this run
PAUSE_SECONDS = 5


def outage_run(
    breaker: bool, *, down_seconds: float = DOWN_SECONDS, pause_seconds: int = PAUSE_SECONDS
) -> dict[str, Any]:
    """One run; asserts that every job succeeded."""
    parameters = {"BreakerOpenSeconds": str(pause_seconds)} if breaker else {"BreakerMinCalls": "0"}
    with (
        StandInGateway(api_key=API_KEY) as gateway,
        local_pipeline(gateway.base_url, API_KEY, gateway, parameters) as pipeline,
    ):
        pipeline.run()  # the notification's test event
        pipeline.put("prompts/outage.txt", "".join(f"a lighthouse number {n}\n" for n in range(JOBS)))
        gateway.go_down(down_seconds)
        started = time.perf_counter()
        pipeline.run(concurrency=4)
        wall = time.perf_counter() - started
        results = pipeline.results("outage").values()
    assert [r["status"] for r in results] == ["succeeded"] * JOBS
    return {
        "calls_while_down": gateway.calls_while_down,
        "paid_calls": len(gateway.requests) - gateway.calls_while_down,
        "wall_s": round(wall, 1),
    }


def bench_outage() -> dict[str, Any]:
    return {
        "jobs": JOBS,
        "down_s": DOWN_SECONDS,
        "pause_s": PAUSE_SECONDS,
        "breaker": outage_run(breaker=True),
        "no_breaker": outage_run(breaker=False),
    }


def describe(outage: dict[str, Any]) -> str:
    on, off = outage["breaker"], outage["no_breaker"]
    return (
        f"outage: {outage['jobs']} jobs, the gateway down their first {outage['down_s']:g} s: calls while "
        f"down {on['calls_while_down']} with the circuit breaker (pause {outage['pause_s']} s), "
        f"{off['calls_while_down']} without; paid calls {on['paid_calls']} and {off['paid_calls']}; "
        f"all succeeded in {on['wall_s']} s and {off['wall_s']} s"
    )
