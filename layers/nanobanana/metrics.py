"""Metric names: the one list that the code, the template's alarms and the dashboard share."""

from __future__ import annotations

DEFAULT_NAMESPACE = "NanoBananaPipeline"

PROMPT_FILES_INGESTED = "PromptFilesIngested"
JOBS_ENQUEUED = "JobsEnqueued"
INVALID_JOBS = "InvalidJobs"
JOBS_SUCCEEDED = "JobsSucceeded"
JOBS_FAILED = "JobsFailed"
IMAGES_GENERATED = "ImagesGenerated"
IMAGE_BYTES = "ImageBytes"
UPSTREAM_LATENCY = "UpstreamLatency"
UPSTREAM_RETRIES = "UpstreamRetries"
UPSTREAM_ERRORS = "UpstreamErrors"
ESTIMATED_COST_USD = "EstimatedCostUSD"
#: Failures of the pipeline itself (S3, DynamoDB, the secret, a permission, a bug), not the gateway's.
PIPELINE_ERRORS = "PipelineErrors"
GATEWAY_CIRCUIT_OPEN = "GatewayCircuitOpen"
BUDGET_EXHAUSTED = "BudgetExhausted"
BATCHES_COMPLETED = "BatchesCompleted"

#: The dimension of UpstreamErrors.
ERROR_TYPE_DIMENSION = "ErrorType"

ALL = (
    PROMPT_FILES_INGESTED,
    JOBS_ENQUEUED,
    INVALID_JOBS,
    JOBS_SUCCEEDED,
    JOBS_FAILED,
    IMAGES_GENERATED,
    IMAGE_BYTES,
    UPSTREAM_LATENCY,
    UPSTREAM_RETRIES,
    UPSTREAM_ERRORS,
    ESTIMATED_COST_USD,
    PIPELINE_ERRORS,
    GATEWAY_CIRCUIT_OPEN,
    BUDGET_EXHAUSTED,
    BATCHES_COMPLETED,
)
