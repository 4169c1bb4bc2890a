"""The contract's error taxonomy: every failure a job can end with, and what the user should do about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorType(StrEnum):
    AUTHENTICATION = "authentication"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CLIENT_ERROR = "client_error"
    CONTENT_FILTERED = "content_filtered"
    BAD_RESPONSE = "bad_response"
    INPUT_ERROR = "input_error"
    INVALID_JOB = "invalid_job"
    PIPELINE_ERROR = "pipeline_error"
    BUDGET_EXCEEDED = "budget_exceeded"


#: What to do about each error, appended to every message so that a result record explains itself.
ADVICE: dict[ErrorType, str] = {
    ErrorType.AUTHENTICATION: "check the API key in the secret and that it may use this model",
    ErrorType.INSUFFICIENT_BALANCE: "top up the gateway account's balance or quota, then resubmit",
    ErrorType.RATE_LIMITED: "lower MaxConcurrency (or --concurrency) or raise the gateway's rate limit",
    ErrorType.SERVER_ERROR: "the gateway or model failed; it was retried, resubmit later if it persists",
    ErrorType.TIMEOUT: "the gateway was too slow; it was retried, resubmit later or raise the timeout",
    ErrorType.CLIENT_ERROR: "the gateway rejected the request; check the model id and job parameters",
    ErrorType.CONTENT_FILTERED: "the model refused or answered without an image; rephrase the prompt",
    ErrorType.BAD_RESPONSE: "the gateway's answer held no readable image; check ApiBaseUrl and the dialect",
    ErrorType.INPUT_ERROR: "an input image is missing, unreadable or too big; fix the job's images",
    ErrorType.INVALID_JOB: "fix what the message names (a job's field, or the file) and submit it again",
    ErrorType.PIPELINE_ERROR: "the pipeline itself failed: look in the function's logs for this job's id",
    ErrorType.BUDGET_EXCEEDED: (
        "raise DailyBudgetUSD (--daily-budget locally) or wait for the next UTC day, then submit the job "
        "again (a file's run: its _failed.jsonl; a message: a new id)"
    ),
}

#: The advice for a content_filtered answer that is text with no refusal: the gateway may be one that
#: cannot return images at all (one-api keeps only the first text part), which no prompt fixes.
NO_IMAGE_ADVICE = (
    "no image came back; if no job gets one, the gateway does not pass images through (see the README's "
    "gateway table for one that does), else rephrase the prompt"
)

#: Failures that another attempt may cure.
RETRYABLE: frozenset[ErrorType] = frozenset(
    {ErrorType.RATE_LIMITED, ErrorType.SERVER_ERROR, ErrorType.TIMEOUT, ErrorType.BAD_RESPONSE}
)


@dataclass(frozen=True)
class Said:
    """What the gateway answered beside a failure (redacted): a failed record keeps it."""

    model: str | None = None
    finish_reason: str | None = None
    text: str | None = None


class PipelineError(Exception):
    """A typed failure of one job; its fields are exactly the result record's `error` object.

    `advice` replaces the type's usual advice where the cause is known better; `said` is what the
    gateway answered (model, finish_reason, text), for the failed record.
    """

    def __init__(
        self,
        error_type: ErrorType,
        detail: str,
        *,
        status_code: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        advice: str | None = None,
        said: Said | None = None,
    ) -> None:
        self.type = error_type
        self.detail = detail
        self.status_code = status_code
        self.retryable = error_type in RETRYABLE if retryable is None else retryable
        #: seconds the server asked us to wait before the next attempt, if it said
        self.retry_after = retry_after
        self.advice = advice or ADVICE[error_type]
        self.said = said
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.detail}; {self.advice}"

    def noted(
        self, note: str, *, retryable: bool, retry_after: float | None = None, said: Said | None = None
    ) -> PipelineError:
        """The same error with `note` after its detail (and `said`, if given, for what the gateway said):
        what a job ends with when a guard, or the client itself, stops its calls."""
        return PipelineError(
            self.type,
            f"{self.detail} ({note})",
            status_code=self.status_code,
            retryable=retryable,
            retry_after=retry_after,
            advice=self.advice,
            said=said or self.said,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "type": str(self.type),
            "message": self.message,
            "status_code": self.status_code,
            "retryable": self.retryable,
        }


class InvalidJobError(PipelineError):
    """A job that fails validation: it never reaches the gateway."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(ErrorType.INVALID_JOB, f"{field}: {problem}" if field else problem)
