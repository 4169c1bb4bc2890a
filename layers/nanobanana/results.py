"""Result records: one JSON per job, succeeded or failed, so that every job explains its own end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.jobs import Job
from nanobanana.messages import Work, utc_timestamp


def prompt_text(job: Job | None) -> str | None:
    """What the job asked for, in words: its prompt or its last user message's text."""
    if job is None:
        return None
    if job.prompt is not None:
        return job.prompt
    for message in reversed(job.messages or []):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content
        texts = [part.get("text", "") for part in message.content if part.get("type") == "text"]
        return " ".join(t for t in texts if t) or None
    return None


def request_summary(job: Job | None, *, model: str, dialect: str, stream: bool) -> dict[str, Any] | None:
    """What is sent besides the prompt (None for a job that never could be): the record's `request`."""
    if job is None:
        return None
    return {
        "model": job.model or model,
        "dialect": dialect,
        "aspect_ratio": job.aspect_ratio,
        "image_size": job.image_size,
        "temperature": job.temperature,
        "max_tokens": job.max_tokens,
        "seed": job.seed,
        "stream": stream,
    }


def record(
    work: Work,
    *,
    images: Sequence[str] = (),
    error: PipelineError | None = None,
    model: str | None = None,
    finish_reason: str | None = None,
    text: str | None = None,
    attempts: int = 0,
    latency_ms: int = 0,
    cost_usd: float = 0.0,
    retries: Sequence[ErrorType] = (),
    warnings: Sequence[str] = (),
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The contract's result record (plus `prompt` and `retries`, for the gallery and the report).

    A failure keeps what the gateway did say (`error.said`) where the caller gives nothing else.
    """
    if error is not None and error.said is not None:
        model = model or error.said.model
        finish_reason = finish_reason or error.said.finish_reason
        text = text or error.said.text
    return {
        "id": work.id,
        "batch": work.batch,
        "status": "failed" if error else "succeeded",
        "images": list(images),
        "model": model,
        "finish_reason": finish_reason,
        "text": text,
        "attempts": attempts,
        "latency_ms": latency_ms,
        "cost_usd": round(cost_usd, 6),
        "error": error.to_record() if error else None,
        "source": work.source,
        "metadata": work.metadata,
        "prompt": prompt_text(work.job),
        "retries": dict(Counter(str(t) for t in retries)),
        "warnings": list(warnings),
        "created_at": work.created_at,
        "finished_at": utc_timestamp(),
        "request": request,
    }
