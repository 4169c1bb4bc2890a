"""Jobs: the contract's job object, OpenAI Batch lines and file defaults, validated declaratively.

Every way a job can be written ends as one `Job`; anything else ends as an `InvalidJobError` that names
the field, so that a bad job is explained in its result record and never sent to the gateway. Types are
strict (`"1"` is not a number): a job is JSON, whose numbers are numbers.

A stranger's JSON is bounded before it is validated (`loads`, `check_values`): nesting depth, the digits
of a number, values no JSON encoder can write back (NaN, infinities, lone surrogates). Past a bound the
job is invalid, like any other bad field; nothing a job holds can make its reader raise anything else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from nanobanana.errors import InvalidJobError

# `\Z`, not `$`: `$` also matches before a trailing newline.
ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}\Z"
#: Names the output layout uses for itself (`_batch.json` ...): no job may be filed under them. Compared
#: without case, since results are also copied to file systems that ignore it.
RESERVED_IDS = frozenset({"_ingest_error", "_batch", "_results", "_failed", ".", ".."})
#: Bounds on one job's JSON: objects and lists nested at most this deep (the job itself is level 1) ...
MAX_DEPTH = 32
#: ... and a number written with at most this many characters (int() refuses past 4,300 digits).
MAX_NUMBER_CHARS = 64
AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
ImageSize = Literal["1K", "2K", "4K"]


def _own_file_name(value: str) -> str:
    """An id names the job's output files: never a parent folder, never one of the pipeline's own files."""
    if ".." in value:
        raise ValueError("must not contain '..'")
    if value.lower() in RESERVED_IDS:
        raise ValueError(f"{value!r} is a name the pipeline uses for its own files; choose another id")
    return value


JobId = Annotated[str, StringConstraints(pattern=ID_PATTERN), AfterValidator(_own_file_name)]
# An input image: a key in the pipeline's bucket, s3://bucket/key, or an https:// URL.
ImageRef = Annotated[
    str,
    StringConstraints(
        pattern=r"^(https://\S+|s3://[a-z0-9.-]{3,63}/\S+|(?![a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]\S*)\Z"
    ),
]
# An output folder name: path segments without control characters, no empty, `.` or `..` segment.
BatchName = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?!.*(^|/)\.{1,2}(/|$))[^\x00-\x1f\x7f/]+(/[^\x00-\x1f\x7f/]+)*\Z", max_length=512
    ),
]

DEFAULT_SQS_BATCH = "sqs"


class ChatMessage(BaseModel):
    """An OpenAI chat message; content is text or a list of parts (text, image_url)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]]


class JobSpec(BaseModel):
    """A job as users write it (the contract's "Jobs" table). Unknown fields are errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, regex_engine="python-re", strict=True, allow_inf_nan=False
    )

    id: JobId | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    images: Annotated[list[ImageRef], Field(max_length=16)] = []
    model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    seed: int | None = None
    aspect_ratio: AspectRatio | None = None
    image_size: ImageSize | None = None
    batch: BatchName | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> JobSpec:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("exactly one of prompt or messages is required")
        return self


class Job(JobSpec):
    """A validated job. `options` holds other gateway parameters of an OpenAI Batch line's body."""

    options: dict[str, Any] = {}


