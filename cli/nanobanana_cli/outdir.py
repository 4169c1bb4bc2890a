"""The output directory of a local run: each result copied in as its job ends, and what a rerun skips.

A job's images are written before its record, and every file through a temporary name: a record in
the directory always means its images are there, even after Ctrl-C. That is what lets the same command
resume: a job whose record here says succeeded is not generated again (it was paid for once already).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError

from nanobanana.batches import COMPLETION_FILES
from nanobanana.messages import read_message
from nanobanana.storage import OUTPUTS_PREFIX, output_key
from nanobanana_cli.report import is_record
from nanobanana_cli.stack import REGION


def job_of(record: dict[str, Any]) -> tuple[str, str]:
    """(batch, id) of a jobs-queue record, read exactly as the Generate function reads it."""
    work = read_message(SQSRecord(record))
    return work.batch, work.id


class OutputDir:
    """`DIR/<batch>/<id>.json` and images, mirrored from the bucket's `outputs/` by a thread of its own.

    `records` holds the record files of this run: those copied in, and those of jobs skipped as already
    succeeded. The report and the gallery read exactly these, not whatever else DIR may hold.
    """

    def __init__(self, root: Path, bucket: str) -> None:
        self.root = root
        self.bucket = bucket
        self.s3 = boto3.client("s3", region_name=REGION)
        self.records: set[Path] = set()
        self.copied: set[str] = set()
        self._etags: dict[str, str] = {}
        self._lock = threading.Lock()
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="output-mirror", daemon=True)
        self._thread.start()

    # -- what is already here ------------------------------------------------------------------------

    def path_of(self, key: str) -> Path:
        """Where an `outputs/` key goes; a key that would leave the directory is refused."""
        path = self.root / key.removeprefix(OUTPUTS_PREFIX)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"output key outside the output directory: {key!r}")
        return path

    def succeeded(self, batch: str, job_id: str) -> bool:
        """Whether DIR holds a succeeded record of this job (then its images are there too)."""
        path = self.path_of(output_key(batch, f"{job_id}.json"))
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        images = [self.path_of(str(key)) for key in record.get("images") or []]
        if record.get("status") != "succeeded" or not all(image.is_file() for image in images):
            return False
        with self._lock:
            self.records.add(path)
        return True

    def forget_completion(self, batch: str) -> None:
        """A run over this batch again makes its completion files of an earlier run stale."""
        for name in COMPLETION_FILES:
            self.path_of(output_key(batch, name)).unlink(missing_ok=True)

    # -- copying in ----------------------------------------------------------------------------------

    def job_ended(self, batch: str, job_id: str) -> None:
        """Copy the job's record (if it has one by now) and its images (the batch's files come at flush)."""
        self._tasks.put(lambda: self._copy_job(batch, job_id))

    def batch_changed(self, batch: str | None = None) -> None:
        """Copy whatever is new under the batch's folder (every batch's with None)."""
        prefix = OUTPUTS_PREFIX if batch is None else output_key(batch, "")
        self._tasks.put(lambda: self._sync(prefix))

    def flush(self) -> None:
        """Copy everything still new, and wait until it is all in DIR."""
        self.batch_changed()
        done = threading.Event()
        self._tasks.put(done.set)
        done.wait()

    def close(self) -> None:
        self._tasks.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            task()

    def _copy_job(self, batch: str, job_id: str) -> None:
        key = output_key(batch, f"{job_id}.json")
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return  # no record yet: the job was given back to the queue
        body = got["Body"].read()
        try:
            images = [str(image) for image in json.loads(body).get("images") or []]
        except (ValueError, AttributeError):
            images = []
        for image in images:
            self._download(image)
        self._write(key, body, str(got.get("ETag", "")))

    def _sync(self, prefix: str) -> None:
        """Download every object under `prefix` whose ETag is new, records after the images they name."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        items = [item for page in pages for item in page.get("Contents", [])]
        new = [item for item in items if self._etags.get(item["Key"]) != item.get("ETag")]
        for item in sorted(new, key=lambda item: item["Key"].endswith(".json")):
            self._download(item["Key"])

    def _download(self, key: str) -> None:
        got = self.s3.get_object(Bucket=self.bucket, Key=key)
        self._write(key, got["Body"].read(), str(got.get("ETag", "")))

    def _write(self, key: str, body: bytes, etag: str) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(body)
        os.replace(partial, path)
        with self._lock:
            self._etags[key] = etag
            self.copied.add(key)
            if is_record(path.name):
                self.records.add(path)  # a job's record, or a file's ingest error
