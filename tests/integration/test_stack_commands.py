"""The stack commands against a "deployed" stack: moto's CloudFormation holds the template's outputs.

No endpoint and no network: the commands find the stack by name (`--stack`, or samconfig.toml) as they
would in an AWS account, and the pipeline's own handlers run the jobs in between.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest

from nanobanana_cli.cli import main
from nanobanana_cli.harness import Pipeline
from nanobanana_cli.outputs import Target, connect, register
from nanobanana_cli.stack import REGION
from nanobanana_cli.template import load_template
from tests.e2e.test_up import UNSET

STACK = "my-banana-stack"


@pytest.fixture
def deployed(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The pipeline's outputs registered in moto's CloudFormation under STACK, as `sam deploy` leaves them."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    register(Target(STACK, boto3.Session(region_name=REGION), None), pipeline.stack.outputs)
    return pipeline


def test_the_registered_outputs_are_the_templates(deployed: Pipeline) -> None:
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    assert set(deployed.stack.outputs) == set(template["Outputs"])
    assert deployed.stack.outputs["BucketName"] == deployed.stack.bucket


def test_submit_watch_fetch_against_a_stack_found_by_name(
    deployed: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "cats.txt"
    prompts.write_text("a ginger cat\na black cat\n")
    assert main(["submit", str(prompts), "--stack", STACK]) == 0
    assert f"s3://{deployed.stack.bucket}/prompts/cats.txt" in capsys.readouterr().out
    assert main(["status", "cats", "--stack", STACK]) == 0
    assert "cats  waiting: the file has not been read yet" in capsys.readouterr().out

    deployed.run()
    assert main(["watch", "cats", "--stack", STACK]) == 0
    assert "cats: 2 succeeded, 0 failed" in capsys.readouterr().out
    assert main(["status", "--stack", STACK]) == 0
    assert re.search(r"^cats  \S+  completed    2 jobs: 2 succeeded, 0 failed", capsys.readouterr().out, re.M)
    assert main(["fetch", "cats", "--out", str(tmp_path / "out"), "--stack", STACK]) == 0
    assert sorted(p.name for p in (tmp_path / "out/cats").iterdir()) == [
        "00001.json",
        "00001.png",
        "00002.json",
        "00002.png",
        "_batch.json",
        "_failed.jsonl",
        "_results.jsonl",
    ]


def test_fetch_shows_a_job_whose_id_begins_with_an_underscore(
    deployed: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`_` begins the pipeline's own files, but a job id may begin with it too: its record is shown."""
    deployed.put(
        "prompts/under.jsonl", '{"id": "_early", "prompt": "a cat"}\n{"id": "late", "prompt": "a dog"}\n'
    )
    deployed.run()
    assert main(["fetch", "under", "--out", str(tmp_path / "out"), "--stack", STACK]) == 0
    assert "2 succeeded, 0 failed" in capsys.readouterr().out
    gallery = (tmp_path / "out/index.html").read_text(encoding="utf-8")
    assert "_early" in gallery and "late" in gallery


def test_the_stack_name_defaults_to_samconfig(
    deployed: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "samconfig.toml").write_text(
        f'version = 0.1\n[default.global.parameters]\nstack_name = "{STACK}"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert connect(None, None).name == STACK
    assert main(["status"]) == 0
    assert "no runs yet" in capsys.readouterr().out


def test_a_missing_stack_names_the_region_and_the_fix(
    deployed: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--stack", "not-deployed", "--region", "eu-west-3"]) == 2
    error = capsys.readouterr().err
    assert "stack not-deployed not found in eu-west-3: deploy it with `sam deploy --guided`" in error
    assert "--region REGION" in error


def test_a_stack_without_the_batches_table_says_to_update_it(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    older = {k: v for k, v in pipeline.stack.outputs.items() if k != "BatchesTableName"}
    register(Target(STACK, boto3.Session(region_name=REGION), None), older)
    assert main(["status", "--stack", STACK]) == 2
    assert f"stack {STACK} has no BatchesTableName output" in capsys.readouterr().err


def test_a_batch_that_was_never_submitted(deployed: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retry", "dogs", "--stack", STACK]) == 2
    assert "no batch 'dogs'" in capsys.readouterr().err


def test_empty_bucket_deletes_every_version_and_delete_marker(
    deployed: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = deployed.s3
    bucket = deployed.stack.bucket
    for body in ("one", "two"):
        deployed.put("outputs/x/a.json", json.dumps({"v": body}))
    s3.delete_object(Bucket=bucket, Key="outputs/x/a.json")  # a delete marker over two versions
    assert main(["empty-bucket", "--stack", STACK]) == 1
    assert "3 object versions and delete markers" in capsys.readouterr().out
    assert main(["empty-bucket", "--stack", STACK, "--yes"]) == 0
    assert f"sam delete --stack-name {STACK}" in capsys.readouterr().out
    left = s3.list_object_versions(Bucket=bucket)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    s3.delete_bucket(Bucket=bucket)  # what `sam delete` then can do


def test_no_credentials_is_one_line_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (*UNSET, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", REGION)
    assert main(["status", "--stack", STACK]) == 2
    assert "no usable AWS credentials: run `aws configure`" in capsys.readouterr().err


def test_no_region_is_one_line_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (*UNSET, "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    assert "no AWS region: set AWS_REGION" in capsys.readouterr().err
