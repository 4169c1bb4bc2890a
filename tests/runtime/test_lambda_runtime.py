"""What `sam build` ships, run as AWS Lambda runs it: the layer and handlers built by their makefiles,
CPython 3.13 with nothing but boto3 and the layer, Lambda's variables, the template's environment and
tracing (every invocation sampled, segments sent to a UDP socket read here), warm environments reused
across invocations, moto as a server and the stand-in gateway.

A prompt file goes through Ingest, then its jobs through Generate in batches of 10 run concurrently:
every job must succeed with exactly one paid call, and the trace segments must arrive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from nanobanana_cli.lambdaenv import Cloud, Runtime, build, lambda_cloud, runtime_python
from nanobanana_cli.standin import StandInGateway

API_KEY = "sk-runtime-test-0123456789"
JOBS = 30
PYTHON = runtime_python()

pytestmark = pytest.mark.skipif(
    PYTHON is None,
    reason="no CPython 3.13 (pyenv's ~/.pyenv/versions/3.13*/bin/python or python3.13 on PATH): "
    "the Lambda runtime test cannot run here",
)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    assert PYTHON is not None
    return build(tmp_path_factory.mktemp("sam-build"), PYTHON)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "handlers.log"


@pytest.fixture
def cloud(runtime: Runtime, log: Path) -> Iterator[Cloud]:
    with (
        log.open("a", encoding="utf-8") as output,
        StandInGateway(api_key=API_KEY) as gateway,
        lambda_cloud(runtime, gateway, API_KEY, output) as cloud,
    ):
        yield cloud


def test_what_sam_build_ships_runs_as_lambda_runs_it(cloud: Cloud, log: Path) -> None:
    ingest = cloud.environment("IngestFunction")
    generate = cloud.environment("GenerateFunction")
    try:
        assert ingest.init["httpx_imported"] is False, "Ingest never calls the gateway: no httpx"
        prompts = "".join(f"a banana in style #{n}#\n" for n in range(JOBS))
        boto3.client("s3").put_object(Bucket=cloud.stack.bucket, Key="prompts/runtime.txt", Body=prompts)
        for notification in cloud.receive("IngestFunction"):  # S3's test event, then the file's
            assert ingest.invoke({"Records": [notification]}) == {"batchItemFailures": []}, log.read_text()
            cloud.delete("IngestFunction", [notification])

        for _ in range(JOBS // 10):  # one warm Generate environment, batch after batch
            records = cloud.receive("GenerateFunction")
            assert len(records) == 10
            assert generate.invoke({"Records": records}) == {"batchItemFailures": []}, log.read_text()
            cloud.delete("GenerateFunction", records)
    finally:
        ingest.close()
        generate.close()

    s3 = boto3.client("s3")
    for n in range(JOBS):
        key = f"outputs/runtime/{n + 1:05d}.json"
        result = json.loads(s3.get_object(Bucket=cloud.stack.bucket, Key=key)["Body"].read())
        assert result["status"] == "succeeded", result
        assert result["attempts"] == 1
        assert cloud.gateway.calls_for(f"#{n}#") == 1
    assert len(cloud.gateway.requests) == JOBS

    documents = cloud.daemon.documents
    names = {document.get("name") for document in documents}
    assert {"## lambda_handler", "s3", "dynamodb", "sqs", "secretsmanager"} <= names, names
    # the gateway's calls are not traced through X-Ray's httpx patch (unsafe under concurrency)
    remote = [d for d in documents if d.get("namespace") == "remote" and "127.0.0.1" in str(d.get("name"))]
    assert remote == []