class BatchBody(BaseModel):
    """The body of an OpenAI Batch line: known fields are checked, other gateway parameters pass."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)

    model: str | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    seed: int | None = None
    stream: Literal[False] | None = None


class BatchLine(BaseModel):
    """An OpenAI Batch API input line."""

    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re", strict=True)

    custom_id: JobId
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: BatchBody


#: What a value of these fields must look like, said instead of the regular expression.
PATTERN_HINTS = {
    "id": "must be 1 to 128 of A-Z a-z 0-9 . _ - (no '/', spaces or control characters)",
    "custom_id": "must be 1 to 128 of A-Z a-z 0-9 . _ - (no '/', spaces or control characters)",
    "images": "must be a key in the pipeline's bucket, s3://bucket/key or an https:// URL",
    "batch": "must be a folder name: parts between '/', none empty, '.' or '..', no control characters",
}


def _field_error(exc: ValidationError, prefix: str = "") -> InvalidJobError:
    """The first problem of a pydantic error, as `field: what is wrong`."""
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]] or ["prompt"]  # the only model-level rule: prompt/messages
    field = prefix + ".".join(loc)
    if err["type"] == "extra_forbidden":
        return InvalidJobError(field if loc[-1] else f"{field}''", "unknown field")
    if err["type"] == "string_pattern_mismatch" and loc[0] in PATTERN_HINTS:
        return InvalidJobError(field, PATTERN_HINTS[loc[0]])
    return InvalidJobError(field, err["msg"].removeprefix("Value error, "))


@dataclass(frozen=True)
class _Unwritable:
    """A JSON value no job may hold (a number too long, NaN): kept in place, so that only its job fails."""

    problem: str


def _parse_int(text: str) -> int | _Unwritable:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unwritable(f"a number of {len(text)} digits, over the limit of {MAX_NUMBER_CHARS}")
    return int(text)


def _parse_float(text: str) -> float | _Unwritable:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unwritable(f"a number of {len(text)} characters, over the limit of {MAX_NUMBER_CHARS}")
    value = float(text)
    return value if math.isfinite(value) else _Unwritable(f"{text} is out of range for a number")


def _parse_constant(name: str) -> _Unwritable:
    return _Unwritable(f"{name} is not a number: JSON has no NaN or Infinity")


def loads(text: str) -> Any:
    """JSON with bounded numbers; InvalidJobError for text that is not JSON or nests past Python's stack.

    Numbers past the bounds and NaN parse as markers that `check_values` reports as their job's error.
    """
    try:
        return json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except json.JSONDecodeError as exc:
        where = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno} column {exc.colno}"
        raise InvalidJobError("", f"not valid JSON ({exc.msg} at {where})") from None
    except RecursionError:
        raise InvalidJobError("", f"not valid JSON: nested more than {MAX_DEPTH} levels deep") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_values(obj: Any) -> None:
    """Raise InvalidJobError, naming the top-level field, for a value no job may hold (see `loads`).

    Iterative, so that no nesting can exhaust the stack; linear in the object's size.
    """
    stack: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, _Unwritable):
            raise InvalidJobError(field, value.problem)
        if isinstance(value, str) and not value.isascii() and _SURROGATE.search(value):
            raise InvalidJobError(field, "holds a lone UTF-16 surrogate (\\ud800 to \\udfff), not text")
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise InvalidJobError(field, f"nested more than {MAX_DEPTH} levels deep")
        items = value.items() if isinstance(value, dict) else ((field, item) for item in value)
        for key, item in items:
            name = field or str(key)
            stack.append((key, depth, name))  # keys are text too
            stack.append((item, depth + 1, name))


def default_id(number: int) -> str:
    """The id of the n-th job of a file (1-based) when it names none: `00001`."""
    return f"{number:05d}"


def parse_job(obj: Any, *, defaults: dict[str, Any] | None = None, fallback_id: str | None = None) -> Job:
    """Validate one job object (or OpenAI Batch line); raise InvalidJobError naming the field."""
    if not isinstance(obj, dict):
        raise InvalidJobError("", f"a job must be a JSON object, not {_json_type(obj)}")
    check_values(obj)
    if "custom_id" in obj:
        return _from_batch_line(obj)
    data = {**(defaults or {}), **obj}
    if data.get("id") is None and fallback_id is not None:
        data["id"] = fallback_id
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc) from None
    return Job.model_validate(spec.model_dump(exclude_none=True))


def _from_batch_line(obj: dict[str, Any]) -> Job:
    try:
        line = BatchLine.model_validate(obj)
    except ValidationError as exc:
        raise _field_error(exc) from None
    known = {"model", "messages", "temperature", "max_tokens", "seed", "stream"}
    body = line.body.model_dump(exclude_none=True)
    fields = {key: body[key] for key in known - {"stream"} if key in body}
    return Job.model_validate(
        {"id": line.custom_id, **fields, "options": {k: v for k, v in body.items() if k not in known}}
    )


def job_line(job: Job, *, openai_batch: bool) -> dict[str, Any]:
    """A job written back as a line of a prompt file that parses to the same job, id included."""
    if not openai_batch:
        return job.model_dump(mode="json", exclude_defaults=True, exclude={"options"})
    body = job.model_dump(mode="json", include={"model", "messages", "temperature", "max_tokens", "seed"})
    body = {key: value for key, value in body.items() if value is not None}
    return {
        "custom_id": job.id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {**body, **job.options},
    }


def parse_defaults(obj: Any) -> dict[str, Any]:
    """Validate a `.json` file's `defaults`: any job field but `id`, each checked as a job would be."""
    if not isinstance(obj, dict):
        raise InvalidJobError("defaults", "must be a JSON object")
    if "id" in obj:
        raise InvalidJobError("defaults.id", "ids cannot be defaulted")
    check_values({"defaults": obj})
    try:
        JobSpec.model_validate({"prompt": "-", **obj} if "messages" not in obj else obj)
    except ValidationError as exc:
        raise _field_error(exc, "defaults.") from None
    return dict(obj)


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), "a number")


def salvage(obj: Any, field: str, fallback: str) -> str:
    """Where to file an invalid job's result: its own `id` or `batch` if that one is valid, else fallback."""
    value = obj.get(field) if isinstance(obj, dict) else None
    try:
        JobSpec.model_validate({"prompt": "-", field: value})
    except ValidationError:
        return fallback
    return value if isinstance(value, str) else fallback
