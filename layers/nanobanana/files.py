"""Prompt files: every accepted format read line by line into jobs, without holding the file in memory.

A file that cannot be read as a whole raises `FileError`; a bad line inside a good file is yielded as a
`ParsedLine` with an error, so that it fails alone.
"""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from nanobanana.errors import InvalidJobError
from nanobanana.jobs import (
    PATTERN_HINTS,
    BatchName,
    Job,
    JobSpec,
    default_id,
    loads,
    parse_defaults,
    parse_job,
    salvage,
)

PROMPTS_PREFIX = "prompts/"
EXTENSIONS = (".txt", ".jsonl", ".json", ".csv")
#: CSV columns that hold JSON rather than text ...
CSV_JSON_COLUMNS = frozenset({"messages", "metadata", "images"})
#: ... and those that hold a number, written as JSON writes it (`7`, `0.5`; not `NaN`).
CSV_NUMBER_COLUMNS = frozenset({"temperature", "max_tokens", "seed"})
_BATCH_NAME: TypeAdapter[str] = TypeAdapter(BatchName, config=ConfigDict(regex_engine="python-re"))
#: One line of a .txt, .jsonl or .csv file (its line ending not counted): past it, the line fails alone.
MAX_LINE_BYTES = 1024 * 1024
#: A .json file is one document parsed whole in memory: this, or the file limit if lower. Prefer .jsonl.
MAX_JSON_FILE_BYTES = 32 * 1024 * 1024


class FileError(Exception):
    """The prompt file cannot be read as a whole; nothing of it is enqueued."""


@dataclass(frozen=True)
class ParsedLine:
    """One job of a file: `line` is where it starts (1-based); exactly one of job or error is set."""

    line: int
    id: str
    job: Job | None
    error: InvalidJobError | None = None
    #: the line was an OpenAI Batch line: a job written back (e.g. to _failed.jsonl) is written as one
    openai_batch: bool = False


@dataclass(frozen=True)
class LongLine:
    """A line over MAX_LINE_BYTES: its bytes were skipped as they streamed past, only its size is kept."""

    size: int


def batch_name(key: str) -> str:
    """`prompts/cats/nov.jsonl` -> `cats/nov`: the output folder of a prompt file."""
    name = key.removeprefix(PROMPTS_PREFIX)
    stem, _ = posixpath.splitext(name)
    return stem


def check_batch(batch: str) -> None:
    """FileError for a file whose name gives no folder name (`prompts/a/../b.txt`): no place for outputs."""
    try:
        _BATCH_NAME.validate_python(batch)
    except ValidationError:
        raise FileError(
            f"the file's name gives the batch {batch!r}, which {PATTERN_HINTS['batch']}"
        ) from None


def extension_of(key: str) -> str:
    """The file's format, or FileError for one that is not accepted."""
    ext = posixpath.splitext(key)[1].lower()
    if ext not in EXTENSIONS:
        raise FileError(f"unsupported file extension {ext or '(none)'!r}: use one of {', '.join(EXTENSIONS)}")
    return ext


def size_limit(extension: str, max_file_bytes: int) -> int:
    """A `.json` file is parsed whole in memory, so it has a lower limit than the files read line by line."""
    return min(max_file_bytes, MAX_JSON_FILE_BYTES) if extension == ".json" else max_file_bytes


def check_size(size: int, limit: int) -> None:
    """A file over the size limit is refused before a byte of it is read."""
    if size > limit:
        raise FileError(f"the file is {size} bytes, over the limit of {limit}: split it into smaller files")


def check_file(key: str, size: int, max_file_bytes: int) -> str:
    """The file's format, or FileError for what refuses it whole before a byte is read (ingest and
    `check` alike): a key outside prompts/, a name that gives no batch, an extension, a size."""
    if not key.startswith(PROMPTS_PREFIX):
        raise FileError(f"{key} is not under {PROMPTS_PREFIX}")
    check_batch(batch_name(key))
    extension = extension_of(key)
    check_size(size, size_limit(extension, max_file_bytes))
    return extension


