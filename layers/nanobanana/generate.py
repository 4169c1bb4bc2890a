"""Generate: one job message in, its images and result record out, paid for at most once.

Every record of a batch runs concurrently. A job ends in one of four ways: succeeded (images and record
written, ledger finished), failed for good (record written, message consumed), failed for now (message
returned to the queue with a visibility delay), or, on its last delivery, failed with its record written
and the job made final before its message is dead-lettered, so that every job has a result record.

A job's end is told once, by the call that made the job final in the ledger: its event on the bus, its
count in its run (see `batches`), and the run's completion when it was the last.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError

from nanobanana import metrics as names
from nanobanana.batches import BatchStatus, BatchTable, Completion, CompletionBusy, RunKey
from nanobanana.client import (
    BeforeCall,
    Failure,
    GatewayClient,
    GatewayConfig,
    Success,
    chat_completions_url,
)
from nanobanana.config import Settings
from nanobanana.dialects import learned_dialect, resolve_dialect
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.events import Publisher
from nanobanana.guards import Guards
from nanobanana.images import GeneratedImage, InputImage
from nanobanana.jobs import Job
from nanobanana.ledger import CallLimitReached, Claim, ClaimResult, Ledger
from nanobanana.messages import SQS_UPLOAD, Work, read_message, unreadable
from nanobanana.observability import count, logger, upstream_error
from nanobanana.results import record, request_summary
from nanobanana.retry import Backoff, Deadline
from nanobanana.storage import Storage, json_bytes, output_key

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

T = TypeVar("T")

#: boto3 calls run in threads; the default pool (cores + 4) would queue a batch's S3 and DynamoDB calls.
IO_THREADS = 32
#: SQS refuses a visibility timeout that ends more than 12 h after the message was received; it was
#: received at most one invocation (15 min at most) ago. A longer wait is waited again by the next delivery.
MAX_DELAY_SECONDS = 12 * 3600 - 15 * 60
#: When the gateway gave no Retry-After: wait about this long, doubling with each delivery.
REDELIVERY_BACKOFF = Backoff(base=30.0, cap=900.0)
#: A run's completion that failed (S3, DynamoDB) is tried again by the last job's message, this much later.
COMPLETION_RETRY_SECONDS = 60


class JobDeferred(Exception):
    """The job must be tried again later: the message goes back to the queue (a batch item failure)."""


class RunNotSettled(JobDeferred):
    """The job has ended, but its run's count or completion has not: the message comes back in
    `wait_seconds`, finds the job done and settles the run."""

    def __init__(self, reason: str, wait_seconds: float) -> None:
        super().__init__(reason)
        self.wait_seconds = wait_seconds


class Generator:
    """Runs jobs from the jobs queue: ledger, inputs, gateway, outputs, metrics."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        ledger: Ledger,
        sqs: SQSClient,
        client: Callable[[], GatewayClient],
        guards: Guards | None = None,
        *,
        batches: BatchTable,
        completion: Completion,
        publisher: Publisher,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.ledger = ledger
        self.sqs = sqs
        self.client = client
        self.guards = guards or Guards()
        self.batches = batches
        self.completion = completion
        self.publisher = publisher
        self.pool = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="nanobanana-io")

    async def _io(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking boto3 call on the I/O threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(call, *args, **kwargs))

    async def handle(self, message: SQSRecord, deadline: Deadline, remaining_ms: Callable[[], int]) -> None:
        """Process one message; raise JobDeferred (or any error) to have it redelivered."""
        try:
            work = read_message(message)
        except Exception as exc:  # an envelope that does not validate, a body nested too deep
            logger.exception("a message could not be read", extra={"message_id": message.message_id})
            count(names.PIPELINE_ERRORS)
            work = unreadable(message, describe(exc))
        # on every log line of this job (its own task, its own context): which job, which delivery of it
        logger.thread_safe_append_keys(
            job_id=work.id, batch=work.batch, upload=work.upload, attempt=work.receive_count
        )
        progress = Progress()
        try:
            await self._process(message, work, progress, deadline, remaining_ms)
        except RunNotSettled as unsettled:
            await self._defer(message, unsettled.wait_seconds)
            raise
        except JobDeferred:
            raise
        except Exception as exc:
            # S3, DynamoDB, the secret, a permission or a bug, not the gateway: seen at once, in the logs
            # (with the job's id) and in a metric; the message is redelivered
            logger.exception("the pipeline failed on this job")
            count(names.PIPELINE_ERRORS)
            if work.receive_count >= self.settings.max_receive_count and not progress.kept:
                # the job still ends with a record before the DLQ (unless what was paid for is kept:
                # its record is written or a redrive writes it, never a failure over it)
                cause = f"the pipeline failed on the job's last delivery: {describe(exc)}"
                error = PipelineError(ErrorType.PIPELINE_ERROR, cause)
                await self._finish_failed(work, error, progress=progress, final=True)
            raise

    async def _process(
        self,
        message: SQSRecord,
        work: Work,
        progress: Progress,
        deadline: Deadline,
        remaining_ms: Callable[[], int],
    ) -> None:
        if work.job is None:
            assert work.error is not None
            count(names.INVALID_JOBS)
            await self._finish_failed(work, work.error, final=False)
            return
        claim = await self._io(self.ledger.claim, work.key, remaining_ms())
        if claim.state is Claim.DONE:
            logger.info("job already done: duplicate delivery skipped, nothing paid")
            if work.upload != SQS_UPLOAD:  # its run may wait for a completion a crash left undone
                await self._settle(lambda: self.batches.get(RunKey(work.batch, work.upload)))
            return
        if claim.state is Claim.BUSY:
            logger.info("job is being generated by another invocation", extra={"wait_s": claim.wait_seconds})
            await self._defer(message, claim.wait_seconds)
            raise JobDeferred(f"job {work.id} is in progress elsewhere")
        progress.calls, progress.cost_usd, progress.kept = claim.calls, claim.cost_usd, claim.paid is not None
        try:
            await self._run(message, work, work.job, claim, progress, deadline, remaining_ms)
        except JobDeferred:
            raise
        except Exception:  # give the job back at once (what was paid and kept stays in the ledger)
            await self._let_go(claim)
            raise

    async def _run(
        self,
        message: SQSRecord,
        work: Work,
        job: Job,
        claim: ClaimResult,
        progress: Progress,
        deadline: Deadline,
        remaining_ms: Callable[[], int],
    ) -> None:
        """The held job: finished from what an earlier delivery kept, or generated."""
        if claim.state is Claim.PAID:
            assert claim.paid is not None
            logger.info("job was paid for by an earlier delivery: finished from what it kept")
            await self._finish_kept(work, claim.paid, progress, remaining_ms)
            return
        early = claim.not_before - time.time()
        if early >= 1 and work.receive_count < self.settings.max_receive_count:
            # a wait longer than SQS could hold the message: this delivery waits the rest, without a call
            await self._io(self.ledger.release, claim)
            await self._defer(message, early)
            raise JobDeferred(f"job {work.id} waits {early:.0f}s more before its next call")
        outcome = await self._generate(job, deadline, self._before_call(claim, progress))
        _observe_upstream(outcome)
        progress.pay(outcome.cost_usd)
        if isinstance(outcome, Success):
            await self._keep(work, claim, outcome, progress, remaining_ms)
        else:
            await self._finish_failure(message, work, claim, outcome, progress)

    async def _let_go(self, claim: ClaimResult) -> None:
        """Release after a failure; if the ledger itself is failing, the hold lapses with the invocation."""
        try:
            await self._io(self.ledger.release, claim)
        except Exception:
            logger.exception("the job could not be released: its hold lapses when this invocation ends")

    def _before_call(self, claim: ClaimResult, progress: Progress) -> BeforeCall:
        """Count each gateway call in the ledger before it is made; at the job's limit, stop with the
        last error (this delivery's, or the one an earlier delivery left in the ledger)."""

        async def before_call(last: PipelineError | None) -> None:
            try:
                progress.calls = await self._io(self.ledger.reserve_call, claim)
            except CallLimitReached as limit:
                previous = last or _error_from(claim.last_error)
                raise previous.noted(f"no more calls: {limit}", retryable=False) from None

        return before_call

    async def _generate(self, job: Job, deadline: Deadline, before_call: BeforeCall) -> Success | Failure:
        """Inputs, the guards, then the gateway; a bad input, an unusable key or a guard that holds the job
        back is a failure before any call."""
        try:
            inputs = await asyncio.gather(*(self._input(ref) for ref in job.images))
            client = self.client()
        except PipelineError as error:
            return Failure(error=error, attempts=0, latency_ms=0, retries=[], retry_after=None)
        ticket = await self.guards.before_job()  # the daily budget; the circuit breaker before each call
        if isinstance(ticket, Failure):
            return ticket
        outcome = await client.generate(
            job, inputs, deadline, before_call=ticket.before(before_call), after_call=ticket.after_call
        )
        await self.guards.after_job(ticket, outcome)
        return outcome

    async def _input(self, ref: str) -> InputImage:
        if ref.startswith("https://"):
            return InputImage(data=None, url=ref)
        data = await self._io(self.storage.read_input, ref, self.settings.max_input_image_bytes)
        return InputImage(data=data, url=None)

    async def _keep(
        self,
        work: Work,
        claim: ClaimResult,
        success: Success,
        progress: Progress,
        remaining_ms: Callable[[], int],
    ) -> None:
        """Keep what was paid for before anything else: the images (retried within the invocation), then
        the ledger marked with where they are. Whatever fails later, a redelivery finishes the job from
        the ledger and never calls the gateway again; images that could not be stored end the job."""
        keys = image_keys(work, success.images)
        kept: dict[str, Any] = {
            "images": keys,
            "model": success.model,
            "finish_reason": success.finish_reason,
            "text": success.text,
            "latency_ms": success.latency_ms,
            "retries": [str(error_type) for error_type in success.retries],
            "image_bytes": sum(len(image.data) for image in success.images),
            "warnings": success.warnings,
        }
        budget = _write_budget(remaining_ms)
        try:
            await asyncio.gather(
                *(
                    self._io(self.storage.put_with_retries, key, image.data, image.mime, budget=budget)
                    for key, image in zip(keys, success.images, strict=True)
                )
            )
        except Exception as exc:
            logger.exception("the images paid for could not be stored")
            count(names.PIPELINE_ERRORS)
            kept.update(
                images=[], image_bytes=0, lost=f"the images paid for could not be stored: {describe(exc)}"
            )
        await self._io(self.ledger.mark_paid, claim, kept, success.cost_usd)
        progress.kept = True
        await self._finish_kept(work, kept, progress, remaining_ms)

    async def _finish_kept(
        self, work: Work, kept: dict[str, Any], progress: Progress, remaining_ms: Callable[[], int]
    ) -> None:
        """The result record of a paid answer, from what was kept; then the job is final."""
        calls, cost_usd = progress.calls, progress.cost_usd
        answer = {key: kept[key] for key in ("model", "finish_reason", "text", "latency_ms")}
        answer["warnings"] = kept.get("warnings", [])
        answer["request"] = self._request(work)
        retries = [ErrorType(error_type) for error_type in kept["retries"]]
        if "lost" in kept:
            error = PipelineError(ErrorType.PIPELINE_ERROR, kept["lost"])
            result = record(work, error=error, attempts=calls, cost_usd=cost_usd, retries=retries, **answer)
            await self._write_final(work, result, _write_budget(remaining_ms))
            count(names.JOBS_FAILED)
            logger.warning("job failed", extra={"error": error.to_record()})
            return
        keys: list[str] = kept["images"]
        result = record(work, images=keys, attempts=calls, cost_usd=cost_usd, retries=retries, **answer)
        await self._write_final(work, result, _write_budget(remaining_ms))
        count(names.JOBS_SUCCEEDED)
        count(names.IMAGES_GENERATED, len(keys))
        count(names.IMAGE_BYTES, kept["image_bytes"], MetricUnit.Bytes)
        logger.info("job succeeded", extra={"images": keys, "attempts": calls})

    async def _write_final(self, work: Work, result: dict[str, Any], budget: float) -> None:
        """The result record, then the ledger's transition to final (and, if it was this call's, the
        job's end told)."""
        body = json_bytes(result)
        key = output_key(work.batch, f"{work.id}.json")
        await self._io(self.storage.put_with_retries, key, body, "application/json", budget=budget)
        if await self._io(self.ledger.finish, work.key, _summary(result)):
            await self._ended(work, result)

    async def _finish_failure(
        self, message: SQSRecord, work: Work, claim: ClaimResult, failure: Failure, progress: Progress
    ) -> None:
        error = failure.error
        if not error.retryable:
            await self._finish_failed(work, error, failure=failure, progress=progress, final=True)
            return
        if work.receive_count >= self.settings.max_receive_count:
            # The job's end: recorded, final and counted before its message is dead-lettered (and
            # alarmed); a redrive finds it done. Its line in _failed.jsonl is how it is tried again.
            await self._finish_failed(work, error, failure=failure, progress=progress, final=True)
            raise JobDeferred(f"job {work.id} failed on its last delivery: {error.type}")
        delay = failure.retry_after or REDELIVERY_BACKOFF.delay(work.receive_count - 1)
        await self._io(self.ledger.release, claim, _error_to(error), not_before=time.time() + delay)
        logger.warning("job will be retried", extra={"error": error.to_record(), "delay_s": delay})
        await self._defer(message, delay)
        raise JobDeferred(f"job {work.id} deferred {delay:.0f}s: {error.type}")

    async def _finish_failed(
        self,
        work: Work,
        error: PipelineError,
        *,
        failure: Failure | None = None,
        progress: Progress | None = None,
        final: bool,
    ) -> None:
        """Write the failed result record; `final` marks the job done in the ledger (never retried).
        Not final: an invalid message, which the ledger never sees."""
        result = record(
            work,
            error=error,
            attempts=progress.calls if progress else 0,
            latency_ms=failure.latency_ms if failure else 0,
            cost_usd=progress.cost_usd if progress else 0.0,
            retries=failure.retries if failure else (),
            request=self._request(work),
        )
        await self._io(self.storage.put_json, output_key(work.batch, f"{work.id}.json"), result)
        made_final = await self._io(self.ledger.finish, work.key, _summary(result)) if final else True
        count(names.JOBS_FAILED)
        logger.warning("job failed", extra={"error": error.to_record()})
        if made_final:
            await self._ended(work, result)

    def _request(self, work: Work) -> dict[str, Any] | None:
        """The record's `request`: the dialect is what `auto` learned from the gateway, if it did."""
        settings = self.settings
        dialect = resolve_dialect(settings.dialect, settings.api_base_url)
        if settings.dialect == "auto":
            dialect = learned_dialect(chat_completions_url(settings.api_base_url)) or dialect
        return request_summary(work.job, model=settings.model_id, dialect=dialect, stream=settings.stream)

    async def _ended(self, work: Work, result: dict[str, Any]) -> None:
        """A job has ended (its record written, its ledger entry made final by this call): tell of it,
        count it in its run, and complete the run if this was its last job. Once per job's end."""
        await self._io(self.publisher.job_ended, [result])
        if work.upload != SQS_UPLOAD:
            await self._settle(lambda: self.batches.count(RunKey(work.batch, work.upload), result))

    async def _settle(self, update: Callable[[], BatchStatus | None]) -> None:
        """Update the run, then complete it if every job has ended. The job has ended whatever happens
        here: a failure returns the message, whose next delivery finds the job done and settles the run."""
        try:
            await self._io(lambda: self.completion.settle(update()))
        except CompletionBusy as busy:
            raise RunNotSettled(str(busy), busy.wait_seconds) from None
        except Exception as exc:
            logger.exception("the job's run could not be updated or completed; its message will come back")
            count(names.PIPELINE_ERRORS)
            raise RunNotSettled(f"run not settled: {describe(exc)}", COMPLETION_RETRY_SECONDS) from exc

    async def _defer(self, message: SQSRecord, seconds: float) -> None:
        """Hold the message back for `seconds` instead of sleeping through the invocation."""
        timeout = min(MAX_DELAY_SECONDS, max(1, math.ceil(seconds)))
        await self._io(
            self.sqs.change_message_visibility,
            QueueUrl=self.settings.jobs_queue_url,
            ReceiptHandle=message.receipt_handle,
            VisibilityTimeout=timeout,
        )


