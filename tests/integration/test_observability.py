"""What an operator sees, in the template's stack: the metrics of each outcome, the logs of a job, and
never the API key, whatever the gateway answers and wherever the pipeline writes."""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.metrics.provider import cold_start
from moto.sqs.models import sqs_backends

from nanobanana import metrics as names
from nanobanana.messages import ORIGIN_ATTRIBUTE, ORIGIN_INGEST
from nanobanana.observability import logger
from nanobanana_cli.harness import Pipeline, local_pipeline
from nanobanana_cli.stack import ACCOUNT_ID, REGION
from nanobanana_cli.standin import Fault, StandInGateway

SERVICE = "nanobanana"
COLD_START = "ColdStart"
EMITTED_NAMES = frozenset(names.ALL) | {COLD_START}
JOB_KEYS = ("job_id", "batch", "upload", "attempt")
#: Metrics only a job that reached the gateway emits.
UPSTREAM = (names.UPSTREAM_LATENCY, names.UPSTREAM_RETRIES, names.UPSTREAM_ERRORS)
#: Metrics only a succeeded job emits.
SUCCESS = (names.JOBS_SUCCEEDED, names.IMAGES_GENERATED, names.IMAGE_BYTES, names.ESTIMATED_COST_USD)


@dataclass(frozen=True)
class Emf:
    """One Embedded Metric Format document: its dimension values and the values of each metric."""

    dimensions: dict[str, str]
    values: dict[str, list[float]]


def emf(line: dict[str, Any]) -> Emf:
    """Read one EMF line, checking what every document must be: our namespace, the service dimension,
    names from the shared list, and ErrorType only on UpstreamErrors, alone in its document."""
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == names.DEFAULT_NAMESPACE
    (dimension_names,) = directive["Dimensions"]
    dimensions = {name: line[name] for name in dimension_names}
    assert dimensions["service"] == SERVICE
    metric_names = [metric["Name"] for metric in directive["Metrics"]]
    assert set(metric_names) <= EMITTED_NAMES, metric_names
    if names.ERROR_TYPE_DIMENSION in dimensions or names.UPSTREAM_ERRORS in metric_names:
        assert metric_names == [names.UPSTREAM_ERRORS]
        assert set(dimensions) == {"service", names.ERROR_TYPE_DIMENSION}
    values = {name: line[name] if isinstance(line[name], list) else [line[name]] for name in metric_names}
    return Emf(dimensions, values)


@dataclass(frozen=True)
class Output:
    """Everything the handlers wrote to stdout and stderr over part of a test."""

    text: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        """Every line, parsed: handlers write JSON lines only (logs and metrics), nothing else."""
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        assert all(isinstance(line, dict) for line in parsed)
        return parsed

    @property
    def documents(self) -> list[Emf]:
        return [emf(line) for line in self.lines if "_aws" in line]

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if "_aws" not in line]

    def values(self, name: str) -> list[float]:
        return [value for document in self.documents for value in document.values.get(name, [])]

    def upstream_errors(self) -> Counter[str]:
        """UpstreamErrors counted by their ErrorType."""
        counts: Counter[str] = Counter()
        for document in self.documents:
            for value in document.values.get(names.UPSTREAM_ERRORS, []):
                counts[document.dimensions[names.ERROR_TYPE_DIMENSION]] += int(value)
        return counts


class CurrentStdout:
    """A stream that writes to whatever sys.stdout is when it writes (pytest swaps it between phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[[], Output]:
    """Reads what the handlers wrote since the last read.

    Powertools' logger keeps the stdout it was created with (whatever pytest had installed then), so it
    is made to follow sys.stdout for the test, as the printed metrics do."""
    monkeypatch.setattr(logger.registered_handler, "stream", CurrentStdout())

    def read() -> Output:
        captured = capsys.readouterr()
        return Output(captured.out + captured.err)

    return read


def generate(
    pipeline: Pipeline, *jobs: dict[str, Any] | str, timeout: float = 20, last_delivery: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Send jobs straight to the jobs queue and run them in one invocation: (records, its response).

    `last_delivery` makes every record the queue's last try, so that even a retryable failure writes
    its result record."""
    for job in jobs:
        pipeline.send_job(job)
    records = pipeline.receive(pipeline.jobs_queue)
    assert len(records) == len(jobs)
    if last_delivery:
        for record in records:
            record["attributes"]["ApproximateReceiveCount"] = "1000"
    return records, pipeline.invoke(pipeline.generate, records, timeout=timeout)


