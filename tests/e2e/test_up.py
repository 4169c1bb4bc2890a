"""`nanobanana up` in a subprocess, driven by boto3 and by the stack commands, then stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from nanobanana_cli.cli import main
from tests.e2e import test_readme

BANNER = re.compile(r"^Offline stack (\S+) at (http://127\.0\.0\.1:\d+) ")
OUTPUT_LINE = re.compile(r"^  (\w+)\s+(\S+)$")
START_TIMEOUT_SECONDS = 60
RESULT_TIMEOUT_SECONDS = 60
#: What a user's shell may hold that must not reach the stack under test.
UNSET = ("NANOBANANA_API_BASE_URL", "NANOBANANA_API_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE")


@dataclass
class Service:
    process: subprocess.Popen[str]
    endpoint: str
    outputs: dict[str, str]
    banner: list[str]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )


def _environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    return env


def start(log: Path) -> Service:
    """`nanobanana up --port 0` as a user starts it, once it has printed its banner."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "nanobanana"), "up", "--port", "0", "--log", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    banner: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not banner or not banner[-1].startswith("Ctrl-C"):
        line = process.stdout.readline()
        assert line and time.monotonic() < deadline, f"up did not start: {banner} {process.stderr.read()}"
        banner.append(line.rstrip("\n"))
    endpoint = next(m.group(2) for line in banner if (m := BANNER.match(line)))
    outputs = {m.group(1): m.group(2) for line in banner if (m := OUTPUT_LINE.match(line))}
    return Service(process, endpoint, outputs, banner)


def interrupt(service: Service) -> tuple[str, str]:
    """Ctrl-C, as a terminal sends it; what the process printed after its banner."""
    service.process.send_signal(signal.SIGINT)
    out, err = service.process.communicate(timeout=60)
    return out, err


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = start(tmp_path_factory.mktemp("up") / "up.log")
    yield running
    _, err = interrupt(running)
    assert running.process.returncode == 0 and "Traceback" not in err, err


