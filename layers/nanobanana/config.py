"""The functions' configuration: parsed once per cold start from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Dialect = Literal["auto", "openrouter", "newapi"]
OverBudget = Literal["wait", "fail"]

#: Environment variable -> Settings field. The template sets each of these (a test holds it to that).
ENVIRONMENT: dict[str, str] = {
    "BUCKET_NAME": "bucket",
    "JOBS_QUEUE_URL": "jobs_queue_url",
    "IDEMPOTENCY_TABLE": "idempotency_table",
    "IDEMPOTENCY_TTL_SECONDS": "idempotency_ttl_seconds",
    "BATCHES_TABLE": "batches_table",
    "EVENT_BUS_NAME": "event_bus_name",
    "STACK_NAME": "stack_name",
    "API_BASE_URL": "api_base_url",
    "API_KEY_SECRET_ARN": "api_key_secret_arn",
    "MODEL_ID": "model_id",
    "GATEWAY_DIALECT": "dialect",
    "GATEWAY_STREAM": "stream",
    "PRICE_PER_IMAGE_USD": "price_per_image_usd",
    "MAX_FILE_BYTES": "max_file_bytes",
    "MAX_JOBS_PER_FILE": "max_jobs_per_file",
    "MAX_INPUT_IMAGE_BYTES": "max_input_image_bytes",
    "MAX_ANSWER_BYTES": "max_answer_bytes",
    "MAX_IMAGES_PER_ANSWER": "max_images_per_answer",
    "MAX_IMAGE_BYTES": "max_image_bytes",
    "MAX_RECEIVE_COUNT": "max_receive_count",
    "RESULT_WRITE_MARGIN_SECONDS": "result_write_margin_seconds",
    "MAX_GATEWAY_CALLS_PER_JOB": "max_gateway_calls_per_job",
    "GUARDS_TABLE": "guards_table",
    "DAILY_BUDGET_USD": "daily_budget_usd",
    "OVER_BUDGET": "over_budget",
    "BREAKER_MIN_CALLS": "breaker_min_calls",
    "BREAKER_FAILURE_PERCENT": "breaker_failure_percent",
    "BREAKER_OPEN_SECONDS": "breaker_open_seconds",
}


class Settings(BaseModel):
    """Everything a handler needs to know about its deployment."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    jobs_queue_url: str = ""
    idempotency_table: str
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    #: Batch runs' progress (empty: not tracked, e.g. a test that only exercises one handler).
    batches_table: str = ""
    event_bus_name: str = "default"
    stack_name: str = ""
    api_base_url: str = ""
    api_key_secret_arn: str = ""
    model_id: str = "gemini-2.5-flash-image-preview"
    dialect: Dialect = "auto"
    stream: bool = False
    price_per_image_usd: float = Field(default=0.039, ge=0)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_jobs_per_file: int = Field(default=50_000, gt=0)
    max_input_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    #: What the gateway client reads of an answer (before and after decompression), how many images
    #: it may hold, and each image's bytes, inline or downloaded.
    max_answer_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_images_per_answer: int = Field(default=10, gt=0)
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_receive_count: int = Field(default=5, gt=0)
    result_write_margin_seconds: float = Field(default=10.0, ge=0)
    #: gateway calls one job may make over all its deliveries (the ledger counts them)
    max_gateway_calls_per_job: int = Field(default=8, gt=0)
    #: the guards' shared state (circuit breaker, daily budget); empty: both off
    guards_table: str = ""
    #: hard cap on the estimated cost of a UTC day; 0: no cap
    daily_budget_usd: float = Field(default=0.0, ge=0)
    #: a job over the budget waits for the next UTC day, or fails at once (a local run)
    over_budget: OverBudget = "wait"
    #: calls a window needs before the breaker may open; 0: no breaker
    breaker_min_calls: int = Field(default=10, ge=0)
    breaker_failure_percent: float = Field(default=50.0, gt=0, le=100)
    breaker_open_seconds: float = Field(default=30.0, ge=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls.model_validate({field: env[name] for name, field in ENVIRONMENT.items() if env.get(name)})
