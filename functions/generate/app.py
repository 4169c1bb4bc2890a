"""GenerateFunction: job messages (JobsQueue) -> images and result records under outputs/."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from nanobanana.batches import batch_tracking
from nanobanana.config import Settings
from nanobanana.generate import IO_THREADS, Generator, gateway_factory
from nanobanana.guards import GUARD_THREADS, Guards
from nanobanana.ledger import Ledger
from nanobanana.observability import logger, metrics, tracer
from nanobanana.retry import Deadline
from nanobanana.storage import Storage

settings = Settings.from_env()
pooled = Config(max_pool_connections=IO_THREADS)  # as many connections as I/O threads
# one DynamoDB client for the ledger, the runs and the guards (each client costs cold-start time and
# memory); its pool holds a connection for every thread that may call it: the I/O threads and the guards'
dynamodb = boto3.client("dynamodb", config=Config(max_pool_connections=IO_THREADS + GUARD_THREADS))
# A batch whose every job is deferred is normal operation, not a function error (and not alarmed).
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def api_key() -> str:
    """The gateway's key, read through a cache of a few minutes. Powertools' parameters (and the
    providers they load) are imported on first use: not at a cold start whose jobs need no gateway."""
    from aws_lambda_powertools.utilities.parameters import get_secret

    return str(get_secret(settings.api_key_secret_arn, max_age=300))


storage = Storage(boto3.client("s3", config=pooled), settings.bucket)
batches, completion, publisher = batch_tracking(
    settings, storage, dynamodb, boto3.client("events", config=pooled)
)
generator = Generator(
    settings,
    storage,
    Ledger(
        settings.idempotency_table,
        settings.idempotency_ttl_seconds,
        key_prefix="generate",
        max_calls=settings.max_gateway_calls_per_job,
        client=dynamodb,
    ),
    boto3.client("sqs", config=pooled),
    gateway_factory(settings, api_key),
    Guards.from_settings(settings, dynamodb),
    batches=batches,
    completion=completion,
    publisher=publisher,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    deadline = Deadline(context.get_remaining_time_in_millis, settings.result_write_margin_seconds)

    async def record_handler(record: SQSRecord) -> None:
        await generator.handle(record, deadline, context.get_remaining_time_in_millis)

    return async_process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
