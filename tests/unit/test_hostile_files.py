"""Hostile and odd prompt files: every bad line fails alone, every limit holds while streaming, every job
has a record of its own, and no input makes a reader raise anything but FileError."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanobanana.errors import InvalidJobError
from nanobanana.files import (
    MAX_JSON_FILE_BYTES,
    MAX_LINE_BYTES,
    FileError,
    LongLine,
    ParsedLine,
    check_size,
    read_jobs,
    size_limit,
    split_lines,
)
from nanobanana.ingest import message_body
from nanobanana.jobs import MAX_DEPTH, MAX_NUMBER_CHARS


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def parse(text: str | bytes, ext: str, *, max_file_bytes: int = 10**8, size: int = 4096) -> list[ParsedLine]:
    data = text.encode() if isinstance(text, str) else text
    return list(read_jobs(chunks(data, size), ext, max_jobs=1000, max_file_bytes=max_file_bytes))


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


GOOD = '{"prompt": "a good banana"}'
HOSTILE_LINES = {
    "JSON nested 10,000 deep": "[" * 10_000 + "]" * 10_000,
    "an object nested 10,000 deep": nested(10_000),
    "metadata nested 10,000 deep": '{"prompt": "x", "metadata": ' + nested(10_000) + "}",
    "metadata nested 256 deep": '{"prompt": "x", "metadata": ' + nested(256) + "}",
    "metadata one level too deep": '{"prompt": "x", "metadata": ' + nested(MAX_DEPTH) + "}",
    "an integer of 5,000 digits": '{"prompt": "x", "seed": ' + "9" * 5000 + "}",
    "metadata with a 4,301-digit integer": '{"prompt": "x", "metadata": {"n": ' + "1" * 4301 + "}}",
    "a float of 100 digits": '{"prompt": "x", "temperature": 0.' + "1" * 100 + "}",
    "a float out of range": '{"prompt": "x", "metadata": {"f": 1e400}}',
    "NaN": '{"prompt": "x", "temperature": NaN}',
    "-Infinity in metadata": '{"prompt": "x", "metadata": {"f": -Infinity}}',
    "a lone surrogate in metadata": '{"prompt": "x", "metadata": {"s": "\\ud800"}}',
    "a lone surrogate in a metadata key": '{"prompt": "x", "metadata": {"\\udfff": 1}}',
    "a lone surrogate in a message": '{"messages": [{"role": "user", "content": [{"type": "text", '
    '"text": "\\ud800"}]}]}',
    "a bare number": "1" * 5000,
}


@pytest.mark.parametrize("line", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_a_hostile_line_fails_alone(line: str) -> None:
    """What used to raise out of ingest (RecursionError, ValueError, a serialization error): one bad line."""
    parsed = parse("\n".join([GOOD, line, GOOD]), ".jsonl")
    assert [p.line for p in parsed] == [1, 2, 3]
    assert parsed[0].job is not None and parsed[2].job is not None
    assert parsed[1].job is None and parsed[1].error is not None
    for item in (parsed[0], parsed[2]):  # the good lines still go out as messages
        assert message_body(item, batch="b", source={}, upload="u")


def test_the_limits_are_named_in_the_message() -> None:
    deep, big, nan = (
        parse(HOSTILE_LINES[name], ".jsonl")[0].error
        for name in ("metadata nested 256 deep", "an integer of 5,000 digits", "NaN")
    )
    assert deep is not None and deep.field == "metadata" and f"more than {MAX_DEPTH} levels" in deep.message
    assert big is not None and big.field == "seed" and f"over the limit of {MAX_NUMBER_CHARS}" in big.message
    assert nan is not None and nan.field == "temperature" and "NaN is not a number" in nan.message


def test_just_under_the_bounds_is_a_job() -> None:
    metadata = '{"prompt": "x", "metadata": ' + nested(MAX_DEPTH - 1) + "}"
    seed = '{"prompt": "x", "seed": ' + "9" * MAX_NUMBER_CHARS + "}"
    assert [p.error for p in parse(f"{metadata}\n{seed}\n", ".jsonl")] == [None, None]


def test_one_past_the_number_bound_is_not() -> None:
    (parsed,) = parse('{"prompt": "x", "metadata": {"n": -' + "1" * MAX_NUMBER_CHARS + "}}", ".jsonl")
    assert parsed.error is not None and parsed.error.field == "metadata"


def test_a_hostile_element_of_a_json_file_fails_alone() -> None:
    doc = f"[{GOOD}, {HOSTILE_LINES['an integer of 5,000 digits']}, {HOSTILE_LINES['NaN']}, {GOOD}]"
    parsed = parse(doc, ".json")
    assert [p.job is not None for p in parsed] == [True, False, False, True]


@pytest.mark.parametrize(
    "doc",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"jobs": ' + "[" * 5000 + "]" * 5000 + "}",
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
    ids=["deep list", "deep jobs", "a surrogate's bytes"],
)
def test_a_json_file_that_cannot_be_parsed_is_rejected_whole(doc: str | bytes) -> None:
    with pytest.raises(FileError):
        parse(doc, ".json")


@pytest.mark.parametrize("ext", [".txt", ".jsonl"])
def test_a_line_over_the_limit_fails_alone(ext: str) -> None:
    long = "x" * (MAX_LINE_BYTES + 1)
    text = "first\n" + long + "\nlast\n" if ext == ".txt" else f"{GOOD}\n{long}\n{GOOD}\n"
    parsed = parse(text, ext, size=65536)
    assert [p.line for p in parsed] == [1, 2, 3]
    assert parsed[1].error is not None and f"over the limit of {MAX_LINE_BYTES}" in parsed[1].error.message
    assert parsed[0].job is not None and parsed[2].job is not None
    assert len(parse("y" * MAX_LINE_BYTES + "\n", ext, size=65536)) == 1  # the limit itself is allowed


def test_a_csv_line_over_the_limit_stops_the_file() -> None:
    """A CSV row may span lines: past a line that was skipped, no row can be told from the next."""
    with pytest.raises(FileError, match="line 3 is"):
        parse("prompt\nok\n" + "x" * (MAX_LINE_BYTES + 1) + "\nlast\n", ".csv", size=65536)


def test_a_file_is_bounded_while_it_streams_whatever_size_it_claimed() -> None:
    with pytest.raises(FileError, match="over the limit of 100"):
        parse("a banana\n" * 20, ".txt", max_file_bytes=100)
    assert size_limit(".json", 10**9) == MAX_JSON_FILE_BYTES
    assert size_limit(".jsonl", 10**9) == 10**9
    with pytest.raises(FileError, match="over the limit"):
        check_size(MAX_JSON_FILE_BYTES + 1, size_limit(".json", 10**9))


def test_a_huge_line_is_never_held() -> None:
    """64 MB on one line, streamed: the reader keeps its count, never its bytes."""

    def stream() -> Iterator[bytes]:
        yield b'{"prompt": "before"}\n'
        for _ in range(64):
            yield b"x" * 2**20
        yield b'\n{"prompt": "after"}\n'

    tracemalloc.start()
    try:
        parsed = list(read_jobs(stream(), ".jsonl", max_jobs=10, max_file_bytes=10**9))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.job is not None for p in parsed] == [True, False, True]
    assert peak < 8 * 2**20


# -- one record per job -------------------------------------------------------------------------------


def ids_and_errors(text: str, ext: str = ".jsonl") -> list[tuple[str, str | None]]:
    return [(p.id, p.error and p.error.message) for p in parse(text, ext)]


def test_duplicate_explicit_ids_get_records_of_their_own() -> None:
    got = ids_and_errors(
        '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n{"id": "a", "prompt": "z"}\n'
    )
    assert [job_id for job_id, _ in got] == ["a", "line00002..duplicate", "line00003..duplicate"]
    assert got[1][1] is not None and "'a' is already used by the job at line 1" in got[1][1]
    assert "line00002..duplicate" in got[1][1]


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "00002", "prompt": "x"}\n{"prompt": "its default id is 00002"}\n',
        '{"prompt": "its default id is 00001"}\n{"id": "00001", "prompt": "y"}\n',
    ],
    ids=["explicit then default", "default then explicit"],
)
def test_a_default_id_equal_to_an_explicit_one(text: str) -> None:
    (first, _), (second, message) = ids_and_errors(text)
    assert second == "line00002..duplicate" != first
    assert message is not None and "already used by the job at line 1" in message


def test_a_csv_where_only_some_rows_have_an_id() -> None:
    got = ids_and_errors("id,prompt\n00002,a cat\n,a dog\n", ".csv")
    assert [job_id for job_id, _ in got] == ["00002", "line00003..duplicate"]


def test_an_invalid_line_reusing_a_valid_id_keeps_both_problems() -> None:
    (_, ok), (second, message) = ids_and_errors('{"id": "a", "prompt": "x"}\n{"id": "a", "colour": 1}\n')
    assert ok is None and second == "line00002..duplicate"
    assert message is not None and message.startswith("colour: unknown field") and "line 1" in message


def test_an_invalid_line_first_and_a_valid_one_after_it() -> None:
    got = ids_and_errors('{"id": "a", "colour": 1}\n{"id": "a", "prompt": "x"}\n')
    assert [job_id for job_id, _ in got] == ["a", "line00002..duplicate"]


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(["a", "b", "00001", "00002", "00003", "line00002..duplicate", "_batch"]),
        ),
        max_size=8,
    ),
    st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_every_job_of_a_file_has_its_own_record(ids: list[str | None], valid: list[bool]) -> None:
    lines = [
        json.dumps({"prompt": "x", **({"id": i} if i is not None else {}), **({} if ok else {"bad": 1})})
        for i, ok in zip(ids, valid, strict=False)
    ]
    try:
        parsed = parse("\n".join(lines) + "\n", ".jsonl")
    except FileError:
        assert not lines
        return
    assert len({p.id for p in parsed}) == len(parsed) == len(lines)


# -- the line reader ----------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.integers(1, 40), st.integers(0, 30))
def test_split_lines_is_splitlines_whatever_the_chunks(data: bytes, size: int, limit: int) -> None:
    expected = [LongLine(len(line)) if len(line) > limit else line for line in data.splitlines()]
    assert list(split_lines(chunks(data, size), limit)) == expected


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"xyz"]), max_size=30), st.integers(1, 5))
def test_line_endings_split_as_splitlines_does_across_chunks(pieces: list[bytes], size: int) -> None:
    data = b"".join(pieces)
    assert list(split_lines(chunks(data, size), 100)) == data.splitlines()


# -- any input: a ParsedLine or FileError, nothing else ------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["prompt", "id", "00001", "inputs/a.png", "16:9", "1K", "user", "_batch"]),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "prompt",
                    "id",
                    "messages",
                    "metadata",
                    "seed",
                    "temperature",
                    "images",
                    "role",
                    "content",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)
ODD_TEXT = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.sampled_from(['"', "\\", "\r", "\x00", "\ufeff", ",", "[", "{", "9" * 5000, "[" * 3000, "NaN"]),
)


def assert_only_typed_errors(data: bytes, ext: str) -> None:
    try:
        for item in read_jobs(chunks(data, 17), ext, max_jobs=10_000, max_file_bytes=10**6):
            assert (item.job is None) != (item.error is None)
            if item.error is not None:
                assert isinstance(item.error, InvalidJobError)
            else:  # a valid job always makes a message (these are far below the message's size limit)
                message_body(item, batch="b", source={}, upload="u")
    except FileError:
        pass


@pytest.mark.parametrize("ext", [".txt", ".jsonl", ".json", ".csv"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_any_bytes(ext: str, data: bytes) -> None:
    assert_only_typed_errors(data, ext)


@pytest.mark.parametrize("ext", [".txt", ".jsonl", ".json", ".csv"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(JSON_VALUES.map(lambda v: json.dumps(v)), ODD_TEXT), max_size=6))
def test_any_lines(ext: str, lines: list[str]) -> None:
    assert_only_typed_errors("\n".join(lines).encode("utf-8", "surrogatepass"), ext)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.lists(JSON_VALUES, max_size=5), defaults=st.none() | JSON_VALUES)
def test_any_json_document(jobs: list[Any], defaults: Any) -> None:
    doc: Any = jobs if defaults is None else {"defaults": defaults, "jobs": jobs}
    assert_only_typed_errors(json.dumps(doc).encode(), ".json")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.lists(
        st.sampled_from(["id", "prompt", "seed", "temperature", "metadata", "images", "messages", "x"]),
        min_size=1,
        max_size=5,
    ),
    rows=st.lists(st.lists(ODD_TEXT | JSON_VALUES.map(lambda v: json.dumps(v)), max_size=6), max_size=4),
)
def test_any_csv(header: list[str], rows: list[list[str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    assert_only_typed_errors(buffer.getvalue().encode("utf-8", "surrogatepass"), ".csv")


# -- the last nets: a failure nobody foresaw still costs one line -------------------------------------


def test_an_unforeseen_failure_reading_a_job_costs_that_line_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import nanobanana.files

    real = nanobanana.files.parse_job

    def fragile(obj: Any, **kwargs: Any) -> Any:
        if obj.get("prompt") == "boom":
            raise MemoryError("a bug")
        return real(obj, **kwargs)

    monkeypatch.setattr(nanobanana.files, "parse_job", fragile)
    parsed = parse(f'{GOOD}\n{{"prompt": "boom"}}\n{GOOD}\n', ".jsonl")
    assert [p.job is not None for p in parsed] == [True, False, True]
    assert parsed[1].error is not None and "could not be read (MemoryError)" in parsed[1].error.message


def test_an_unforeseen_failure_writing_a_message_is_that_job_s_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import nanobanana.ingest

    def unwritable(*args: Any, **kwargs: Any) -> str:
        raise ValueError("Maximum serialization depth exceeded")

    monkeypatch.setattr(nanobanana.ingest, "envelope", unwritable)
    (parsed,) = parse(GOOD, ".jsonl")
    with pytest.raises(InvalidJobError, match="cannot be written as a queue message"):
        message_body(parsed, batch="b", source={}, upload="u")