def split_lines(chunks: Iterable[bytes], max_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | LongLine]:
    """The lines of a stream read in chunks, in time linear in the stream's size.

    Lines end as `bytes.splitlines` ends them (`\\n`, `\\r\\n` or `\\r`), and come without their ending.
    A line over `max_bytes` is never held: it is counted as it streams past and yielded as a LongLine.
    """
    parts: list[bytes] = []
    size = 0
    for chunk in _newlines(chunks):
        *ends, rest = chunk.split(b"\n")
        for piece in ends:
            size += len(piece)
            yield LongLine(size) if size > max_bytes else b"".join((*parts, piece))
            parts, size = [], 0
        size += len(rest)
        if size > max_bytes:
            parts = []
        elif rest:
            parts.append(rest)
    if size:
        yield LongLine(size) if size > max_bytes else b"".join(parts)


def _newlines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, every line ending made `\\n` (a `\\r` ending a chunk waits: a `\\n` may follow)."""
    held = b""
    for chunk in chunks:
        chunk = held + chunk
        held = b"\r" if chunk.endswith(b"\r") else b""
        yield chunk[: len(chunk) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if held:
        yield b"\n"


def _bounded(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The chunks, or FileError once more than `limit` bytes came: whatever size the file claimed."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        check_size(total, limit)
        yield chunk


def _decode(raw: bytes, number: int) -> str:
    """Strict UTF-8 (a leading BOM allowed); FileError for any other bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(
            f"line {number} is not valid UTF-8 (byte {exc.start}); save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff") if number == 1 else text


def decode_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str | LongLine]]:
    """The file's lines numbered from 1: text, or a LongLine where one was over the limit."""
    for number, raw in enumerate(split_lines(chunks), start=1):
        yield number, raw if isinstance(raw, LongLine) else _decode(raw, number)


def read_jobs(
    chunks: Iterable[bytes], extension: str, *, max_jobs: int, max_file_bytes: int
) -> Iterator[ParsedLine]:
    """Yield every job of a file (valid or not); raise FileError for a file that can't be read whole.

    Each job yielded has an id of its own in the file: one that collides is filed under its line instead.
    """
    stream = _bounded(chunks, size_limit(extension, max_file_bytes))
    seen: dict[str, int] = {}
    count = 0
    parsed_lines = _json(stream) if extension == ".json" else _BY_LINE[extension](decode_lines(stream))
    for parsed in parsed_lines:
        count += 1
        if count > max_jobs:
            raise FileError(f"more than {max_jobs} jobs in one file: split it into smaller files")
        yield _own_record(parsed, seen)
    if count == 0:
        raise FileError("the file holds no jobs")


def collision_id(line: int) -> str:
    """Where a job whose id is taken is filed: its line, with a `..` no job's own id may hold."""
    return f"line{line:05d}..duplicate"


def _own_record(parsed: ParsedLine, seen: dict[str, int]) -> ParsedLine:
    """Two jobs of a file never share an id (valid or not): the second would overwrite the first's record."""
    first = seen.setdefault(parsed.id, parsed.line)
    if first == parsed.line:
        return parsed
    name = collision_id(parsed.line)
    note = f"its id {parsed.id!r} is already used by the job at line {first}, so its record is {name}"
    if parsed.error is None:
        error = InvalidJobError("id", f"{note}; give each job an id of its own")
    else:
        field = parsed.error.field
        error = InvalidJobError(field, f"{parsed.error.detail.removeprefix(f'{field}: ')} ({note})")
    seen[name] = parsed.line
    return ParsedLine(parsed.line, name, None, error)


