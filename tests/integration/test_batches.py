"""A run from upload to `Batch Completed`, in moto: progress, completion files, events, duplicates, races."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import boto3
import pytest

from nanobanana.batches import BATCH_FILE, FAILED_FILE, RESULTS_FILE, BatchTable, RunKey, read_status
from nanobanana.storage import output_key
from nanobanana_cli.harness import Pipeline
from nanobanana_cli.stack import REGION, STACK_NAME

OPENAI_LINE = {
    "custom_id": "b",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {
        "model": "gemini-2.5-flash-image",
        "messages": [{"role": "user", "content": "[[refuse]] a dog"}],
    },
}
LINES = [
    {"id": "a", "prompt": "a cat", "aspect_ratio": "16:9"},
    OPENAI_LINE,  # refused: content_filtered, for good
    {"id": "c", "prompt": "a cow", "aspect_ratio": "2:9"},  # invalid: never sent
    {"id": "d", "prompt": "[[status:400]] a bad request", "seed": 7},  # client_error, for good
    {"id": "e", "prompt": "a fish"},
]


def jsonl(lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def table(pipeline: Pipeline) -> BatchTable:
    return BatchTable(
        pipeline.generate.environment["BATCHES_TABLE"], boto3.client("dynamodb", region_name=REGION)
    )


def completion_versions(pipeline: Pipeline, batch: str) -> dict[str, int]:
    return {
        name: pipeline.versions(output_key(batch, name)) for name in (BATCH_FILE, RESULTS_FILE, FAILED_FILE)
    }


def ingest_only(pipeline: Pipeline, key: str, body: str) -> list[dict[str, Any]]:
    """Upload a file, run Ingest on its notification, and take its job messages off the queue."""
    pipeline.run()  # the notification's test event
    pipeline.put(key, body)
    assert pipeline.invoke(pipeline.ingest, pipeline.receive(pipeline.prompts_queue)) == {
        "batchItemFailures": []
    }
    return pipeline.receive(pipeline.jobs_queue)


def test_a_run_ends_with_its_files_its_events_and_a_retry_file_that_works(pipeline: Pipeline) -> None:
    pipeline.put("prompts/run.jsonl", jsonl(LINES))
    pipeline.run()

    summary, results, failed = pipeline.completion("run")
    version = pipeline.s3.head_object(Bucket=pipeline.stack.bucket, Key="prompts/run.jsonl")["VersionId"]
    assert {k: v for k, v in summary.items() if k not in ("created_at", "completed_at")} == {
        "batch": "run",
        "upload": version,
        "source": {"bucket": pipeline.stack.bucket, "key": "prompts/run.jsonl"},
        "status": "completed",
        "total": 5,
        "succeeded": 2,
        "failed": 3,
        "images": 2,
        "cost_usd": pytest.approx(0.078),
        "errors": {"client_error": 1, "content_filtered": 1, "invalid_job": 1},
    }
    assert summary["created_at"] <= summary["completed_at"]
    assert [r["id"] for r in results] == ["a", "b", "c", "d", "e"]
    assert results == [pipeline.result("run", job_id) for job_id in "abcde"]
    assert failed == [OPENAI_LINE, {"id": "d", "prompt": "[[status:400]] a bad request", "seed": 7}]
    assert completion_versions(pipeline, "run") == {BATCH_FILE: 1, RESULTS_FILE: 1, FAILED_FILE: 1}

    a = results[0]
    assert a["created_at"] <= a["finished_at"]
    assert a["request"] == {
        "model": "gemini-2.5-flash-image-preview",
        "dialect": "newapi",
        "aspect_ratio": "16:9",
        "image_size": None,
        "temperature": None,
        "max_tokens": None,
        "seed": None,
        "stream": False,
    }
    assert results[1]["request"]["model"] == "gemini-2.5-flash-image"
    assert results[2]["request"] is None  # invalid: nothing was sent

    events = pipeline.events()
    kinds = Counter(event["detail-type"] for event in events)
    assert kinds == {"Job Succeeded": 2, "Job Failed": 3, "Batch Completed": 1}
    assert {event["source"] for event in events} == {"nanobanana"}
    context = {"bucket": pipeline.stack.bucket, "stack": STACK_NAME}
    jobs = {
        event["detail"]["id"]: event["detail"]
        for event in events
        if event["detail-type"] != "Batch Completed"
    }
    assert jobs == {r["id"]: {**r, **context} for r in results}
    (completed,) = [event["detail"] for event in events if event["detail-type"] == "Batch Completed"]
    assert completed == {**summary, **context}
    assert events[-1]["detail-type"] == "Batch Completed"  # after every job's event

    (run,) = table(pipeline).read_status("run")
    assert run.to_json() == summary

    calls_before = len(pipeline.gateway.requests)
    pipeline.put("prompts/retry.jsonl", "".join(json.dumps(line) + "\n" for line in failed))
    pipeline.run()
    assert len(pipeline.gateway.requests) - calls_before == 2
    assert sorted(pipeline.results("retry")) == ["b", "d"]
    retry, _, _ = pipeline.completion("retry")
    assert (retry["total"], retry["failed"]) == (2, 2)


def test_progress_is_readable_while_the_run_is_in_progress(pipeline: Pipeline) -> None:
    records = ingest_only(pipeline, "prompts/slow.txt", "one\ntwo\nthree\n")
    assert pipeline.invoke(pipeline.generate, records[:1]) == {"batchItemFailures": []}
    runs = table(pipeline)
    (run,) = read_status(runs.client, runs.table)  # what `nanobanana status` reads
    assert (run.batch, run.status, run.total, run.succeeded, run.done) == ("slow", "in_progress", 3, 1, 1)
    assert pipeline.keys("outputs/slow/_") == []


def test_a_redelivered_last_job_counts_once_and_writes_the_files_once(pipeline: Pipeline) -> None:
    records = ingest_only(pipeline, "prompts/dup.txt", "one\ntwo\n")
    assert pipeline.invoke(pipeline.generate, records) == {"batchItemFailures": []}
    assert pipeline.invoke(pipeline.generate, records[1:]) == {"batchItemFailures": []}  # redelivered
    summary, results, _ = pipeline.completion("dup")
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (2, 2, 0)
    assert len(results) == 2
    assert completion_versions(pipeline, "dup") == {BATCH_FILE: 1, RESULTS_FILE: 1, FAILED_FILE: 1}
    assert Counter(event["detail-type"] for event in pipeline.events()) == {
        "Job Succeeded": 2,
        "Batch Completed": 1,
    }


def test_two_last_jobs_ending_together_complete_the_run_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both invocations end their job, then count at the same moment (DynamoDB serializes the two
    atomic updates, as the lock does here): exactly one of them sees the total and writes the files."""
    records = ingest_only(pipeline, "prompts/race.txt", "one\ntwo\n")
    both_ended = threading.Barrier(2, timeout=60)
    serialized = threading.Lock()
    real_count = BatchTable.count

    def count_together(self: BatchTable, key: RunKey, record: dict[str, Any]) -> Any:
        both_ended.wait()
        with serialized:
            return real_count(self, key, record)

    monkeypatch.setattr(BatchTable, "count", count_together)
    answers: list[Any] = []
    threads = [
        threading.Thread(target=lambda r=record: answers.append(pipeline.invoke(pipeline.generate, [r])))
        for record in records
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [{"batchItemFailures": []}] * 2
    summary, results, _ = pipeline.completion("race")
    assert (summary["succeeded"], len(results)) == (2, 2)
    assert completion_versions(pipeline, "race") == {BATCH_FILE: 1, RESULTS_FILE: 1, FAILED_FILE: 1}


def lapse_claim(pipeline: Pipeline, key: RunKey) -> None:
    """Time passes: a completion claim runs out (as a crashed claimer's does)."""
    runs = table(pipeline)
    runs.client.update_item(
        TableName=runs.table,
        Key=key.item_key(),
        UpdateExpression="SET completing_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )


def test_a_completion_held_elsewhere_waits_and_is_written_once(pipeline: Pipeline) -> None:
    first, last = ingest_only(pipeline, "prompts/held.txt", "one\ntwo\n")
    assert pipeline.invoke(pipeline.generate, [first]) == {"batchItemFailures": []}
    (run,) = table(pipeline).read_status("held")
    assert table(pipeline).claim_completion(run.key, 600)  # another invocation is completing the run
    response = pipeline.invoke(pipeline.generate, [last])
    assert response == {"batchItemFailures": [{"itemIdentifier": last["messageId"]}]}  # comes back later
    assert pipeline.result("held", "00002")["status"] == "succeeded"
    assert pipeline.keys("outputs/held/_") == []
    lapse_claim(pipeline, run.key)  # ... and crashed before it wrote anything
    assert pipeline.invoke(pipeline.generate, [last]) == {"batchItemFailures": []}
    summary, results, _ = pipeline.completion("held")
    assert (summary["succeeded"], len(results)) == (2, 2)
    assert completion_versions(pipeline, "held") == {BATCH_FILE: 1, RESULTS_FILE: 1, FAILED_FILE: 1}
    assert table(pipeline).claim_completion(run.key, 600) is False  # completed: nothing left to claim
    assert pipeline.gateway.calls_for("two") == 1


def test_a_failed_completion_is_finished_by_the_redelivery(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanobanana.batches import Completion

    (record,) = ingest_only(pipeline, "prompts/crash.txt", "one\n")
    real_write = Completion._write_files

    def crash(self: Completion, status: Any) -> None:
        raise RuntimeError("S3 went away")

    monkeypatch.setattr(Completion, "_write_files", crash)
    response = pipeline.invoke(pipeline.generate, [record])
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert pipeline.result("crash", "00001")["status"] == "succeeded"  # the job has ended all the same
    assert pipeline.keys("outputs/crash/_") == []

    monkeypatch.setattr(Completion, "_write_files", real_write)
    (run,) = table(pipeline).read_status("crash")
    lapse_claim(pipeline, run.key)
    record["attributes"]["ApproximateReceiveCount"] = "5"  # even on its last delivery
    assert pipeline.invoke(pipeline.generate, [record]) == {"batchItemFailures": []}
    summary, results, _ = pipeline.completion("crash")
    assert (summary["succeeded"], len(results)) == (1, 1)
    assert pipeline.result("crash", "00001")["status"] == "succeeded"
    assert pipeline.gateway.calls_for("one") == 1


def test_a_redriven_dead_letter_counts_once(pipeline: Pipeline) -> None:
    records = ingest_only(pipeline, "prompts/dead.txt", "fine\n[[status:503:300]] down\n")
    ok, doomed = records
    assert pipeline.invoke(pipeline.generate, [ok]) == {"batchItemFailures": []}
    doomed["attributes"]["ApproximateReceiveCount"] = "5"  # its last delivery: to the dead-letter queue
    response = pipeline.invoke(pipeline.generate, [doomed], timeout=40)
    assert response == {"batchItemFailures": [{"itemIdentifier": doomed["messageId"]}]}
    summary, _, failed = pipeline.completion("dead")
    assert (summary["succeeded"], summary["failed"], summary["errors"]) == (1, 1, {"server_error": 1})
    assert failed == [{"id": "00002", "prompt": "[[status:503:300]] down"}]
    calls = pipeline.gateway.calls_for("down")

    doomed["attributes"]["ApproximateReceiveCount"] = "1"  # redriven: a new first delivery
    assert pipeline.invoke(pipeline.generate, [doomed], timeout=40) == {"batchItemFailures": []}
    assert pipeline.gateway.calls_for("down") == calls
    (run,) = table(pipeline).read_status("dead")
    assert (run.succeeded, run.failed, run.status) == (1, 1, "completed")
    assert completion_versions(pipeline, "dead") == {BATCH_FILE: 1, RESULTS_FILE: 1, FAILED_FILE: 1}


def test_a_file_of_invalid_jobs_is_completed_by_ingest(pipeline: Pipeline) -> None:
    pipeline.put("prompts/bad.jsonl", '{"prompt": "x", "size": 1}\n{oops\n')
    pipeline.run()
    summary, results, failed = pipeline.completion("bad")
    assert (summary["total"], summary["failed"], summary["errors"]) == (2, 2, {"invalid_job": 2})
    assert [r["id"] for r in results] == ["00001", "00002"]
    assert failed == []  # an invalid job is fixed by hand, not sent again as it was
    assert pipeline.gateway.requests == []
    assert Counter(e["detail-type"] for e in pipeline.events()) == {"Job Failed": 2, "Batch Completed": 1}


def test_sqs_jobs_get_events_and_no_run(pipeline: Pipeline) -> None:
    pipeline.send_job({"id": "direct", "batch": "posters", "prompt": "a poster", "metadata": {"order": 7}})
    pipeline.run()
    (event,) = pipeline.events()
    assert event["detail-type"] == "Job Succeeded"
    assert event["detail"]["id"] == "direct"
    assert event["detail"]["metadata"] == {"order": 7}
    assert table(pipeline).read_status() == []
    assert pipeline.keys("outputs/posters/_") == []
