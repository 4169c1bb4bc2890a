"""`nanobanana local` end to end: 200 jobs at 1 s gateway latency and `--concurrency 20`.

The ideal is the gateway's own time, 200 / 20 x 1 s = 10 s; the ratio of the run's wall time (start-up,
ingest, polling and writing results included) to it is the runner's overhead. Median of three runs.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any, TextIO

from bench.standin import API_KEY, remote_standin
from nanobanana_cli.cli import main

JOBS = 200
CONCURRENCY = 20
LATENCY_SECONDS = 1.0
RUNS = 3
GOAL = 1.08


def bench_local(log: TextIO) -> dict[str, Any]:
    """Wall times of RUNS runs (their reports and progress go to `log`) and the median's ratio to ideal."""
    walls = []
    with remote_standin(LATENCY_SECONDS) as base_url, tempfile.TemporaryDirectory() as scratch:
        prompts = Path(scratch) / "bench.txt"
        prompts.write_text("".join(f"benchmark image number {n}\n" for n in range(JOBS)))
        for run in range(RUNS):
            argv = ["local", str(prompts), "--out", f"{scratch}/out{run}", "--concurrency", str(CONCURRENCY)]
            argv += ["--api-base-url", base_url, "--api-key", API_KEY]
            started = time.perf_counter()
            with redirect_stderr(log):
                code = main(argv)
            walls.append(time.perf_counter() - started)
            assert code == 0, f"run {run} exited {code}: see the bench log"
    ideal = math.ceil(JOBS / CONCURRENCY) * LATENCY_SECONDS
    median = statistics.median(walls)
    return {
        "jobs": JOBS,
        "concurrency": CONCURRENCY,
        "latency_s": LATENCY_SECONDS,
        "ideal_s": ideal,
        "walls_s": [round(wall, 2) for wall in walls],
        "median_s": round(median, 2),
        "ratio": round(median / ideal, 3),
        "goal": GOAL,
    }
