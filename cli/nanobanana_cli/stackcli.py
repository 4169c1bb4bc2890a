"""The stack commands: submit, status, watch, fetch, retry and empty-bucket, for a deployed stack or `up`'s.

Each finds the stack's bucket and batches table through its outputs (`outputs.describe`). A run is one
upload of a prompt file (its S3 version): its numbers are the batches table's item for (batch, upload),
counted by the pipeline itself as each job ends; the files are in S3 under `outputs/<batch>/`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from nanobanana.batches import COMPLETED, FAILED_FILE, BatchStatus, BatchTable, RunKey
from nanobanana.files import PROMPTS_PREFIX, FileError, batch_name, extension_of
from nanobanana.storage import INGEST_ERROR_FILE, Storage, output_key
from nanobanana_cli.gallery import write_gallery
from nanobanana_cli.outputs import StackError, Target, connect, describe, explain
from nanobanana_cli.report import is_record, load_completions, load_results, summarize, summary_line

BATCHES_OUTPUT = "BatchesTableName"
#: How often `watch` reads the batch's state.
WATCH_INTERVAL_SECONDS = 1.0
#: S3's DeleteObjects takes at most this many keys.
DELETE_CHUNK = 1000
EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class Remote:
    """A stack found through its outputs: the bucket every command works in."""

    target: Target
    outputs: dict[str, str]
    s3: Any

    @property
    def bucket(self) -> str:
        return self.outputs["BucketName"]

    @classmethod
    def find(cls, args: argparse.Namespace) -> Remote:
        target = connect(args.stack, args.endpoint_url, args.region)
        outputs = describe(target)
        if "BucketName" not in outputs:
            raise StackError(
                f"stack {target.name} has no BucketName output: is it a Nano Banana Pipeline stack?"
            )
        return cls(target, outputs, target.client("s3"))

    @property
    def table(self) -> BatchTable:
        """The runs' numbers, as the pipeline counts them."""
        if BATCHES_OUTPUT not in self.outputs:
            raise StackError(
                f"stack {self.target.name} has no {BATCHES_OUTPUT} output: it predates batch status; "
                "update it with `sam build && sam deploy`"
            )
        return BatchTable(self.outputs[BATCHES_OUTPUT], self.target.client("dynamodb"))

    def keys(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def json(self, key: str) -> dict[str, Any] | None:
        """An object read as JSON, or None when there is no such key."""
        return Storage(self.s3, self.bucket).get_json(key)


# -- runs and their progress ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One upload of a prompt file: what the pipeline runs as a whole."""

    batch: str
    key: str
    upload: str


@dataclass(frozen=True)
class Progress:
    total: int | None  # None: not known yet
    succeeded: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    completed: bool = False
    rejected: str | None = None  # why the file was refused whole (_ingest_error.json)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed

    @property
    def in_flight(self) -> int:
        return max(0, self.total - self.ended) if self.total is not None else 0

    def line(self) -> str:
        if self.rejected is not None:
            return f"rejected: {self.rejected}"
        if self.total is None:
            return "waiting: the file has not been read yet"
        state = "completed" if self.completed else "in progress"
        return (
            f"{state:<11}  {self.total} jobs: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.in_flight} in flight, est. cost ${self.cost_usd:.4f}"
        )


def _upload_of(head: dict[str, Any]) -> str:
    """An upload's identity as the pipeline keys it: the version id in a versioned bucket, else the etag."""
    return str(head.get("VersionId") or head["ETag"].strip('"'))


def find_run(remote: Remote, batch: str) -> Run:
    """The latest upload of the batch's prompt file, or a StackError that says where to look."""
    files = [item for item in remote.keys(PROMPTS_PREFIX + batch + ".") if batch_name(item["Key"]) == batch]
    if not files:
        raise StackError(
            f"no batch {batch!r} in s3://{remote.bucket}: no prompt file prompts/{batch}.* "
            "(`nanobanana status` lists the batches)"
        )
    latest = max(files, key=lambda item: item["LastModified"])
    return _current_run(remote, batch, latest["Key"])


def _current_run(remote: Remote, batch: str, key: str) -> Run:
    head = remote.s3.head_object(Bucket=remote.bucket, Key=key)
    return Run(batch, key, _upload_of(head))


def progress(remote: Remote, run: Run) -> Progress:
    """A run's numbers from the batches table, where the pipeline counts each job's end once; a file refused
    whole has no run there, only its `_ingest_error.json`."""
    status = remote.table.get(RunKey(run.batch, run.upload))
    if status is not None:
        return progress_of(status)
    rejected = remote.json(output_key(run.batch, INGEST_ERROR_FILE))
    if rejected is not None and str(rejected.get("upload")) == run.upload:
        error = rejected.get("error") or {}
        return Progress(total=0, completed=True, rejected=str(error.get("message", error)))
    return Progress(total=None)


def progress_of(status: BatchStatus) -> Progress:
    return Progress(
        total=status.total,
        succeeded=status.succeeded,
        failed=status.failed,
        cost_usd=status.cost_usd,
        completed=status.status == COMPLETED,
        errors=dict(status.errors),
    )


# -- the commands --------------------------------------------------------------------------------------


def submit(remote: Remote, files: list[Path], batch: str | None, wait: bool) -> int:
    """Upload each file under prompts/; with `wait`, watch every run to its end."""
    if batch is not None and len(files) != 1:
        raise StackError("--batch names the batch of one file: give one FILE with it")
    runs = []
    for path in files:
        if not path.is_file():
            raise StackError(f"no such file: {path}")
        try:
            extension_of(path.name)
        except FileError as error:
            raise StackError(f"{path}: {error}") from None
        name = batch.strip("/") if batch else path.stem
        key = f"{PROMPTS_PREFIX}{name}{path.suffix.lower()}"
        remote.s3.upload_file(str(path), remote.bucket, key)
        run = _current_run(remote, name, key)
        runs.append(run)
        print(f"{path} -> s3://{remote.bucket}/{key}   batch {name}   upload {run.upload}")
    if not wait:
        return EXIT_OK
    return max(watch_run(remote, run) for run in runs)


def status(remote: Remote, batch: str | None) -> int:
    """Every run (one upload of a prompt file), newest first, with its counts; BATCH: that batch's runs."""
    runs = remote.table.read_status(batch)
    if batch is not None and not runs:  # never submitted (an error), not read yet, or refused whole
        print(f"{batch}  {progress(remote, find_run(remote, batch)).line()}")
        return EXIT_OK
    if not runs:
        print("no runs yet: `nanobanana submit FILE` starts one")
    width = max((len(run.batch) for run in runs), default=0)
    for run in runs:
        print(f"{run.batch:<{width}}  {run.created_at[:19]}  {progress_of(run).line()}")
    if batch is not None and runs[0].errors:
        print("errors: " + ", ".join(f"{kind} {count}" for kind, count in sorted(runs[0].errors.items())))
    return EXIT_OK


def watch_run(remote: Remote, run: Run, interval: float = WATCH_INTERVAL_SECONDS) -> int:
    """A progress bar until the run has ended; 0 when every job succeeded."""
    with tqdm(total=0, desc=run.batch, unit="job", file=sys.stderr, leave=False) as bar:
        while True:
            now = progress(remote, run)
            bar.total = now.total or 0
            bar.n = now.ended
            bar.set_postfix_str(
                f"{now.succeeded} succeeded, {now.failed} failed, {now.in_flight} in flight, "
                f"${now.cost_usd:.4f}"
            )
            if now.completed:
                break
            time.sleep(interval)
    if now.rejected is not None:
        print(f"{run.batch}: the file was rejected whole: {now.rejected}")
        return EXIT_FAILED
    print(f"{run.batch}: {now.succeeded} succeeded, {now.failed} failed, est. cost ${now.cost_usd:.4f}")
    return EXIT_OK if now.failed == 0 else EXIT_FAILED


def watch(remote: Remote, batch: str) -> int:
    return watch_run(remote, find_run(remote, batch))


def fetch(remote: Remote, batch: str, out_dir: Path) -> int:
    """Download the batch folder (images, records, completion files) and write the gallery over it."""
    folder = output_key(batch, "")
    items = [item for item in remote.keys(folder) if "/" not in item["Key"].removeprefix(folder)]
    if not items:
        raise StackError(
            f"no batch {batch!r} in s3://{remote.bucket}: nothing under {folder} "
            "(`nanobanana status` lists the batches)"
        )
    records = []
    for item in items:
        name = item["Key"].removeprefix(folder)
        target = out_dir / batch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        remote.s3.download_file(remote.bucket, item["Key"], str(target))
        if is_record(name):
            records.append(target)
    summary = summarize(load_results(out_dir, records), completions=load_completions(out_dir, [batch]))
    gallery = write_gallery(out_dir, summary)
    print(f"{len(items)} files from s3://{remote.bucket}/{folder} -> {out_dir / batch}")
    print(summary_line(summary))
    print(f"gallery: {gallery}")
    return EXIT_OK


def retry(remote: Remote, batch: str, wait: bool) -> int:
    """Upload the batch's `_failed.jsonl` as a new run of the same batch (same ids, same folder)."""
    find_run(remote, batch)  # the batch exists
    key = output_key(batch, FAILED_FILE)
    try:
        body: bytes = remote.s3.get_object(Bucket=remote.bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        raise StackError(
            f"batch {batch!r} has no {FAILED_FILE} yet: it is written when the run completes "
            f"(`nanobanana watch {batch}`)"
        ) from None
    if not body.strip():
        print(f"nothing to retry: no failed job in batch {batch}")
        return EXIT_OK
    prompt_key = f"{PROMPTS_PREFIX}{batch}.jsonl"
    remote.s3.put_object(Bucket=remote.bucket, Key=prompt_key, Body=body)
    run = _current_run(remote, batch, prompt_key)
    jobs = len(body.strip().splitlines())
    print(f"{jobs} failed jobs -> s3://{remote.bucket}/{prompt_key}   batch {batch}   upload {run.upload}")
    return watch_run(remote, run) if wait else EXIT_OK


def empty_bucket(remote: Remote, yes: bool) -> int:
    """Delete every object version and delete marker: `sam delete` cannot remove a bucket that holds any."""
    versions = []
    for page in remote.s3.get_paginator("list_object_versions").paginate(Bucket=remote.bucket):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            versions.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    if not yes:
        print(
            f"s3://{remote.bucket} holds {len(versions)} object versions and delete markers; "
            "run again with --yes to delete them all (this cannot be undone)"
        )
        return EXIT_FAILED
    for start in range(0, len(versions), DELETE_CHUNK):
        chunk = versions[start : start + DELETE_CHUNK]
        answer = remote.s3.delete_objects(Bucket=remote.bucket, Delete={"Objects": chunk, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise StackError(f"could not delete {first.get('Key')}: {first.get('Message')}")
    print(f"emptied s3://{remote.bucket} ({len(versions)} versions and delete markers)")
    print(
        f"then: sam delete --stack-name {remote.target.name} && aws s3api delete-bucket --bucket "
        f"{remote.bucket}   (the stack keeps its bucket)"
    )
    return EXIT_OK


# -- the command line ----------------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Register the stack commands on the `nanobanana` parser's subcommands."""

    def command(name: str, help: str, run: Callable[[Remote, argparse.Namespace], int]) -> Any:
        parser = commands.add_parser(name, help=help, description=help)
        parser.add_argument(
            "--stack", metavar="NAME", help="the stack's name (default: stack_name in samconfig.toml)"
        )
        parser.add_argument(
            "--endpoint-url",
            metavar="URL",
            help="the offline stack of `nanobanana up` (default: AWS_ENDPOINT_URL; unset: AWS)",
        )
        parser.add_argument("--region", help="the stack's region (default: AWS_REGION or your AWS config)")
        parser.set_defaults(stack_command=run)
        return parser

    submit_parser = command(
        "submit",
        "upload prompt files under prompts/ (one run each)",
        lambda remote, args: submit(remote, args.files, args.batch, args.wait),
    )
    submit_parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    submit_parser.add_argument("--batch", metavar="NAME", help="the batch name (default: the file's name)")
    submit_parser.add_argument("--wait", action="store_true", help="watch each run until it has ended")
    status_parser = command(
        "status", "the batches' runs, in progress and done, with counts", lambda r, a: status(r, a.batch)
    )
    status_parser.add_argument("batch", nargs="?", metavar="BATCH")
    watch_parser = command(
        "watch",
        "a progress bar until the batch's run has ended (exit 1 if a job failed)",
        lambda r, a: watch(r, a.batch),
    )
    watch_parser.add_argument("batch", metavar="BATCH")
    fetch_parser = command(
        "fetch",
        "download a batch's images, records and completion files, and write its gallery",
        lambda r, a: fetch(r, a.batch, a.out),
    )
    fetch_parser.add_argument("batch", metavar="BATCH")
    fetch_parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    retry_parser = command(
        "retry", "upload the batch's _failed.jsonl as a new run", lambda r, a: retry(r, a.batch, a.wait)
    )
    retry_parser.add_argument("batch", metavar="BATCH")
    retry_parser.add_argument("--wait", action="store_true", help="watch the new run until it has ended")
    empty_parser = command(
        "empty-bucket",
        "delete every object version of the stack's bucket, so that `sam delete` can remove it",
        lambda r, a: empty_bucket(r, a.yes),
    )
    empty_parser.add_argument("--yes", action="store_true", help="really delete (it cannot be undone)")


def run_command(args: argparse.Namespace) -> int:
    """Find the stack, run the command; an AWS error a user can fix becomes one line (StackError)."""
    remote = Remote.find(args)
    try:
        result: int = args.stack_command(remote, args)
    except (ClientError, BotoCoreError) as error:
        raise StackError(explain(error, remote.target)) from None
    return result
