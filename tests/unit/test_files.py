"""Prompt files: every format, bad lines failing alone, and files that cannot be read as a whole."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nanobanana.files import FileError, ParsedLine, batch_name, check_size, extension_of, read_jobs


def chunks(text: str | bytes, size: int = 7) -> Iterator[bytes]:
    """The file as S3 streams it: in chunks that fall anywhere, inside lines and characters."""
    data = text.encode() if isinstance(text, str) else text
    return (data[i : i + size] for i in range(0, len(data), size))


def parse(text: str | bytes, ext: str, max_jobs: int = 100, max_file_bytes: int = 10**6) -> list[ParsedLine]:
    return list(read_jobs(chunks(text), ext, max_jobs=max_jobs, max_file_bytes=max_file_bytes))


def test_batch_name_and_extension() -> None:
    assert batch_name("prompts/cats/nov.jsonl") == "cats/nov"
    assert batch_name("prompts/a b+c.txt") == "a b+c"
    assert extension_of("prompts/X.CSV") == ".csv"
    with pytest.raises(FileError, match=r"unsupported file extension '\.pdf'"):
        extension_of("prompts/x.pdf")


def test_txt_skips_blanks_and_comments_and_numbers_by_line() -> None:
    parsed = parse("\ufeffa cat\n\n# comment\n  a dog  \r\n", ".txt")
    assert [(p.line, p.id, p.job and p.job.prompt) for p in parsed] == [
        (1, "00001", "a cat"),
        (4, "00004", "a dog"),
    ]


def test_every_line_ending_ends_a_line() -> None:
    """`\\n`, `\\r\\n` and an old Mac's `\\r` alike, wherever the chunks fall."""
    parsed = parse("one\rtwo\r\nthree\nfour\r", ".txt")
    assert [(p.line, p.job and p.job.prompt) for p in parsed] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
    ]
    (row,) = parse('prompt\r\n"a cat\r\non two lines"\r\n', ".csv")
    assert row.job is not None and row.job.prompt == "a cat\non two lines"


def test_jsonl_bad_lines_fail_alone() -> None:
    text = "\n".join(
        [
            json.dumps({"prompt": "ok"}),
            "{not json",
            json.dumps({"id": "named", "prompt": "x", "aspect_ratio": "9:9"}),
            json.dumps(
                {
                    "custom_id": "b1",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"messages": [{"role": "user", "content": "hi"}]},
                }
            ),
            json.dumps({"prompt": "x", "batch": "elsewhere"}),
        ]
    )
    parsed = parse(text, ".jsonl")
    assert [p.id for p in parsed] == ["00001", "00002", "named", "b1", "00005"]
    assert [p.job is not None for p in parsed] == [True, False, False, True, False]
    assert parsed[1].error is not None and "not valid JSON" in parsed[1].error.message
    assert parsed[2].error is not None and parsed[2].error.field == "aspect_ratio"
    assert parsed[4].error is not None and parsed[4].error.field == "batch"


def test_duplicate_ids_in_one_file() -> None:
    parsed = parse('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', ".jsonl")
    assert parsed[0].job is not None
    assert parsed[1].error is not None and "line 1" in parsed[1].error.message
    assert parsed[1].id == "line00002..duplicate"  # never filed over the first job's result


