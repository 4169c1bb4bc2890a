"""IngestFunction: S3 notifications of prompt files (via PromptFilesQueue) -> one job message per job."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from nanobanana.batches import batch_tracking
from nanobanana.config import Settings
from nanobanana.ingest import Ingestor, Upload, uploads
from nanobanana.observability import logger, metrics, tracer
from nanobanana.storage import Storage

settings = Settings.from_env()
storage = Storage(boto3.client("s3"), settings.bucket)
dynamodb = boto3.client("dynamodb")  # one client for the runs and the idempotency records
batches, completion, publisher = batch_tracking(settings, storage, dynamodb, boto3.client("events"))
ingestor = Ingestor(
    settings, storage, boto3.client("sqs"), batches=batches, completion=completion, publisher=publisher
)
processor = BatchProcessor(event_type=EventType.SQS)
idempotency = IdempotencyConfig(expires_after_seconds=settings.idempotency_ttl_seconds)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb)


@idempotent_function(  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
    data_keyword_argument="identity", config=idempotency, persistence_store=persistence
)
def ingest_once(*, identity: dict[str, str], upload: Upload) -> dict[str, Any]:
    """Re-ingesting the same upload (a duplicate S3 event, a retried message) enqueues nothing new."""
    return ingestor.ingest(upload, identity["upload"])


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    for upload in uploads(record):
        ingest_once(identity=ingestor.identity(upload), upload=upload)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
