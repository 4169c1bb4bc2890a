"""The run report: what a local run produced, read back from the output directory.

The terminal report, its summary line and the gallery all come from one `Summary`, so the numbers a user
sees in the three places cannot disagree. A batch's totals are its completion file (`_batch.json`) when
the run wrote one, else its result records; a dead-lettered message counts only if its job has no record
(a job that failed on its last delivery has both, and is one failed job).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanobanana.batches import BATCH_FILE, COMPLETION_FILES
from nanobanana.errors import ADVICE, ErrorType
from nanobanana.storage import INGEST_ERROR_FILE, OUTPUTS_PREFIX

#: A batch's completion summary, written when every job of the upload has ended.
COMPLETION_FILE = BATCH_FILE


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

    def __add__(self, other: BatchTotals) -> BatchTotals:
        return BatchTotals(
            self.jobs + other.jobs, self.succeeded + other.succeeded, self.cost_usd + other.cost_usd
        )

    @classmethod
    def of_completion(cls, completion: dict[str, Any]) -> BatchTotals:
        """The totals of a `_batch.json`."""
        return cls(
            int(completion.get("total") or 0),
            int(completion.get("succeeded") or 0),
            float(completion.get("cost_usd") or 0.0),
        )

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
    #: what the run was: started_at, model, gateway host, dialect (shown above the totals)
    run: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> int:
        return self.totals.succeeded

    @property
    def failed(self) -> int:
        return self.totals.failed

    @property
    def success_rate(self) -> float | None:
        """None when no job ran: "100%" of nothing would say all is well when nothing happened."""
        total = self.succeeded + self.failed
        return self.succeeded / total if total else None


def is_record(name: str) -> bool:
    """Whether a batch folder's file is a result record: a job's `<id>.json` (an id may begin with `_`) or
    the file's `_ingest_error.json`; never a completion file."""
    return name.endswith(".json") and name not in COMPLETION_FILES


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


def dead_lettered(batch: str, job_id: str, what: str) -> Result:
    """A failed result for a message that reached a dead-letter queue and left no record."""
    message = f"{what} ended in a dead-letter queue without a result record: look in run.log for {job_id}"
    record = {
        "id": job_id,
        "batch": batch,
        "status": "failed",
        "error": {"type": "pipeline_error", "message": message, "status_code": None, "retryable": False},
    }
    return Result(batch, job_id, record, (), 0)


def load_completions(out_dir: Path, batches: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The `_batch.json` of each batch that has one."""
    completions = {}
    for batch in batches:
        path = out_dir / batch / COMPLETION_FILE
        try:
            completion = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(completion, dict):
            completions[batch] = completion
    return completions


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile: a latency some job actually had, not an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(
    results: list[Result],
    *,
    dead_letters: int = 0,
    completions: dict[str, dict[str, Any]] | None = None,
    run: dict[str, str] | None = None,
) -> Summary:
    """The run's numbers; a batch's `completions` entry (its `_batch.json`) wins over its records."""
    batches: dict[str, BatchTotals] = {}
    retries: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies = []
    for result in results:
        batches[result.batch] = batches.get(result.batch, BatchTotals()).add(result)
        retries.update({str(k): int(v) for k, v in (result.record.get("retries") or {}).items()})
        if result.error is not None:
            errors[str(result.error.get("type"))] += 1
        if result.succeeded and result.record.get("latency_ms") is not None:
            latencies.append(float(result.record["latency_ms"]))
    for batch, completion in (completions or {}).items():
        batches[batch] = BatchTotals.of_completion(completion)
    return Summary(
        totals=sum(batches.values(), BatchTotals()),
        batches=dict(sorted(batches.items())),
        latency_p50_ms=percentile(latencies, 50),
        latency_p90_ms=percentile(latencies, 90),
        retries=dict(retries.most_common()),
        errors=dict(errors.most_common()),
        images=sum(len(result.images) for result in results),
        image_bytes=sum(result.image_bytes for result in results),
        dead_letters=dead_letters,
        results=results,
        run=dict(run or {}),
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


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


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
        f"success rate  {percent(summary.success_rate)}",
        f"latency       p50 {milliseconds(summary.latency_p50_ms)}"
        f"   p90 {milliseconds(summary.latency_p90_ms)}",
        f"images        {summary.images}   ({human_bytes(summary.image_bytes)})",
        f"est. cost     ${summary.totals.cost_usd:.4f}",
    ]
    if summary.retries:
        lines.append(f"retries       {sum(summary.retries.values())}   ({retry_causes(summary)})")
    if summary.dead_letters:
        lines.append(
            f"dead letters  {summary.dead_letters} message(s) in a dead-letter queue"
            " (their jobs are counted above)"
        )
    if summary.errors:
        lines.append("errors")
        for error_type, count in summary.errors.items():
            fix = advice(error_type)
            lines.append(f"  {error_type:<21} {count:>4}" + (f"   fix: {fix}" if fix else ""))
    return "\n".join(lines)