def _write_budget(remaining_ms: Callable[[], int]) -> float:
    """Seconds that writing what was paid for may take: what is left of the invocation, less one."""
    return max(1.0, remaining_ms() / 1000 - 1)


@dataclass
class Progress:
    """How far one delivery of a job got: its gateway calls and paid cost over all deliveries, as the
    ledger counts them, and whether a paid answer is kept (then nothing may fail the job over it)."""

    calls: int = 0
    cost_usd: float = 0.0
    kept: bool = False

    def pay(self, cost_usd: float) -> None:
        """An answer that carried images was paid for (kept or not): it counts, once, where it arrives."""
        if cost_usd:
            self.cost_usd += cost_usd
            count(names.ESTIMATED_COST_USD, cost_usd, MetricUnit.NoUnit)


def describe(exc: BaseException) -> str:
    """An exception as a record's message may name it: an AWS refusal by its operation and error code
    (AccessDenied, ResourceNotFoundException), anything else by its type and first words."""
    aws = next((e for e in (exc, exc.__cause__, exc.__context__) if isinstance(e, ClientError)), None)
    if aws is not None:  # also inside a wrapper, as Powertools' GetParameterError wraps it
        error = aws.response.get("Error", {})
        words = f"{aws.operation_name} failed: {error.get('Code', '?')}: {error.get('Message', '')}"
    else:
        words = f"{type(exc).__name__}: {exc}"
    return words if len(words) <= 300 else words[:297] + "..."


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of a job's end."""
    return {key: result[key] for key in ("status", "images", "error", "attempts", "cost_usd")}


