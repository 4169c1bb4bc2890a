"""A 100,000-line prompt file: streamed, checked whole, then sent ten jobs a call, in file order."""

from __future__ import annotations

import json

import pytest

from nanobanana_cli.harness import Pipeline

LINES = 100_000


@pytest.mark.slow
def test_a_100000_line_file(pipeline: Pipeline) -> None:
    pipeline.run()  # the notification's test event
    pipeline.put("prompts/big.txt", "".join(f"a banana, variation {n}\n" for n in range(1, LINES + 1)))
    (record,) = pipeline.receive(pipeline.prompts_queue, 1)

    # over the default limit of 50,000 jobs: rejected whole, nothing enqueued
    with pipeline.captured_sends() as calls:
        assert pipeline.invoke(pipeline.ingest, [record]) == {"batchItemFailures": []}
    assert calls == {}
    assert pipeline.keys() == ["outputs/big/_ingest_error.json"]
    assert "more than 50000 jobs" in pipeline.result("big", "_ingest_error")["error"]["message"]

    # with the limit raised, a new upload of the file goes through
    pipeline.ingest.environment["MAX_JOBS_PER_FILE"] = str(LINES)
    pipeline.put("prompts/big.txt", "".join(f"a banana, variation {n}\n" for n in range(1, LINES + 1)))
    (record,) = pipeline.receive(pipeline.prompts_queue, 1)
    with pipeline.captured_sends() as calls:
        assert pipeline.invoke(pipeline.ingest, [record]) == {"batchItemFailures": []}
    assert calls == {"SendMessageBatch": LINES // 10}
    envelopes = [json.loads(body) for body in pipeline.sent]
    assert [e["job"]["id"] for e in envelopes] == [f"{n:05d}" for n in range(1, LINES + 1)]
    assert envelopes[-1]["job"]["prompt"] == f"a banana, variation {LINES}"
    assert {e["batch"] for e in envelopes} == {"big"}
    assert len({e["upload"] for e in envelopes}) == 1
