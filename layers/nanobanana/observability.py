"""Logging, tracing and metrics: created once per process and shared by both functions."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit

from nanobanana import metrics as names
from nanobanana.errors import ErrorType

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "nanobanana")
#: Never left unset: a process that imports this module before the function's environment is in place
#: (tests, the local runner) would otherwise have no namespace, and every flush of metrics would raise.
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or names.DEFAULT_NAMESPACE

logger = Logger(service=SERVICE)
#: botocore only: X-Ray's httpx patch keeps its subsegments in a context that the concurrent gateway
#: calls of one batch share, and ends them out of order (AlreadyEndedException after a paid answer,
#: its pooled connection never returned); patching everything would also import httpx into Ingest.
tracer = Tracer(service=SERVICE, patch_modules=["botocore"])
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    """Add to a metric of this invocation (high resolution: a batch run is watched by the minute)."""
    metrics.add_metric(name=name, unit=unit, value=value, resolution=MetricResolution.High)


def upstream_error(error_type: ErrorType) -> None:
    """UpstreamErrors by ErrorType: a metric of its own, since its dimension differs from the rest."""
    with single_metric(
        name=names.UPSTREAM_ERRORS,
        unit=MetricUnit.Count,
        value=1,
        resolution=MetricResolution.High,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, **metrics.default_dimensions},
    ) as metric:
        metric.add_dimension(names.ERROR_TYPE_DIMENSION, str(error_type))