def _error_to(error: PipelineError) -> dict[str, Any]:
    """What the ledger keeps of a delivery's last error, for a later delivery that has no calls left."""
    return {"type": str(error.type), "detail": error.detail, "status_code": error.status_code}


def _error_from(kept: dict[str, Any] | None) -> PipelineError:
    if kept is None:
        return PipelineError(ErrorType.SERVER_ERROR, "the gateway failed on every call")
    return PipelineError(ErrorType(kept["type"]), kept["detail"], status_code=kept["status_code"])


def image_keys(work: Work, images: Sequence[GeneratedImage]) -> list[str]:
    """`<id>.<ext>`, then `<id>-2.<ext>`, `<id>-3.<ext>` for further images of the same answer."""
    return [
        output_key(work.batch, f"{work.id}{'' if n == 1 else f'-{n}'}.{image.ext}")
        for n, image in enumerate(images, start=1)
    ]


def _observe_upstream(outcome: Success | Failure) -> None:
    """Latency, retries and every failed attempt's error type, whatever the job's end."""
    if outcome.attempts == 0:
        return
    count(names.UPSTREAM_LATENCY, outcome.latency_ms, MetricUnit.Milliseconds)
    count(names.UPSTREAM_RETRIES, outcome.attempts - 1)
    failed: list[ErrorType] = list(outcome.retries)
    if isinstance(outcome, Failure):
        failed.append(outcome.error.type)
    for error_type in failed:
        upstream_error(error_type)