def test_json_forms() -> None:
    assert [p.id for p in parse('{"prompt": "one"}', ".json")] == ["00001"]
    assert [p.job and p.job.prompt for p in parse('[{"prompt": "a"}, {"prompt": "b"}]', ".json")] == [
        "a",
        "b",
    ]
    doc = {
        "defaults": {"aspect_ratio": "16:9", "image_size": "2K"},
        "jobs": [{"prompt": "a"}, {"prompt": "b", "aspect_ratio": "1:1"}],
    }
    parsed = parse(json.dumps(doc), ".json")
    assert [(p.job.aspect_ratio, p.job.image_size) for p in parsed if p.job] == [
        ("16:9", "2K"),
        ("1:1", "2K"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{broken", "not valid JSON"),
        ('{"defaults": {}, "jobs": {}}', '"defaults"'),
        ('{"defaults": {"aspect_ratio": "x"}, "jobs": [{"prompt": "a"}]}', "defaults.aspect_ratio"),
        ("[]", "no jobs"),
    ],
)
def test_unreadable_json_files(text: str, message: str) -> None:
    with pytest.raises(FileError, match=message):
        parse(text, ".json")


def test_csv_columns_are_job_fields() -> None:
    text = (
        "prompt,aspect_ratio,seed,images,metadata\n"
        '"a cat, sitting",16:9,7,inputs/a.png inputs/b.png,"{""k"": 1}"\n'
        '"a dog\non two lines",,,,\n'
        "a bird,9:9,,,\n"
    )
    parsed = parse(text, ".csv")
    first, second, third = parsed
    assert first.job is not None and first.job.prompt == "a cat, sitting" and first.job.seed == 7
    assert first.job.images == ["inputs/a.png", "inputs/b.png"] and first.job.metadata == {"k": 1}
    assert second.job is not None and second.job.prompt == "a dog\non two lines" and second.line == 3
    assert third.error is not None and third.error.field == "aspect_ratio" and third.id == "00003"


def test_csv_numbers_are_read_as_json_numbers() -> None:
    parsed = parse("prompt,seed,temperature,max_tokens\na,7,0.5,100\nb,seven,,\nc,,NaN,\nd,,,true\n", ".csv")
    assert parsed[0].job is not None and (parsed[0].job.seed, parsed[0].job.temperature) == (7, 0.5)
    assert parsed[1].error is not None and parsed[1].error.message.startswith("seed: must be a number")
    assert parsed[2].error is not None and "NaN is not a number" in parsed[2].error.message
    assert parsed[3].error is not None and parsed[3].error.field == "max_tokens"


def test_a_misspelt_csv_column_is_one_error_for_the_file() -> None:
    rows = "".join(f"cat {n},16:9\n" for n in range(1000))
    with pytest.raises(FileError, match="column 'aspect_ratoi' is not a job field") as raised:
        parse("prompt,aspect_ratoi\n" + rows, ".csv")
    assert "aspect_ratio" in str(raised.value)  # the columns it could have meant
    (row,) = parse("prompt,\na cat,\n", ".csv")  # a trailing comma names no column: still fine
    assert row.job is not None


def test_csv_without_prompt_column() -> None:
    with pytest.raises(FileError, match="'prompt' column"):
        parse("text,seed\nx,1\n", ".csv")


def test_not_utf8_is_a_file_error() -> None:
    with pytest.raises(FileError, match="line 2 is not valid UTF-8"):
        parse(b"fine\ncaf\xe9\n", ".txt")


def test_job_limit_and_empty_files() -> None:
    with pytest.raises(FileError, match="more than 2 jobs"):
        parse("a\nb\nc\n", ".txt", max_jobs=2)
    with pytest.raises(FileError, match="no jobs"):
        parse("# only a comment\n\n", ".txt")


def test_a_large_file_streams() -> None:
    """A 100,000-line file is read as it streams in: the generator never needs it whole."""
    produced = 0

    def source() -> Iterator[bytes]:
        nonlocal produced
        for n in range(100_000):
            produced += 1
            yield f"prompt number {n}\n".encode()

    jobs = read_jobs(source(), ".txt", max_jobs=100_000, max_file_bytes=10**8)
    first = next(jobs)
    assert first.id == "00001" and produced == 1
    assert sum(1 for _ in jobs) == 99_999


def test_the_size_limit_is_checked_before_reading() -> None:
    check_size(100, 100)
    with pytest.raises(FileError, match="101 bytes, over the limit of 100"):
        check_size(101, 100)