def _until(found: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + RESULT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _record(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
    return record


def _result_event(sqs: Any, queue_url: str, job_id: str) -> dict[str, Any] | None:
    """The results queue's event for one job, if it has come (other events are left for their tests)."""
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        event: dict[str, Any] = json.loads(message["Body"])
        if event.get("detail", {}).get("id") == job_id:
            return event
    return None


def test_banner_names_the_endpoint_bucket_queues_and_stand_in(service: Service) -> None:
    text = "\n".join(service.banner)
    assert {"BucketName", "JobsQueueUrl", "PromptFilesQueueUrl", "ResultsQueueUrl"} <= set(service.outputs)
    assert "stand-in gateway at http://127.0.0.1:" in text
    assert f"aws --endpoint-url {service.endpoint} s3 cp" in text
    assert all(
        url.startswith(service.endpoint) for k, url in service.outputs.items() if k.endswith("QueueUrl")
    )
    # named as CloudFormation names a deployed stack's, after the name it is registered under
    stack = next(m.group(1) for line in service.banner if (m := BANNER.match(line)))
    assert stack == "nanobanana-pipeline"  # samconfig.toml's
    assert service.outputs["JobsQueueUrl"].endswith(f"/{stack}-JobsQueue")


def test_any_boto3_client_puts_a_file_and_sends_a_job(service: Service) -> None:
    s3, sqs = service.client("s3"), service.client("sqs")
    bucket = service.outputs["BucketName"]
    s3.put_object(Bucket=bucket, Key="prompts/boto/hello.txt", Body=b"a banana boat\n")
    job = {"id": "direct-1", "prompt": "a banana sail", "batch": "boto-sqs"}
    sqs.send_message(QueueUrl=service.outputs["JobsQueueUrl"], MessageBody=json.dumps(job))
    from_file = _until(lambda: _record(s3, bucket, "outputs/boto/hello/00001.json"), "the file's record")
    from_queue = _until(lambda: _record(s3, bucket, "outputs/boto-sqs/direct-1.json"), "the message's record")
    assert from_file["status"] == from_queue["status"] == "succeeded"
    result = _until(lambda: _result_event(sqs, service.outputs["ResultsQueueUrl"], "direct-1"), "the event")
    assert result["detail-type"] == "Job Succeeded" and result["source"] == "nanobanana"
    assert result["detail"]["batch"] == "boto-sqs" and result["detail"]["images"] == from_queue["images"]
    image = s3.get_object(Bucket=bucket, Key=from_queue["images"][0])["Body"].read()
    assert image.startswith(b"\x89PNG")


def test_submit_watch_status_fetch_and_retry(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _environment().items():
        monkeypatch.setenv(name, value)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    at = ["--endpoint-url", service.endpoint]
    prompts = tmp_path / "mixed.txt"
    prompts.write_text("a fine cat\na cat [[status:400]]\n")

    assert main(["submit", str(prompts), "--batch", "cli/mixed", "--wait", *at]) == 1
    printed = capsys.readouterr().out
    assert "prompts/cli/mixed.txt" in printed and "cli/mixed: 1 succeeded, 1 failed" in printed

    assert main(["watch", "cli/mixed", *at]) == 1
    assert main(["status", *at]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^cli/mixed\s+\S+\s+completed\s+2 jobs: 1 succeeded, 1 failed", listed, re.M), listed
    assert main(["status", "cli/mixed", *at]) == 0
    assert "errors: client_error 1" in capsys.readouterr().out

    out = tmp_path / "fetched"
    assert main(["fetch", "cli/mixed", "--out", str(out), *at]) == 0
    assert "1 succeeded, 1 failed" in capsys.readouterr().out
    assert (out / "cli/mixed/00001.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "cli/mixed/00002.json").read_text())["status"] == "failed"
    assert 'id="cli/mixed/00001"' in (out / "index.html").read_text()

    # the run's _failed.jsonl, uploaded as a new run of the batch: only the failed job, which fails again
    assert main(["retry", "cli/mixed", "--wait", *at]) == 1
    printed = capsys.readouterr().out
    assert "1 failed jobs -> " in printed and "cli/mixed: 0 succeeded, 1 failed" in printed
    assert "prompts/cli/mixed.jsonl" in printed
    assert main(["status", "cli/mixed", *at]) == 0
    runs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cli/mixed")]
    assert len(runs) == 2 and "1 jobs: 0 succeeded, 1 failed" in runs[0]
    assert main(["retry", "no-such-batch", *at]) == 2
    assert "no batch 'no-such-batch'" in capsys.readouterr().err


def test_a_file_rejected_whole_ends_its_run_as_failed(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", service.endpoint)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing but a comment\n")
    assert main(["submit", str(empty), "--wait"]) == 1
    assert "empty: the file was rejected whole: the file holds no jobs" in capsys.readouterr().out
    assert main(["status", "empty"]) == 0
    assert "rejected: the file holds no jobs" in capsys.readouterr().out
    unsupported = tmp_path / "notes.md"
    unsupported.write_text("a cat\n")
    assert main(["submit", str(unsupported)]) == 2
    assert "notes.md: unsupported file extension '.md'" in capsys.readouterr().err


def test_batch_not_found_is_one_line(
    service: Service, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", service.endpoint)  # as a user would export it
    for command in (["watch", "no-such-batch"], ["fetch", "no-such-batch", "--out", "x"]):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert error.startswith("nanobanana: error: no batch 'no-such-batch'") and error.count("\n") == 1


def test_a_stack_name_up_did_not_register_is_not_found(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--stack", "someone-else", "--endpoint-url", service.endpoint]) == 2
    assert "stack someone-else not found at http://127.0.0.1:" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_endpoint_that_does_not_answer_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    assert main(["status", "--endpoint-url", endpoint]) == 2
    error = capsys.readouterr().err
    assert f"nothing answers at {endpoint}: start the offline stack with `nanobanana up`" in error


def test_up_on_a_busy_port_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["up", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_the_readmes_python_snippet_works_against_it(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's boto3 example for `up`, run as written but for the port."""
    section = test_readme.section("The offline stack as a service (`nanobanana up`)")
    (snippet,) = test_readme.blocks(section, "python")
    for name, value in _environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(test_readme.REPO)  # it uploads samplefiles/cats.txt
    exec(compile(snippet.text.replace("http://127.0.0.1:4566", service.endpoint), "README.md", "exec"), {})  # noqa: S102
    s3 = service.client("s3")
    bucket = service.outputs["BucketName"]
    record = _until(lambda: _record(s3, bucket, "outputs/adhoc/logo-1.json"), "the README job's record")
    assert record["status"] == "succeeded"
    assert _until(lambda: _record(s3, bucket, "outputs/cats/00002.json"), "the README file's record")


def _answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


def test_ctrl_c_while_jobs_run_stops_everything_cleanly(tmp_path: Path) -> None:
    running = start(tmp_path / "up.log")
    standin = re.search(r"stand-in gateway at (http://127\.0\.0\.1:\d+)", "\n".join(running.banner))
    assert standin is not None and _answers(running.endpoint) and _answers(standin.group(1))
    body = "".join(f"a cat number {n}\n" for n in range(20)).encode()
    running.client("s3").put_object(Bucket=running.outputs["BucketName"], Key="prompts/many.txt", Body=body)
    _until(
        lambda: (
            running.client("s3")
            .list_objects_v2(Bucket=running.outputs["BucketName"], Prefix="outputs/many/")
            .get("KeyCount")
        ),
        "the first result",
    )
    out, err = interrupt(running)
    assert running.process.returncode == 0, err
    assert "Traceback" not in err and "Stopped" in out, (out, err)
    assert not _answers(running.endpoint) and not _answers(standin.group(1))  # nothing left listening