def api_key_from_secret(value: str) -> str:
    """The secret holds the key as plain text, or as JSON `{"api_key": "..."}`."""
    text = value.strip()
    if text.startswith("{"):
        try:
            return str(json.loads(text)["api_key"]).strip()
        except (ValueError, KeyError):
            raise PipelineError(
                ErrorType.AUTHENTICATION, 'the API key secret is JSON without an "api_key" field'
            ) from None
    return text


def gateway_factory(settings: Settings, secret: Callable[[], str]) -> Callable[[], GatewayClient]:
    """One pooled client per process, reused across invocations, built on first use.

    A pooled HTTP client is bound to its event loop: Lambda keeps one loop per process, but elsewhere
    each invocation may run on a new one, and then the client is built anew for it. A new key in the
    secret (read through a cache of a few minutes) also gets a new client: a fixed key must not wait
    for a cold start.
    """
    current: dict[str, tuple[asyncio.AbstractEventLoop, str, GatewayClient]] = {}

    def client() -> GatewayClient:
        loop = asyncio.get_running_loop()
        api_key = api_key_from_secret(secret())
        held = current.get("client")
        if held is None or held[0] is not loop or held[1] != api_key:
            config = GatewayConfig(
                base_url=settings.api_base_url,
                api_key=api_key,
                model=settings.model_id,
                dialect=settings.dialect,
                stream=settings.stream,
                price_per_image_usd=settings.price_per_image_usd,
                max_answer_bytes=settings.max_answer_bytes,
                max_images_per_answer=settings.max_images_per_answer,
                max_image_bytes=settings.max_image_bytes,
            )
            current["client"] = (loop, api_key, GatewayClient(config))
        return current["client"][2]

    return client
