"""Prompt files: every accepted format read line by line into jobs, without holding the file in memory.

A file that cannot be read as a whole raises `FileError`; a bad line inside a good file is yielded as a
`ParsedLine` with an error, so that it fails alone.
"""

from __future__ import annotations

import csv
import json
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nanobanana.errors import InvalidJobError
from nanobanana.jobs import Job, default_id, parse_defaults, parse_job, salvage

PROMPTS_PREFIX = "prompts/"
EXTENSIONS = (".txt", ".jsonl", ".json", ".csv")
#: CSV columns that hold JSON rather than text.
CSV_JSON_COLUMNS = frozenset({"messages", "metadata", "images"})


class FileError(Exception):
    """The prompt file cannot be read as a whole; nothing of it is enqueued."""


@dataclass(frozen=True)
class ParsedLine:
    """One job of a file: `line` is where it starts (1-based); exactly one of job or error is set."""

    line: int
    id: str
    job: Job | None
    error: InvalidJobError | None = None


def batch_name(key: str) -> str:
    """`prompts/cats/nov.jsonl` -> `cats/nov`: the output folder of a prompt file."""
    name = key.removeprefix(PROMPTS_PREFIX)
    stem, _ = posixpath.splitext(name)
    return stem


def extension_of(key: str) -> str:
    """The file's format, or FileError for one that is not accepted."""
    ext = posixpath.splitext(key)[1].lower()
    if ext not in EXTENSIONS:
        raise FileError(f"unsupported file extension {ext or '(none)'!r}: use one of {', '.join(EXTENSIONS)}")
    return ext


def check_size(size: int, limit: int) -> None:
    """A file over the size limit is refused before a byte of it is read."""
    if size > limit:
        raise FileError(f"the file is {size} bytes, over the limit of {limit}: split it into smaller files")


def decode_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """Strict UTF-8 lines (a leading BOM allowed), numbered from 1, line endings removed."""
    for number, raw in enumerate(chunks, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileError(
                f"line {number} is not valid UTF-8 (byte {exc.start}); save the file as UTF-8"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield number, text.rstrip("\r\n")


def read_jobs(chunks: Iterable[bytes], extension: str, *, max_jobs: int) -> Iterator[ParsedLine]:
    """Yield every job of a file (valid or not); raise FileError for a file that can't be read whole."""
    readers = {".txt": _txt, ".jsonl": _jsonl, ".json": _json, ".csv": _csv}
    seen: dict[str, int] = {}
    count = 0
    for parsed in readers[extension](decode_lines(chunks)):
        count += 1
        if count > max_jobs:
            raise FileError(f"more than {max_jobs} jobs in one file: split it into smaller files")
        yield _check_unique(parsed, seen)
    if count == 0:
        raise FileError("the file holds no jobs")


def _check_unique(parsed: ParsedLine, seen: dict[str, int]) -> ParsedLine:
    """Two jobs of one file may not share an id: the second would overwrite the first's outputs."""
    if parsed.job is None or parsed.job.id is None:
        return parsed
    if parsed.job.id in seen:
        error = InvalidJobError(
            "id", f"{parsed.job.id!r} is already used by the job at line {seen[parsed.job.id]}"
        )
        return ParsedLine(parsed.line, default_id(parsed.line), None, error)
    seen[parsed.job.id] = parsed.line
    return parsed


def _job(line: int, obj: Any, number: int, defaults: dict[str, Any] | None = None) -> ParsedLine:
    fallback = default_id(number)
    try:
        job = parse_job(obj, defaults=defaults, fallback_id=fallback)
    except InvalidJobError as error:
        return _bad(line, error, salvage(obj, "id", fallback))
    assert job.id is not None
    if job.batch is not None:
        return _bad(line, InvalidJobError("batch", "a prompt file's batch is its name; remove it"), job.id)
    return ParsedLine(line, job.id, job)


def _bad(line: int, error: InvalidJobError, job_id: str | None = None) -> ParsedLine:
    return ParsedLine(line, job_id or default_id(line), None, error)


def _txt(lines: Iterable[tuple[int, str]]) -> Iterator[ParsedLine]:
    for number, text in lines:
        prompt = text.strip()
        if prompt and not prompt.startswith("#"):
            yield _job(number, {"prompt": prompt}, number)


def _jsonl(lines: Iterable[tuple[int, str]]) -> Iterator[ParsedLine]:
    for number, text in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _bad(number, InvalidJobError("", f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        yield _job(number, obj, number)


def _json(lines: Iterable[tuple[int, str]]) -> Iterator[ParsedLine]:
    """A `.json` file is one document: it is parsed whole (size-capped by the caller)."""
    text = "\n".join(line for _, line in lines)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    defaults: dict[str, Any] | None = None
    if isinstance(doc, dict) and ("jobs" in doc or "defaults" in doc):
        unknown = set(doc) - {"jobs", "defaults"}
        if unknown or not isinstance(doc.get("jobs"), list):
            raise FileError(
                'a file with "defaults" must be {"defaults": {...}, "jobs": [...]} and nothing else'
            )
        try:
            defaults = parse_defaults(doc.get("defaults", {}))
        except InvalidJobError as error:
            raise FileError(str(error)) from None
        doc = doc["jobs"]
    for number, obj in enumerate(doc if isinstance(doc, list) else [doc], start=1):
        yield _job(number, obj, number, defaults)


def _csv(lines: Iterable[tuple[int, str]]) -> Iterator[ParsedLine]:
    numbered = iter(lines)
    current = [0]

    def texts() -> Iterator[str]:
        for number, text in numbered:
            current[0] = number
            yield text + "\n"  # a quoted cell may span lines: csv needs the line ends back

    reader = csv.DictReader(texts(), strict=True)
    try:
        header = reader.fieldnames
        if not header or ("prompt" not in header and "messages" not in header):
            raise FileError("a CSV file needs a header row with a 'prompt' column")
        end = current[0]
        for row_number, row in enumerate(reader, start=1):
            start, end = end + 1, current[0]  # a quoted cell may have spanned several lines
            try:
                obj = _csv_row(row)
            except InvalidJobError as error:
                yield _bad(start, error, default_id(row_number))
                continue
            yield _job(start, obj, row_number)
    except csv.Error as exc:
        raise FileError(f"unreadable CSV at line {current[0]}: {exc}") from None


def _csv_row(row: dict[str | Any, str | Any]) -> dict[str, Any]:
    """Empty cells are absent; JSON columns are parsed; a row longer than the header is an error."""
    if None in row:
        raise InvalidJobError("", "the row has more cells than the header")
    obj: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or value == "":
            continue
        if name in CSV_JSON_COLUMNS and value.lstrip()[:1] in "[{":
            try:
                obj[name] = json.loads(value)
            except json.JSONDecodeError:
                raise InvalidJobError(name, "not valid JSON") from None
        elif name == "images":
            obj[name] = value.split()
        else:
            obj[name] = value
    return obj
