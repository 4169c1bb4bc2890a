"""The run report: what a finished local run produced, read back from the result records.

The terminal report and the gallery both come from `summarize`, so the numbers a user sees in the two
places cannot disagree.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanobanana.errors import ADVICE, ErrorType
from nanobanana.storage import INGEST_ERROR_FILE, OUTPUTS_PREFIX


@dataclass(frozen=True)
class Result:
    """One job's result record (or one file's ingest error), with where its files are on disk."""

    batch: str
    id: str
    record: dict[str, Any]
    #: the images' paths relative to the output directory, in order
    images: tuple[str, ...]
    image_bytes: int

    @property
    def succeeded(self) -> bool:
        return self.record.get("status") == "succeeded"

    @property
    def error(self) -> dict[str, Any] | None:
        error = self.record.get("error")
        return error if isinstance(error, dict) else None


@dataclass(frozen=True)
class BatchTotals:
    jobs: int = 0
    succeeded: int = 0
    cost_usd: float = 0.0

    @property
    def failed(self) -> int:
        return self.jobs - self.succeeded

    def add(self, result: Result) -> BatchTotals:
        return BatchTotals(
            self.jobs + 1,
            self.succeeded + result.succeeded,
            self.cost_usd + float(result.record.get("cost_usd") or 0.0),
        )


@dataclass(frozen=True)
class Summary:
    """The run's totals, as the report prints them and the gallery shows them."""

    totals: BatchTotals
    batches: dict[str, BatchTotals]
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    retries: dict[str, int]
    errors: dict[str, int]
    images: int
    image_bytes: int
    dead_letters: int = 0
    results: list[Result] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return self.totals.succeeded

    @property
    def failed(self) -> int:
        """Failed jobs, plus messages that ended in a dead-letter queue without a result."""
        return self.totals.failed + self.dead_letters

    @property
    def success_rate(self) -> float:
        total = self.succeeded + self.failed
        return self.succeeded / total if total else 1.0


def load_results(out_dir: Path, record_files: Iterable[Path]) -> list[Result]:
    """The given result records (files under `out_dir/<batch>/`), sorted by batch then id.

    The caller names the files of this run, so that records left in `out_dir` by an earlier run are not
    counted again.
    """
    results = []
    for path in record_files:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or "batch" not in record:
            continue
        keys = [str(key) for key in record.get("images") or []]
        images = tuple(key.removeprefix(OUTPUTS_PREFIX) for key in keys)
        size = sum((out_dir / image).stat().st_size for image in images if (out_dir / image).is_file())
        job_id = path.name if path.name == INGEST_ERROR_FILE else str(record.get("id", path.stem))
        results.append(Result(str(record["batch"]), job_id, record, images, size))
    return sorted(results, key=lambda result: (result.batch, result.id))


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile: a latency some job actually had, not an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(results: list[Result], *, dead_letters: int = 0) -> Summary:
    totals = BatchTotals()
    batches: dict[str, BatchTotals] = {}
    retries: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies = []
    for result in results:
        totals = totals.add(result)
        batches[result.batch] = batches.get(result.batch, BatchTotals()).add(result)
        retries.update({str(k): int(v) for k, v in (result.record.get("retries") or {}).items()})
        if result.error is not None:
            errors[str(result.error.get("type"))] += 1
        if result.succeeded and result.record.get("latency_ms") is not None:
            latencies.append(float(result.record["latency_ms"]))
    return Summary(
        totals=totals,
        batches=dict(sorted(batches.items())),
        latency_p50_ms=percentile(latencies, 50),
        latency_p90_ms=percentile(latencies, 90),
        retries=dict(retries.most_common()),
        errors=dict(errors.most_common()),
        images=sum(len(result.images) for result in results),
        image_bytes=sum(result.image_bytes for result in results),
        dead_letters=dead_letters,
        results=results,
    )


def advice(error_type: str) -> str:
    """What to do about an error type; an unknown type (a newer handler) gets no advice, not a crash."""
    try:
        return ADVICE[ErrorType(error_type)]
    except ValueError:
        return ""


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def retry_causes(summary: Summary) -> str:
    """`rate_limited 3, server_error 1`: what the retries of the run were for."""
    return ", ".join(f"{cause} {count}" for cause, count in summary.retries.items())


def summary_line(summary: Summary) -> str:
    return f"{summary.succeeded} succeeded, {summary.failed} failed"


def format_report(summary: Summary) -> str:
    """The end-of-run report, one fact per line, errors each followed by what to do about them."""
    jobs = summary.succeeded + summary.failed
    lines = [
        f"jobs          {jobs}   ({summary.succeeded} succeeded, {summary.failed} failed)",
        f"success rate  {summary.success_rate:.1%}",
        f"latency       p50 {milliseconds(summary.latency_p50_ms)}"
        f"   p90 {milliseconds(summary.latency_p90_ms)}",
        f"images        {summary.images}   ({human_bytes(summary.image_bytes)})",
        f"est. cost     ${summary.totals.cost_usd:.4f}",
    ]
    if summary.retries:
        lines.append(f"retries       {sum(summary.retries.values())}   ({retry_causes(summary)})")
    if summary.dead_letters:
        lines.append(f"dead letters  {summary.dead_letters} message(s) moved to a dead-letter queue")
    if summary.errors:
        lines.append("errors")
        for error_type, count in summary.errors.items():
            fix = advice(error_type)
            lines.append(f"  {error_type:<21} {count:>4}" + (f"   fix: {fix}" if fix else ""))
    return "\n".join(lines)