def test_a_success_counts_its_image_latency_and_cost(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    _, response = generate(pipeline, {"id": "ok", "prompt": "a calm lake"})
    assert response == {"batchItemFailures": []}
    seen = output()
    assert seen.values(names.JOBS_SUCCEEDED) == [1]
    assert seen.values(names.IMAGES_GENERATED) == [1]
    (image_bytes,) = seen.values(names.IMAGE_BYTES)
    png = pipeline.s3.get_object(Bucket=pipeline.stack.bucket, Key="outputs/sqs/ok.png")["Body"].read()
    assert image_bytes == len(png)
    (latency,) = seen.values(names.UPSTREAM_LATENCY)
    assert latency > 0
    assert seen.values(names.UPSTREAM_RETRIES) == [0]
    assert seen.values(names.ESTIMATED_COST_USD) == [pytest.approx(0.039)]
    assert seen.upstream_errors() == {}
    assert seen.values(names.JOBS_FAILED) == seen.values(names.INVALID_JOBS) == []


def test_a_retry_then_success_counts_the_failed_attempt(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    _, response = generate(pipeline, {"id": "flaky", "prompt": "[[flaky:1:0]] a flaky lake"})
    assert response == {"batchItemFailures": []}
    seen = output()
    assert seen.values(names.UPSTREAM_RETRIES) == [1]
    assert seen.upstream_errors() == {"server_error": 1}
    assert seen.values(names.JOBS_SUCCEEDED) == [1]
    assert seen.values(names.JOBS_FAILED) == []


@pytest.mark.parametrize(
    ("prompt", "error_type", "final", "timeout"),
    [
        ("[[status:401]] a wrong key", "authentication", True, 20),
        ("[[quota]] an empty wallet", "insufficient_balance", True, 20),
        ("[[status:400]] a bad request", "client_error", True, 20),
        ("[[refuse]] a refused prompt", "content_filtered", True, 20),
        ("[[status:429:300]] too many", "rate_limited", False, 20),
        ("[[status:503:300]] a gateway down", "server_error", False, 20),
        # 15.5 s leave 5.5 s of gateway time after the result margin: the hang ends the attempt.
        ("[[hang]] a gateway asleep", "timeout", False, 15.5),
    ],
)
def test_each_failure_counts_its_error_type(
    pipeline: Pipeline,
    output: Callable[[], Output],
    prompt: str,
    error_type: str,
    final: bool,
    timeout: float,
) -> None:
    """A permanent failure is a failed job; a transient one is deferred, not (yet) a failed job."""
    (record,), response = generate(pipeline, {"id": "job", "prompt": prompt}, timeout=timeout)
    seen = output()
    assert seen.upstream_errors() == {error_type: 1}
    assert seen.values(names.UPSTREAM_RETRIES) == [0]
    assert len(seen.values(names.UPSTREAM_LATENCY)) == 1
    assert all(seen.values(name) == [] for name in SUCCESS)
    if final:
        assert response == {"batchItemFailures": []}
        assert seen.values(names.JOBS_FAILED) == [1]
        assert pipeline.result("sqs", "job")["error"]["type"] == error_type
    else:
        assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        assert seen.values(names.JOBS_FAILED) == []


def test_a_truncated_answer_counts_as_a_bad_response(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    generate(pipeline, {"id": "cut", "prompt": "[[truncate]] a cut answer"}, timeout=17)
    errors = output().upstream_errors()
    assert errors
    assert set(errors) == {"bad_response"}


def test_an_invalid_job_fails_without_reaching_the_gateway(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    _, response = generate(pipeline, {"id": "bad", "prompt": "x", "aspect_ratio": "2:9"})
    assert response == {"batchItemFailures": []}
    seen = output()
    assert seen.values(names.INVALID_JOBS) == [1]
    assert seen.values(names.JOBS_FAILED) == [1]
    assert all(seen.values(name) == [] for name in (*UPSTREAM, *SUCCESS))
    assert pipeline.gateway.requests == []


def test_ingest_counts_the_file_its_jobs_and_its_bad_lines(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    lines = [json.dumps({"prompt": "one"}), "{oops", json.dumps({"prompt": "two"}), json.dumps({"x": 1})]
    pipeline.put("prompts/mixed.jsonl", "\n".join(lines))
    records = pipeline.receive(pipeline.prompts_queue)
    assert pipeline.invoke(pipeline.ingest, records) == {"batchItemFailures": []}
    seen = output()
    assert seen.values(names.PROMPT_FILES_INGESTED) == [1]
    assert seen.values(names.JOBS_ENQUEUED) == [2]
    assert seen.values(names.INVALID_JOBS) == [2]
    assert all(seen.values(name) == [] for name in (names.JOBS_FAILED, *UPSTREAM, *SUCCESS))


def test_cold_start_is_counted_once_per_execution_environment(
    pipeline: Pipeline, output: Callable[[], Output], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Powertools keeps the flag per process: in Lambda, one process is one execution environment."""
    monkeypatch.setattr(cold_start, "is_cold_start", True)
    generate(pipeline, {"id": "first", "prompt": "first"})
    first = output()
    generate(pipeline, {"id": "second", "prompt": "second"})
    second = output()
    (cold,) = [document for document in first.documents if COLD_START in document.values]
    assert cold.values[COLD_START] == [1]
    assert cold.dimensions["function_name"] == pipeline.generate.name
    assert second.values(COLD_START) == []


def test_job_logs_are_json_and_name_their_job(pipeline: Pipeline, output: Callable[[], Output]) -> None:
    """Records of a batch run concurrently: each log line must still name the job it is about."""
    expected = {"ok": None, "refused": "content_filtered", "later": "rate_limited", "bad": "invalid_job"}
    generate(
        pipeline,
        {"id": "ok", "batch": "logs", "prompt": "fine"},
        {"id": "refused", "batch": "logs", "prompt": "[[refuse]] no"},
        {"id": "later", "batch": "logs", "prompt": "[[status:429:300]] wait"},
        {"id": "bad", "batch": "logs", "prompt": "x", "seed": "not a number"},
    )
    logs = output().logs
    assert logs
    by_job: dict[str, list[dict[str, Any]]] = {}
    for line in logs:
        assert isinstance(line["message"], str)
        assert all(key in line for key in JOB_KEYS), line
        assert (line["batch"], line["upload"], line["attempt"]) == ("logs", "sqs", 1)
        assert line["function_request_id"]
        by_job.setdefault(line["job_id"], []).append(line)
    assert set(by_job) == set(expected)
    for job_id, error_type in expected.items():
        (last,) = by_job[job_id][-1:]
        if error_type is None:
            assert last["message"] == "job succeeded"
            assert last["images"] == [f"outputs/logs/{job_id}.png"]
        else:
            assert last["error"]["type"] == error_type


CANARY = "nbk-canary-5f1d2e9a7c3b4086"
"""An API key no generic pattern recognises: only redaction by its value can keep it out."""


@pytest.fixture
def canary_pipeline() -> Iterator[Pipeline]:
    """The stack with CANARY as its key (in the secret, and required by the stand-in gateway)."""
    with (
        StandInGateway(api_key=CANARY) as standin,
        local_pipeline(standin.base_url, CANARY, standin) as stack,
    ):
        yield stack


def stored_text(pipeline: Pipeline) -> str:
    """Everything the stack holds that a user or an operator can read: every object of every bucket, every
    message of every queue in any state (dead-letter queues included), every item of every table."""
    s3 = pipeline.s3
    texts = [
        s3.get_object(Bucket=bucket["Name"], Key=key)["Body"].read().decode("utf-8", "replace")
        for bucket in s3.list_buckets()["Buckets"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
        for key in (item["Key"] for item in page.get("Contents", []))
    ]
    queues = sqs_backends[ACCOUNT_ID][REGION].queues.values()
    texts += [message.body for queue in queues for message in queue._messages]
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    texts += [
        json.dumps(item)
        for table in dynamodb.list_tables()["TableNames"]
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    ]
    return "\n".join(texts)


def answer(text: str, finish_reason: str, image: str | None = None) -> dict[str, Any]:
    """One choice of a chat completion: the model's words, and an image if given."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if image is not None:
        message["images"] = [{"type": "image_url", "image_url": {"url": image}}]
    return {"index": 0, "message": message, "finish_reason": finish_reason}


#: Gateway errors that quote the key back, as some do (and one refusal that names it).
ECHOING = (
    Fault(status=401, body={"error": {"message": f"invalid api key {CANARY}"}}),
    Fault(status=403, body={"error": {"message": f"key {CANARY} may not use this model"}}),
    Fault(status=402, body={"error": {"message": f"no credit left on {CANARY}"}}),
    Fault(status=429, retry_after="300", body={"error": {"message": f"{CANARY} is over its limit"}}),
    Fault(status=500, retry_after="300", body=f"proxy error; sent Authorization: Bearer {CANARY}"),
    Fault(status=400, body={"error": {"message": f"bad request from key={CANARY}"}}),
    Fault(status=200, body={"choices": [answer(f"I will not draw that for {CANARY}", "content_filter")]}),
)


def echo(pipeline: Pipeline, *faults: Fault) -> list[dict[str, Any]]:
    """One job per fault, each on its last delivery (so that every one writes its result): the results."""
    for n, fault in enumerate(faults):
        pipeline.gateway.script(fault)
        generate(pipeline, {"id": f"echo-{n}", "batch": "echo", "prompt": "echo"}, last_delivery=True)
    return [pipeline.result("echo", f"echo-{n}") for n in range(len(faults))]


def assert_no_key(pipeline: Pipeline, output: Callable[[], Output]) -> None:
    """Neither the key nor its first characters in the handlers' output or anything the stack stores."""
    written = output().text
    assert written
    everything = written + stored_text(pipeline)
    assert CANARY not in everything
    assert CANARY[:12] not in everything


def test_the_api_key_appears_nowhere(canary_pipeline: Pipeline, output: Callable[[], Output]) -> None:
    """Every failure path, with the key echoed where a gateway may echo it: none of it kept or logged."""
    pipeline = canary_pipeline
    for result in echo(pipeline, *ECHOING):
        assert "[redacted]" in result["error"]["message"]  # the key came back, and was taken out
    pipeline.put("prompts/latin1.txt", "caf\xe9\n".encode("latin-1"))
    assert pipeline.invoke(pipeline.ingest, pipeline.receive(pipeline.prompts_queue)) == {
        "batchItemFailures": []
    }
    generate(
        pipeline,
        {"id": "no-key", "prompt": "[[status:401]] plain 401"},
        {"id": "quota", "prompt": "[[quota]] empty"},
        {"id": "reset", "prompt": "[[reset]] cut"},
        {"id": "truncate", "prompt": "[[truncate]] half"},
        {"id": "refuse", "prompt": "[[refuse]] no"},
        {"id": "hang", "prompt": "[[hang]] asleep"},
        {"id": "invalid", "prompt": "x", "unknown": 1},
        "not json at all",
        timeout=16,
        last_delivery=True,
    )
    assert len(pipeline.results("sqs")) == 8
    assert pipeline.keys("outputs/latin1/") == ["outputs/latin1/_ingest_error.json"]
    assert_no_key(pipeline, output)


def test_the_api_key_in_the_models_words_is_not_kept(
    canary_pipeline: Pipeline, output: Callable[[], Output], tiny_png: bytes
) -> None:
    image = f"data:image/png;base64,{base64.b64encode(tiny_png).decode()}"
    (result,) = echo(
        canary_pipeline, Fault(status=200, body={"choices": [answer(f"Done, {CANARY}", "stop", image)]})
    )
    assert result["status"] == "succeeded"
    assert_no_key(canary_pipeline, output)


def test_a_pipeline_failure_is_logged_with_the_job_counted_and_named_on_the_last_delivery(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    """A missing secret is the pipeline's failure, not the gateway's: seen on the first delivery already."""
    arn = pipeline.generate.environment["API_KEY_SECRET_ARN"]
    boto3.client("secretsmanager", region_name=REGION).delete_secret(
        SecretId=arn, ForceDeleteWithoutRecovery=True
    )
    records, response = generate(pipeline, {"id": "nosecret", "prompt": "anything"})
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    seen = output()
    (logged,) = [line for line in seen.logs if line["message"] == "the pipeline failed on this job"]
    assert logged["job_id"] == "nosecret"
    assert "ResourceNotFoundException" in logged["exception"]
    assert seen.values(names.PIPELINE_ERRORS) == [1.0]
    assert pipeline.keys("outputs/sqs/") == []  # deliveries are left: not final yet

    records[0]["attributes"]["ApproximateReceiveCount"] = "5"
    assert pipeline.invoke(pipeline.generate, records) == response
    error = pipeline.result("sqs", "nosecret")["error"]
    assert error["type"] == "pipeline_error"
    assert "GetSecretValue failed: ResourceNotFoundException" in error["message"]
    assert pipeline.gateway is not None and pipeline.gateway.requests == []


def test_a_message_that_cannot_be_read_fails_alone_as_an_invalid_job(
    pipeline: Pipeline, output: Callable[[], Output]
) -> None:
    pipeline.sqs.send_message(
        QueueUrl=pipeline.jobs_queue,
        MessageBody='{"job": {"prompt": "x"}}',  # says it comes from ingest, but has no batch or upload
        MessageAttributes={ORIGIN_ATTRIBUTE: {"DataType": "String", "StringValue": ORIGIN_INGEST}},
    )
    pipeline.send_job({"id": "fine", "prompt": "fine"})
    records = pipeline.receive(pipeline.jobs_queue)
    assert pipeline.invoke(pipeline.generate, records) == {"batchItemFailures": []}
    (broken,) = [r for r in records if "fine" not in r["body"]]
    result = pipeline.result("sqs", broken["messageId"])
    assert result["error"]["type"] == "invalid_job"
    assert "the message cannot be read (ValidationError" in result["error"]["message"]
    assert pipeline.result("sqs", "fine")["status"] == "succeeded"
    seen = output()
    assert [line["message_id"] for line in seen.logs if line["message"] == "a message could not be read"] == [
        broken["messageId"]
    ]
    assert seen.values(names.PIPELINE_ERRORS) == [1.0]
