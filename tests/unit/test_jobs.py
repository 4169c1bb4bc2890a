"""Job validation: every field of the contract, OpenAI Batch lines, defaults, and unsafe ids."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobanana.errors import ErrorType, InvalidJobError
from nanobanana.jobs import default_id, job_line, loads, parse_defaults, parse_job, salvage

BATCH_LINE = {
    "custom_id": "req-1",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {
        "model": "gemini-2.5-flash-image",
        "messages": [{"role": "user", "content": "a banana"}],
        "temperature": 0.4,
        "top_p": 0.9,
    },
}


def test_every_field_of_the_contract() -> None:
    job = parse_job(
        {
            "id": "cat-1",
            "prompt": "a cat",
            "images": ["inputs/cat.png", "s3://other-bucket/x.jpg", "https://example.com/a.png"],
            "model": "gemini-2.5-flash-image",
            "temperature": 0.7,
            "max_tokens": 1000,
            "seed": 42,
            "aspect_ratio": "16:9",
            "image_size": "2K",
            "batch": "cats/nov",
            "metadata": {"owner": "ana"},
        }
    )
    assert (job.id, job.aspect_ratio, job.image_size, job.batch) == ("cat-1", "16:9", "2K", "cats/nov")
    assert job.metadata == {"owner": "ana"}
    assert job.options == {}


def test_fallback_id_and_defaults() -> None:
    job = parse_job({"prompt": "x"}, defaults={"aspect_ratio": "1:1", "seed": 3}, fallback_id=default_id(7))
    assert (job.id, job.aspect_ratio, job.seed) == ("00007", "1:1", 3)
    assert parse_job({"prompt": "x", "seed": 9}, defaults={"seed": 3}).seed == 9


def test_openai_batch_line_passes_other_parameters() -> None:
    job = parse_job(BATCH_LINE)
    assert job.id == "req-1"
    assert job.model == "gemini-2.5-flash-image"
    assert job.temperature == 0.4
    assert job.options == {"top_p": 0.9}
    assert job.messages is not None and job.messages[0].content == "a banana"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "id": "a/b"}, "id"),
        ({"prompt": "x", "id": ".."}, "id"),
        ({"prompt": "x", "id": "a..b"}, "id"),
        ({"prompt": "x", "id": "a\x00b"}, "id"),
        ({"prompt": "x", "id": "x" * 129}, "id"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"prompt": "x", "image_size": "8K"}, "image_size"),
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "images": ["http://insecure.example/a.png"]}, "images.0"),
        ({"prompt": "x", "images": ["/abs/key.png"]}, "images.0"),
        ({"prompt": "x", "batch": "../escape"}, "batch"),
        ({"prompt": ""}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "prompt"),
        ({"messages": [{"role": "robot", "content": "y"}]}, "messages.0.role"),
        ({"prompt": "x", "id": "a\n"}, "id"),
        ({"prompt": "x", "id": "."}, "id"),
        ({"prompt": "x", "id": "_ingest_error"}, "id"),
        ({"prompt": "x", "id": "_batch"}, "id"),
        ({"prompt": "x", "id": "_Results"}, "id"),
        ({"prompt": "x", "id": "_failed"}, "id"),
        ({"prompt": "x", "batch": "cats\n"}, "batch"),
        ({"prompt": "x", "images": ["inputs/a.png\n"]}, "images.0"),
        ({"prompt": "x", "seed": "1"}, "seed"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "max_tokens": True}, "max_tokens"),
        ({"prompt": "x", "temperature": "0.5"}, "temperature"),
        ({"prompt": "x", "temperature": float("nan")}, "temperature"),
        ({"prompt": 7}, "prompt"),
        ({**BATCH_LINE, "custom_id": "_batch"}, "custom_id"),
        ({**BATCH_LINE, "body": {"messages": [{"role": "user", "content": "x"}], "seed": "3"}}, "body.seed"),
        ({**BATCH_LINE, "url": "/v1/embeddings"}, "url"),
        ({**BATCH_LINE, "extra": 1}, "extra"),
        (
            {**BATCH_LINE, "body": {"messages": [{"role": "user", "content": "x"}], "stream": True}},
            "body.stream",
        ),
    ],
)
def test_bad_jobs_name_their_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidJobError) as caught:
        parse_job(obj)
    assert caught.value.field == field
    assert caught.value.type is ErrorType.INVALID_JOB
    assert caught.value.message.startswith(f"{field}: ")


def test_nan_is_named_not_misread() -> None:
    with pytest.raises(InvalidJobError, match="temperature: Input should be a finite number"):
        parse_job({"prompt": "x", "temperature": float("nan")})
    with pytest.raises(InvalidJobError, match="temperature: NaN is not a number"):
        parse_job(loads('{"prompt": "x", "temperature": NaN}'))


def test_ids_that_look_like_the_pipeline_s_names_but_are_not_are_fine() -> None:
    assert parse_job({"prompt": "x", "id": "_batch2"}).id == "_batch2"
    assert parse_job({"prompt": "x", "id": ".hidden"}).id == ".hidden"


def test_a_job_must_be_an_object() -> None:
    with pytest.raises(InvalidJobError, match="JSON object"):
        parse_job(["prompt"])


def test_defaults_are_checked_like_jobs() -> None:
    assert parse_defaults({"aspect_ratio": "3:4"}) == {"aspect_ratio": "3:4"}
    with pytest.raises(InvalidJobError, match=r"defaults\.aspect_ratio"):
        parse_defaults({"aspect_ratio": "nope"})
    with pytest.raises(InvalidJobError, match=r"defaults\.id"):
        parse_defaults({"id": "x"})


def test_salvage_keeps_only_valid_ids_and_batches() -> None:
    assert salvage({"id": "mine", "prompt": 3}, "id", "00004") == "mine"
    assert salvage({"id": "../x"}, "id", "00004") == "00004"
    assert salvage("not a dict", "id", "00004") == "00004"
    assert salvage({"batch": "a/b"}, "batch", "sqs") == "a/b"
    assert salvage({"batch": "a//b"}, "batch", "sqs") == "sqs"


@given(
    st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers() | st.text(), max_size=6)
)
def test_any_object_is_a_job_or_an_invalid_job(obj: dict[str, Any]) -> None:
    try:
        job = parse_job(obj, fallback_id="00001")
    except InvalidJobError as error:
        message, field = error.message, error.field
    else:
        assert job.id is not None
        assert (job.prompt is None) != (job.messages is None)
        return
    assert message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("line", "openai_batch"),
    [
        (BATCH_LINE, True),
        ({"id": "cat-1", "prompt": "a cat", "seed": 4, "metadata": {"n": 1}}, False),
        ({"id": "edit", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, False),
    ],
)
def test_a_job_written_back_as_a_line_parses_to_the_same_job(
    line: dict[str, Any], openai_batch: bool
) -> None:
    """What _failed.jsonl holds: uploaded again, each line is the job it was, in the kind it came in."""
    job = parse_job(line)
    written = job_line(job, openai_batch=openai_batch)
    assert parse_job(written) == job
    assert ("custom_id" in written) is openai_batch


def test_a_job_with_a_default_id_keeps_it_when_written_back() -> None:
    job = parse_job({"prompt": "a cat"}, defaults={"aspect_ratio": "1:1"}, fallback_id="00007")
    assert job_line(job, openai_batch=False) == {"id": "00007", "prompt": "a cat", "aspect_ratio": "1:1"}