def _job(line: int, obj: Any, number: int, defaults: dict[str, Any] | None = None) -> ParsedLine:
    """One job from its JSON value; whatever is wrong with it (or whatever goes wrong) is its own error."""
    fallback = default_id(number)
    try:
        job = parse_job(obj, defaults=defaults, fallback_id=fallback)
    except InvalidJobError as error:
        return _bad(line, error, salvage(obj, "id", fallback))
    except Exception as exc:  # a bug must cost one line, never the file's other lines
        return _bad(line, InvalidJobError("", f"could not be read ({type(exc).__name__})"), fallback)
    assert job.id is not None
    if job.batch is not None:
        return _bad(line, InvalidJobError("batch", "a prompt file's batch is its name; remove it"), job.id)
    return ParsedLine(line, job.id, job, openai_batch=isinstance(obj, dict) and "custom_id" in obj)


def _bad(line: int, error: InvalidJobError, job_id: str | None = None) -> ParsedLine:
    return ParsedLine(line, job_id or default_id(line), None, error)


def _too_long(number: int, line: LongLine) -> ParsedLine:
    return _bad(
        number,
        InvalidJobError(
            "", f"the line is {line.size} bytes, over the limit of {MAX_LINE_BYTES} for one line"
        ),
    )


def _txt(lines: Iterable[tuple[int, str | LongLine]]) -> Iterator[ParsedLine]:
    for number, text in lines:
        if isinstance(text, LongLine):
            yield _too_long(number, text)
            continue
        prompt = text.strip()
        if prompt and not prompt.startswith("#"):
            yield _job(number, {"prompt": prompt}, number)


def _jsonl(lines: Iterable[tuple[int, str | LongLine]]) -> Iterator[ParsedLine]:
    for number, text in lines:
        if isinstance(text, LongLine):
            yield _too_long(number, text)
        elif text.strip():
            try:
                obj = loads(text)
            except InvalidJobError as error:
                yield _bad(number, error)
                continue
            yield _job(number, obj, number)


def _json(chunks: Iterable[bytes]) -> Iterator[ParsedLine]:
    """A `.json` file is one document: it is parsed whole (its size bounded by `size_limit`)."""
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileError(f"line {line} is not valid UTF-8; save the file as UTF-8") from None
    del data
    try:
        doc = loads(text)
    except InvalidJobError as error:
        raise FileError(error.detail) from None
    del text
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


def _csv(lines: Iterable[tuple[int, str | LongLine]]) -> Iterator[ParsedLine]:
    numbered = iter(lines)
    current = [0]

    def texts() -> Iterator[str]:
        for number, text in numbered:
            current[0] = number
            if isinstance(text, LongLine):  # a row may span lines: past a skipped one, no row can be told
                raise FileError(f"line {number} is {text.size} bytes, over the limit of {MAX_LINE_BYTES}")
            yield text + "\n"  # a quoted cell may span lines: csv needs the line ends back

    reader = csv.DictReader(texts(), strict=True)
    try:
        header = reader.fieldnames
        if not header or ("prompt" not in header and "messages" not in header):
            raise FileError("a CSV file needs a header row with a 'prompt' column")
        # a misspelt column would fail every row alike: say it once, for the file
        unknown = [name for name in header if name and name not in JobSpec.model_fields]
        if unknown:
            raise FileError(
                f"the header's column {', '.join(map(repr, unknown))} is not a job field "
                f"(columns: {', '.join(JobSpec.model_fields)})"
            )
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
    """Empty cells are absent; JSON and number columns are parsed; more cells than the header is an error."""
    if None in row:
        raise InvalidJobError("", "the row has more cells than the header")
    obj: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or value == "":
            continue
        if name in CSV_NUMBER_COLUMNS:
            try:
                obj[name] = loads(value)
            except InvalidJobError:
                raise InvalidJobError(name, f"must be a number, not {value[:40]!r}") from None
        elif name in CSV_JSON_COLUMNS and value.lstrip()[:1] in "[{":
            try:
                obj[name] = loads(value)
            except InvalidJobError as error:
                raise InvalidJobError(name, error.detail) from None
        elif name == "images":
            obj[name] = value.split()
        else:
            obj[name] = value
    return obj


_BY_LINE = {".txt": _txt, ".jsonl": _jsonl, ".csv": _csv}
