"""Ingest over hostile files, as deployed: a bad line never fails the file, and the Generate role's
limits hold locally too."""

from __future__ import annotations

from nanobanana_cli.harness import Pipeline


def test_hostile_lines_fail_alone_and_the_file_goes_on(pipeline: Pipeline) -> None:
    pipeline.run()  # the notification's test event
    lines = [
        '{"id": "first", "prompt": "a banana"}',
        "[" * 10_000 + "]" * 10_000,
        '{"prompt": "x", "seed": ' + "9" * 5000 + "}",
        '{"prompt": "x", "metadata": ' + '{"a":' * 256 + "1" + "}" * 256 + "}",
        '{"id": "last", "prompt": "another banana"}',
    ]
    pipeline.put("prompts/hostile.jsonl", "\n".join(lines) + "\n")
    (record,) = pipeline.receive(pipeline.prompts_queue, 1)
    with pipeline.captured_sends() as calls:
        assert pipeline.invoke(pipeline.ingest, [record]) == {"batchItemFailures": []}
    assert calls == {"SendMessageBatch": 1}
    assert ['"first"' in body or '"last"' in body for body in pipeline.sent] == [True, True]
    failed = pipeline.results("hostile")
    assert sorted(failed) == ["00002", "00003", "00004"]
    assert {r["error"]["type"] for r in failed.values()} == {"invalid_job"}
    assert "seed: a number of 5000 digits" in failed["00003"]["error"]["message"]
    assert "metadata: nested more than 32 levels deep" in failed["00004"]["error"]["message"]


def test_a_json_file_over_its_limit_gets_an_ingest_error(pipeline: Pipeline) -> None:
    pipeline.run()
    pipeline.ingest.environment["MAX_FILE_BYTES"] = "1000"
    pipeline.put("prompts/big.json", "[" + ", ".join(['{"prompt": "a banana"}'] * 100) + "]")
    pipeline.run()
    assert pipeline.keys() == ["outputs/big/_ingest_error.json"]
    assert "over the limit of 1000" in pipeline.result("big", "_ingest_error")["error"]["message"]


def test_input_images_are_read_from_inputs_only(pipeline: Pipeline, tiny_png: bytes) -> None:
    """The Generate role may read inputs/ alone: a key elsewhere in the bucket fails locally as deployed."""
    pipeline.put("prompts/secret.png", tiny_png)
    pipeline.put("outputs/other/00001.png", tiny_png)
    bucket = pipeline.stack.bucket
    pipeline.send_job({"id": "prompts", "prompt": "edit a prompt file", "images": ["prompts/secret.png"]})
    pipeline.send_job(
        {"id": "outputs", "prompt": "edit an output", "images": [f"s3://{bucket}/outputs/other/00001.png"]}
    )
    pipeline.run()
    for job_id in ("prompts", "outputs"):
        error = pipeline.result("sqs", job_id)["error"]
        assert error["type"] == "input_error" and "not under inputs/" in error["message"]
    assert len(pipeline.gateway.requests) == 0


def test_a_file_whose_name_is_no_folder_is_rejected_and_writes_nothing(pipeline: Pipeline) -> None:
    """`prompts/a/../../escape.txt` would put its outputs outside its batch (and a download outside DIR)."""
    pipeline.run()
    pipeline.put("prompts/a/../../escape.txt", "a banana\n")
    (record,) = pipeline.receive(pipeline.prompts_queue, 1)
    with pipeline.captured_sends() as calls:
        assert pipeline.invoke(pipeline.ingest, [record]) == {"batchItemFailures": []}
    assert calls == {}
    assert pipeline.keys() == []
