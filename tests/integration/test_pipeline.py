"""The whole flow in moto: S3 put -> notification -> ingest -> jobs queue -> generate -> outputs/."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nanobanana.storage import Storage
from nanobanana_cli.harness import Pipeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_prompt_file_becomes_images_and_results(pipeline: Pipeline) -> None:
    pipeline.put("prompts/cats.txt", "# three cats\na red cat\n\na blue cat\na green cat\n")
    pipeline.run()
    results = pipeline.results("cats")
    assert sorted(results) == ["00002", "00004", "00005"]
    for job_id, result in results.items():
        assert result["status"] == "succeeded", result
        assert result["images"] == [f"outputs/cats/{job_id}.png"]
        assert result["attempts"] == 1
        assert result["cost_usd"] == pytest.approx(0.039)
        assert result["source"]["key"] == "prompts/cats.txt"
        assert result["source"]["line"] == int(job_id)
        image = pipeline.s3.get_object(Bucket=pipeline.stack.bucket, Key=result["images"][0])["Body"].read()
        assert image.startswith(PNG_MAGIC)
    assert len(pipeline.gateway.requests) == 3
    assert pipeline.depth(pipeline.jobs_queue) == 0


def test_every_format_and_direct_messages(pipeline: Pipeline) -> None:
    batch_line = {
        "custom_id": "openai-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gemini-2.5-flash-image", "messages": [{"role": "user", "content": "a fox"}]},
    }
    pipeline.put(
        "prompts/deep/set/a.jsonl",
        json.dumps({"id": "j1", "prompt": "a hen"}) + "\n" + json.dumps(batch_line),
    )
    pipeline.put(
        "prompts/b.json", json.dumps({"defaults": {"aspect_ratio": "16:9"}, "jobs": [{"prompt": "a cow"}]})
    )
    pipeline.put("prompts/c.csv", "prompt,seed\na pig,4\n")
    pipeline.send_job({"id": "direct-1", "batch": "posters", "prompt": "a poster", "metadata": {"n": 1}})
    pipeline.send_job({"prompt": "no id"})
    pipeline.run()
    assert sorted(pipeline.results("deep/set/a")) == ["j1", "openai-1"]
    assert pipeline.results("b")["00001"]["status"] == "succeeded"
    assert pipeline.results("c")["00001"]["status"] == "succeeded"
    poster = pipeline.results("posters")["direct-1"]
    assert poster["metadata"] == {"n": 1}
    assert poster["source"]["queue"] == pipeline.jobs_queue.rsplit("/", 1)[-1]
    assert set(poster["source"]) == {"queue", "message_id"}
    (anonymous,) = pipeline.results("sqs").values()
    assert anonymous["id"] == anonymous["source"]["message_id"]
    sent = {json.dumps(r.get("messages")) for r in pipeline.gateway.requests}
    assert any("a fox" in s for s in sent)
    wide = next(r for r in pipeline.gateway.requests if "a cow" in json.dumps(r))
    assert "16:9" in json.dumps(wide)


def test_bad_lines_fail_alone_and_never_reach_the_gateway(pipeline: Pipeline) -> None:
    lines = [
        json.dumps({"prompt": "fine"}),
        "{oops",
        json.dumps({"id": "bad-ratio", "prompt": "x", "aspect_ratio": "2:9"}),
    ]
    pipeline.put("prompts/mixed.jsonl", "\n".join(lines))
    pipeline.run()
    results = pipeline.results("mixed")
    assert results["00001"]["status"] == "succeeded"
    assert results["00002"]["error"]["type"] == "invalid_job"
    assert results["bad-ratio"]["error"]["message"].startswith("aspect_ratio: ")
    assert results["bad-ratio"]["source"]["line"] == 3
    assert len(pipeline.gateway.requests) == 1


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("prompts/latin1.txt", "caf\xe9\n".encode("latin-1"), "UTF-8"),
        ("prompts/notes.pdf", b"%PDF-1.4", "extension"),
        ("prompts/empty.jsonl", b"\n\n", "no jobs"),
    ],
)
def test_an_unreadable_file_enqueues_nothing(pipeline: Pipeline, key: str, body: bytes, reason: str) -> None:
    pipeline.put(key, body)
    pipeline.run()
    batch = key.removeprefix("prompts/").rsplit(".", 1)[0]
    error = json.loads(
        pipeline.s3.get_object(Bucket=pipeline.stack.bucket, Key=f"outputs/{batch}/_ingest_error.json")[
            "Body"
        ].read()
    )
    assert reason in error["error"]["message"]
    assert error["source"] == {"bucket": pipeline.stack.bucket, "key": key}
    assert pipeline.gateway.requests == []
    assert pipeline.keys() == [f"outputs/{batch}/_ingest_error.json"]


def test_a_duplicate_s3_event_pays_nothing_twice(pipeline: Pipeline) -> None:
    pipeline.run()  # the S3 test event of the notification setup
    pipeline.put("prompts/dup.txt", "one\ntwo\n")
    (notification,) = pipeline.receive(pipeline.prompts_queue)
    pipeline.sqs.send_message(QueueUrl=pipeline.prompts_queue, MessageBody=notification["body"])
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.prompts_queue, ReceiptHandle=notification["receiptHandle"], VisibilityTimeout=0
    )
    pipeline.run()
    assert len(pipeline.gateway.requests) == 2
    assert sorted(pipeline.results("dup")) == ["00001", "00002"]


def test_a_new_upload_is_a_new_run(pipeline: Pipeline) -> None:
    pipeline.put("prompts/again.txt", "same prompt\n")
    pipeline.run()
    pipeline.put("prompts/again.txt", "same prompt\n")
    pipeline.run()
    assert pipeline.gateway.calls_for("same prompt") == 2


def test_a_redelivered_job_is_not_paid_twice(pipeline: Pipeline) -> None:
    pipeline.send_job({"id": "once", "prompt": "pay me once"})
    records = pipeline.receive(pipeline.jobs_queue)
    assert pipeline.invoke(pipeline.generate, records) == {"batchItemFailures": []}
    first = pipeline.result("sqs", "once")
    assert pipeline.invoke(pipeline.generate, records) == {"batchItemFailures": []}
    assert pipeline.gateway.calls_for("pay me once") == 1
    assert pipeline.result("sqs", "once") == first


def test_writes_to_outputs_and_inputs_trigger_no_ingest(pipeline: Pipeline) -> None:
    pipeline.run()
    pipeline.put("outputs/x/y.txt", "not a prompt\n")
    pipeline.put("inputs/z.txt", "not a prompt either\n")
    assert pipeline.depth(pipeline.prompts_queue) == 0


def test_keys_with_spaces_plus_and_non_ascii(pipeline: Pipeline) -> None:
    pipeline.put("prompts/my cats+dogs é.txt", "a cat and a dog\n")
    pipeline.run()
    result = pipeline.results("my cats+dogs é")["00001"]
    assert result["status"] == "succeeded"
    assert result["source"]["key"] == "prompts/my cats+dogs é.txt"


def test_a_batch_with_partial_failures(pipeline: Pipeline) -> None:
    """Success, a permanent failure and a transient one in one invocation: only the last is returned."""
    pipeline.send_job({"id": "ok", "prompt": "fine"})
    pipeline.send_job({"id": "gone", "prompt": "[[status:400]] bad request"})
    pipeline.send_job({"id": "later", "prompt": "[[status:429:300]] slow down"})
    records = pipeline.receive(pipeline.jobs_queue)
    by_id = {json.loads(r["body"])["id"]: r for r in records}
    response = pipeline.invoke(pipeline.generate, records, timeout=40)
    assert response == {"batchItemFailures": [{"itemIdentifier": by_id["later"]["messageId"]}]}
    assert pipeline.result("sqs", "ok")["status"] == "succeeded"
    gone = pipeline.result("sqs", "gone")
    assert gone["error"]["type"] == "client_error"
    assert gone["error"]["retryable"] is False
    assert pipeline.gateway.calls_for("slow down") == 1  # a 300 s wait is not slept through
    assert pipeline.keys("outputs/sqs/later") == []  # not final yet: no result record
    invisible = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.jobs_queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert invisible["ApproximateNumberOfMessagesNotVisible"] == "3"  # consumed two still in flight here


def test_the_last_delivery_writes_the_result_before_the_dead_letter_queue(pipeline: Pipeline) -> None:
    pipeline.send_job({"id": "doomed", "prompt": "[[status:503:300]] down"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    record["attributes"]["ApproximateReceiveCount"] = "5"
    response = pipeline.invoke(pipeline.generate, [record], timeout=40)
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    result = pipeline.result("sqs", "doomed")
    assert result["status"] == "failed"
    assert result["error"]["type"] == "server_error"
    assert result["error"]["retryable"] is True


def test_a_failed_output_write_is_retried_with_the_images_in_hand(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = Storage.put
    failures = {"left": 2}

    def flaky_put(self: Storage, key: str, body: bytes, content_type: str) -> None:
        if key.endswith(".png") and failures["left"]:
            failures["left"] -= 1
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "PutObject"
            )
        real_put(self, key, body, content_type)

    monkeypatch.setattr(Storage, "put", flaky_put)
    pipeline.send_job({"id": "kept", "prompt": "precious"})
    pipeline.run()
    assert failures["left"] == 0
    assert pipeline.result("sqs", "kept")["status"] == "succeeded"
    assert pipeline.keys("outputs/sqs/kept.png") == ["outputs/sqs/kept.png"]
    assert pipeline.gateway.calls_for("precious") == 1


def test_input_images_from_the_bucket(pipeline: Pipeline, tiny_png: bytes) -> None:
    pipeline.put("inputs/banana.png", tiny_png)
    pipeline.send_job({"id": "edit", "prompt": "make it blue", "images": ["inputs/banana.png"]})
    pipeline.send_job({"id": "missing", "prompt": "edit nothing", "images": ["inputs/none.png"]})
    pipeline.run()
    assert pipeline.result("sqs", "edit")["status"] == "succeeded"
    (request,) = [r for r in pipeline.gateway.requests if "make it blue" in json.dumps(r)]
    parts: list[dict[str, Any]] = request["messages"][-1]["content"]
    assert any(
        p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,")
        for p in parts
    )
    missing = pipeline.result("sqs", "missing")
    assert missing["error"]["type"] == "input_error"
    assert pipeline.gateway.calls_for("edit nothing") == 0


@pytest.mark.parametrize("receive_count", [1, 5])
def test_a_job_in_progress_elsewhere_is_deferred_not_paid(pipeline: Pipeline, receive_count: int) -> None:
    """Two deliveries at once (a redelivery while the first still runs): only the first calls the gateway,
    and the second waits for the first's claim to lapse, even on its last delivery (no record over it)."""
    from nanobanana.ledger import Claim, Ledger

    ledger = Ledger(pipeline.generate.environment["IDEMPOTENCY_TABLE"], 3600, key_prefix="generate")
    first = ledger.claim({"batch": "sqs", "id": "twice", "upload": "sqs"}, remaining_ms=300_000)
    assert first.state is Claim.NEW
    pipeline.send_job({"id": "twice", "prompt": "only once"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    response = pipeline.invoke(pipeline.generate, [record])
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert pipeline.gateway.calls_for("only once") == 0
    assert pipeline.keys("outputs/sqs/") == []


def test_a_secret_without_a_usable_key_fails_the_job_and_calls_nothing(pipeline: Pipeline) -> None:
    import boto3

    arn = pipeline.generate.environment["API_KEY_SECRET_ARN"]
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId=arn, SecretString='{"token": "sk-misfiled"}'
    )
    pipeline.send_job({"id": "nokey", "prompt": "anything"})
    pipeline.run()
    error = pipeline.result("sqs", "nokey")["error"]
    assert error["type"] == "authentication"
    assert "api_key" in error["message"]
    assert "sk-misfiled" not in error["message"]
    assert pipeline.gateway.requests == []


@pytest.mark.parametrize(("receive_count", "recorded"), [(1, False), (5, True)])
def test_a_pipeline_fault_on_the_last_delivery_still_leaves_a_record(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, receive_count: int, recorded: bool
) -> None:
    from botocore.exceptions import ClientError

    from nanobanana.ledger import Ledger

    def throttled(*_: Any, **__: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutItem")

    monkeypatch.setattr(Ledger, "claim", throttled)
    pipeline.send_job({"id": "unlucky", "prompt": "never reaches the gateway"})
    (record,) = pipeline.receive(pipeline.jobs_queue)
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    response = pipeline.invoke(pipeline.generate, [record])
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert pipeline.gateway.requests == []
    if recorded:
        error = pipeline.result("sqs", "unlucky")["error"]
        assert error["type"] == "pipeline_error"
        assert "PutItem failed: ThrottlingException" in error["message"]
        assert "logs for this job's id" in error["message"]
    else:
        assert pipeline.keys("outputs/sqs/") == []
