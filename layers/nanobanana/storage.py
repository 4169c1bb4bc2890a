"""S3 access: streaming prompt files, reading input images, writing outputs with retries.

Paid-for images are written with retries inside the invocation's deadline: an image that was paid for
must not be lost to a passing S3 error.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from nanobanana.errors import ErrorType, PipelineError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

OUTPUTS_PREFIX = "outputs/"
INPUTS_PREFIX = "inputs/"
#: What a prompt file that cannot be read leaves in its batch folder instead of jobs.
INGEST_ERROR_FILE = "_ingest_error.json"
WRITE_ATTEMPTS = 5
#: What a prompt file is read in: a few reads per megabyte, a bounded buffer.
READ_CHUNK_BYTES = 256 * 1024


class Storage:
    """The pipeline's bucket: prompts/ and inputs/ are read, outputs/ is written."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def open_chunks(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        """Stream a prompt file in chunks (never whole), pinned to the event's version when known.

        Chunks, not botocore's `iter_lines`, which is quadratic in a line's length: `files` splits lines.
        """
        extra = {"VersionId": version_id} if version_id else {}
        response = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)  # type: ignore[arg-type]
        chunks: Iterator[bytes] = response["Body"].iter_chunks(READ_CHUNK_BYTES)
        return chunks

    def version_of(self, key: str) -> str:
        """The current upload of a key: its version id in a versioned bucket, else its etag."""
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        return head.get("VersionId") or head["ETag"].strip('"')

    def read_input(self, ref: str, max_bytes: int) -> bytes:
        """An input image by key in this bucket or `s3://bucket/key`; INPUT_ERROR if missing or too big.

        In this bucket only `inputs/` is read, as the deployed role allows: the same answer locally.
        """
        bucket, key = (ref[5:].split("/", 1)) if ref.startswith("s3://") else (self.bucket, ref)
        if bucket == self.bucket and not key.startswith(INPUTS_PREFIX):
            raise PipelineError(
                ErrorType.INPUT_ERROR,
                f"input image {ref} is not under {INPUTS_PREFIX}: the pipeline reads input images only there",
            )
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
            if head["ContentLength"] > max_bytes:
                raise PipelineError(
                    ErrorType.INPUT_ERROR,
                    f"input image {ref} is {head['ContentLength']} bytes, over {max_bytes}",
                )
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise PipelineError(
                ErrorType.INPUT_ERROR, f"input image {ref} could not be read ({code})"
            ) from None

    def get_json(self, key: str) -> dict[str, Any] | None:
        """A JSON object this pipeline wrote (a result record), or None if there is none."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        obj = json.loads(body)
        return obj if isinstance(obj, dict) else None

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def put_json(self, key: str, obj: dict[str, Any]) -> None:
        self.put(key, json_bytes(obj), "application/json")

    def put_with_retries(self, key: str, body: bytes, content_type: str, *, budget: float) -> None:
        """Write, retrying with backoff for at most `budget` seconds: what was paid for is kept."""
        give_up = time.monotonic() + budget
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                self.put(key, body, content_type)
                return
            except (ClientError, BotoCoreError):
                wait = random.uniform(0, min(8.0, 0.2 * 2**attempt))
                if attempt == WRITE_ATTEMPTS or time.monotonic() + wait > give_up:
                    raise
                time.sleep(wait)


def file_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """A local file read as a prompt file is read from S3: in bounded chunks, never a line at a time."""
    return iter(lambda: stream.read(READ_CHUNK_BYTES), b"")


def json_bytes(obj: dict[str, Any]) -> bytes:
    """Result records as people read them: UTF-8, indented."""
    return json.dumps(obj, ensure_ascii=False, indent=2).encode()


def output_key(batch: str, name: str) -> str:
    return f"{OUTPUTS_PREFIX}{batch}/{name}"
