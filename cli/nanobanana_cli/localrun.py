"""`nanobanana local`: the whole pipeline on this machine, results in DIR as each job ends.

Ctrl-C once stops handing out jobs and lets the ones in flight finish (their calls are paid for); twice
abandons them. Either way the run ends with its summary and exit status 130, and the same command again
resumes: a job whose record in DIR says succeeded is skipped before it reaches the Generate function.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit

import boto3
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from moto import mock_aws
from tqdm import tqdm

from nanobanana.config import Settings
from nanobanana.errors import InvalidJobError
from nanobanana.files import PROMPTS_PREFIX, FileError, LongLine, batch_name, decode_lines
from nanobanana.guards import GuardStatus, guard_status
from nanobanana.jobs import loads, parse_job
from nanobanana.messages import MAX_MESSAGE_BYTES, read_message
from nanobanana.storage import INPUTS_PREFIX, file_chunks, output_key
from nanobanana_cli.gallery import write_gallery
from nanobanana_cli.outdir import OutputDir, job_of
from nanobanana_cli.progress import LogWatch
from nanobanana_cli.report import (
    COMPLETION_FILE,
    Result,
    dead_lettered,
    format_report,
    load_completions,
    load_results,
    summarize,
    summary_line,
)
from nanobanana_cli.runner import drain, event_source_mappings, messages_in, preserved_environ, sqs_record
from nanobanana_cli.stack import GENERATE_FUNCTION, LOCAL_ENVIRONMENT, REGION, Stack, provision_template
from nanobanana_cli.standin import StandInGateway
from nanobanana_cli.usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError

PROBE_TIMEOUT_SECONDS = 3.0
#: How often the progress line reads the guards' state (a DynamoDB read).
GUARDS_REFRESH_SECONDS = 1.0
STANDIN_API_KEY = "local-stand-in-key"
#: The template's largest batch: one Generate invocation runs up to this many jobs at once.
MAX_BATCH_SIZE = 10


# -- inputs --------------------------------------------------------------------------------------------


def read_messages(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of an --sqs file, numbered; FileError if it is not UTF-8 or a line is huge."""
    lines = []
    with path.open("rb") as stream:
        for number, line in decode_lines(file_chunks(stream)):
            if isinstance(line, LongLine):
                raise FileError(
                    f"line {number} is {line.size} bytes, over the SQS limit of {MAX_MESSAGE_BYTES}"
                )
            if line.strip():
                lines.append((number, line))
    return lines


def check_messages(path: Path) -> Iterator[tuple[int, str | None]]:
    """Each message of an --sqs file with what is wrong with it (None: a valid job), as Generate sees it."""
    for number, line in read_messages(path):
        if len(line.encode()) > MAX_MESSAGE_BYTES:
            yield number, f"the message is over the SQS limit of {MAX_MESSAGE_BYTES} bytes"
            continue
        try:
            parse_job(loads(line), fallback_id=f"line-{number}")
        except InvalidJobError as error:
            yield number, str(error)
            continue
        yield number, None


def _check_arguments(args: argparse.Namespace) -> list[tuple[int, str]]:
    """What can be refused before anything starts; the --sqs messages to send."""
    batches: dict[str, Path] = {}
    for path in args.files:
        other = batches.setdefault(path.name, path)
        if other != path:
            raise UsageError(
                f"{other} and {path} have the same name: both would be prompts/{path.name} (batch "
                f"{batch_name(PROMPTS_PREFIX + path.name)}); rename one or run them separately"
            )
    if args.sqs is None:
        return []
    try:
        return read_messages(args.sqs)
    except FileError as error:
        raise UsageError(f"--sqs {args.sqs}: {error}") from None


# -- the gateway ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    base_url: str
    api_key: str
    standin: bool = False


def _probe(base_url: str) -> None:
    """Fail fast, in one line, rather than after every job has retried against a dead address."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--api-base-url must be an http(s) URL, not {base_url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_SECONDS).close()
    except OSError as error:
        raise UsageError(f"cannot reach the gateway at {base_url}: {error.strerror or error}") from None


@contextlib.contextmanager
def gateway(args: argparse.Namespace) -> Iterator[Gateway]:
    """The user's gateway, probed; or the stand-in, started for the length of the run."""
    if args.api_base_url:
        if not args.api_key:
            raise UsageError("--api-key (or NANOBANANA_API_KEY) is required with --api-base-url")
        _probe(args.api_base_url)
        yield Gateway(args.api_base_url, args.api_key)
        return
    with StandInGateway() as standin:
        print(f"No --api-base-url: the built-in stand-in gateway at {standin.base_url} draws the images")
        yield Gateway(standin.base_url, args.api_key or STANDIN_API_KEY, standin=True)


def environments(concurrency: int) -> tuple[int, int]:
    """(Generate environments, batch size) whose product is exactly `concurrency` gateway calls in flight,
    with batches as big as possible: each invocation has a fixed cost (tens of milliseconds of the one
    CPU that a local run's threads share), so 2 environments of 10 jobs beat 20 of 1."""
    batch = max(size for size in range(1, MAX_BATCH_SIZE + 1) if concurrency % size == 0)
    return concurrency // batch, batch


def parameters(args: argparse.Namespace, used: Gateway) -> dict[str, str]:
    """The template's parameters that the gateway options override."""
    overrides = {
        "ApiBaseUrl": used.base_url,
        "ModelId": args.model,
        "GatewayDialect": args.dialect,
        "GatewayStream": "true" if args.stream else None,
    }
    return {name: value for name, value in overrides.items() if value is not None}


def _budget(args: argparse.Namespace) -> dict[str, str]:
    """A local run ends: a job over its budget fails at once instead of waiting for tomorrow."""
    budget = {} if args.daily_budget is None else {"DailyBudgetUSD": f"{args.daily_budget:g}"}
    return {**budget, "OverBudget": "fail"}


class Throttled:
    """A text recomputed at most every `seconds`, for a progress line that ticks many times a second."""

    def __init__(self, seconds: float, compute: Callable[[], str]) -> None:
        self.seconds = seconds
        self.compute = compute
        self.at = -seconds
        self.text = ""

    def __call__(self) -> str:
        if time.monotonic() - self.at >= self.seconds:
            self.at, self.text = time.monotonic(), self.compute()
        return self.text


def guards_status(stack: Stack) -> GuardStatus:
    """The hook for progress lines and reports: the circuit's state and what is left of today's budget."""
    settings = Settings.from_env(stack.functions[GENERATE_FUNCTION].environment)
    return guard_status(settings, boto3.client("dynamodb", region_name=REGION))


# -- Ctrl-C --------------------------------------------------------------------------------------------


@dataclass
class Interrupts:
    """Ctrl-C as events: `stop` after the first (finish what is in flight), `abandon` after the second."""

    terminal: TextIO
    stop: threading.Event
    abandon: threading.Event

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.abandon.set()
            return
        self.stop.set()
        print(
            "\nStopping: the jobs in flight finish (their calls are paid for); Ctrl-C again abandons them.",
            file=self.terminal,
            flush=True,
        )


@contextlib.contextmanager
def _interrupts(terminal: TextIO) -> Iterator[Interrupts]:
    interrupts = Interrupts(terminal, threading.Event(), threading.Event())
    if threading.current_thread() is not threading.main_thread():
        yield interrupts  # signals reach the main thread only; a caller on another thread has no Ctrl-C
        return
    previous = signal.signal(signal.SIGINT, interrupts.handle)
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the run -------------------------------------------------------------------------------------------


def _upload(stack: Stack, args: argparse.Namespace, messages: Sequence[tuple[int, str]]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    if args.inputs is not None:
        for path in sorted(p for p in args.inputs.rglob("*") if p.is_file()):
            s3.upload_file(str(path), stack.bucket, INPUTS_PREFIX + path.relative_to(args.inputs).as_posix())
    if messages:
        sqs = boto3.client("sqs", region_name=REGION)
        jobs_url = stack.queue(stack.functions[GENERATE_FUNCTION].queue_arn).url
        for _, line in messages:
            sqs.send_message(QueueUrl=jobs_url, MessageBody=line)
    for path in args.files:
        s3.upload_file(str(path), stack.bucket, PROMPTS_PREFIX + path.name)


def _resumable(out: OutputDir) -> Any:
    """Admit a job to Generate only if DIR has no succeeded record of it (it was paid for already)."""

    def admit(record: dict[str, Any]) -> bool:
        try:
            return not out.succeeded(*job_of(record))
        except ValueError:
            return True  # a body Generate itself must reject

    return admit


def _mirror(out: OutputDir, generate: bool) -> Any:
    """After an invocation: copy in what its jobs left (Generate) or its file's batch (Ingest)."""

    def on_complete(invocation: Any, _failed: set[str]) -> None:
        if not generate:
            out.batch_changed()
            return
        for record in invocation.records:
            with contextlib.suppress(ValueError):
                out.job_ended(*job_of(record))

    return on_complete


def _dead_letters(stack: Stack, out: OutputDir) -> tuple[int, list[Result]]:
    """Messages in the dead-letter queues, and a failed result for each whose job left no record."""
    sqs = boto3.client("sqs", region_name=REGION)
    count, orphans = 0, []
    for source in stack.queues.values():
        if source.dead_letter_url is None:
            continue
        seen: set[str] = set()
        while True:
            got = sqs.receive_message(
                QueueUrl=source.dead_letter_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=300,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in got if m["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message["MessageId"])
                count += 1
                orphan = _orphan(dict(message), source.arn, out)
                if orphan is not None:
                    orphans.append(orphan)
    return count, orphans


def _orphan(message: dict[str, Any], queue_arn: str, out: OutputDir) -> Result | None:
    """The failed result of a dead-lettered message, unless its job (or file) has a record in DIR."""
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = None
    records = body.get("Records") if isinstance(body, dict) else None
    if isinstance(records, list) and records and "s3" in records[0]:  # a prompt file's S3 event
        key = str(records[0]["s3"]["object"]["key"])
        batch = batch_name(key)
        if (out.root / batch).is_dir():
            return None
        return dead_lettered(batch, key.rsplit("/", 1)[-1], f"the prompt file {key}")
    work = read_message(SQSRecord(sqs_record(message, queue_arn)))
    if out.path_of(f"{work.batch}/{work.id}.json").is_file():
        return None
    return dead_lettered(work.batch, work.id, f"job {work.id}")


@dataclass(frozen=True)
class Ended:
    """How a run ended: drained (or interrupted, with `unfinished` jobs still queued), jobs skipped as
    already succeeded, messages dead-lettered and the failed results of those that left no record."""

    drained: bool
    skipped: int
    dead_letters: int
    orphans: list[Result]
    unfinished: int


def _run(
    stack: Stack,
    args: argparse.Namespace,
    messages: Sequence[tuple[int, str]],
    out: OutputDir,
    watch: LogWatch,
    interrupts: Interrupts,
    progress: tqdm[Any],
) -> Ended:
    """Drain the queues through the handlers, or stop at Ctrl-C."""
    mappings = event_source_mappings(
        stack,
        environments(args.concurrency)[0],
        admit=_resumable(out),
        on_complete=lambda generate: _mirror(out, generate),
    )
    jobs = next(m for m in mappings if m.function.logical_id == GENERATE_FUNCTION)
    guards = Throttled(GUARDS_REFRESH_SECONDS, lambda: guards_status(stack).describe())

    def tick() -> None:
        done = len(out.records)
        progress.total = done + messages_in(jobs.source.name)
        progress.n = done
        for notice in watch.news():
            progress.write(notice, file=progress.fp)
        progress.set_postfix_str(
            ", ".join(part for part in (f"{jobs.in_flight} in flight", watch.retrying(), guards()) if part),
            refresh=False,
        )
        progress.refresh()

    drained = False
    try:
        _upload(stack, args, messages)
        drained = drain(mappings, tick, interrupts.stop)
    finally:
        for mapping in mappings:
            mapping.stop(interrupts.abandon)
    out.flush()
    if not drained:
        return Ended(False, jobs.skipped, 0, [], messages_in(jobs.source.name))
    count, orphans = _dead_letters(stack, out)
    return Ended(True, jobs.skipped, count, orphans, 0)


def _run_facts(args: argparse.Namespace, used: Gateway, stack: Stack) -> dict[str, str]:
    """What the gallery's header says about the run."""
    environment = stack.functions[GENERATE_FUNCTION].environment
    host = urlsplit(used.base_url).netloc
    return {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": args.model or environment.get("MODEL_ID", ""),
        "gateway": f"{host} (built-in stand-in)" if used.standin else host,
        "dialect": args.dialect or environment.get("GATEWAY_DIALECT", "auto"),
    }


@contextlib.contextmanager
def logs_to(stream: TextIO) -> Iterator[None]:
    """The handlers' print() and their Powertools logger go to `stream`; afterwards the logger writes to
    the caller's stdout. (The logger keeps the stdout of the moment it was made, which an earlier run in
    the same process may have closed since: it is pointed, not flushed, at its new stream.)"""
    from nanobanana.observability import SERVICE  # the logger exists from here on

    handlers = [h for h in logging.getLogger(SERVICE).handlers if isinstance(h, logging.StreamHandler)]

    def point(target: TextIO) -> None:
        for handler in handlers:
            with handler.lock or contextlib.nullcontext():
                handler.stream = target

    point(stream)
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        point(sys.stdout)


def run_local(args: argparse.Namespace) -> int:
    """Run the whole pipeline in-process over the given files; exit 0 only if every job succeeded."""
    messages = _check_arguments(args)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "run.log"
    terminal = sys.stderr
    with (
        gateway(args) as used,
        log_path.open("a", encoding="utf-8") as log,
        preserved_environ(),
        _interrupts(terminal) as interrupts,
    ):
        os.environ.update(LOCAL_ENVIRONMENT)
        watch = LogWatch(log)
        with (
            mock_aws(),
            logs_to(watch),  # type: ignore[arg-type]
            tqdm(total=0, desc="jobs", unit="job", file=terminal, leave=False) as progress,
        ):
            batch_size = str(environments(args.concurrency)[1])
            overrides = {**parameters(args, used), **_budget(args), "BatchSize": batch_size}
            stack = provision_template(overrides, used.api_key)
            out = OutputDir(out_dir, stack.bucket)
            for path in args.files:
                out.forget_completion(batch_name(PROMPTS_PREFIX + path.name))
            try:
                ended = _run(stack, args, messages, out, watch, interrupts, progress)
            finally:
                out.close()
            facts = _run_facts(args, used, stack)
            guards = guards_status(stack)
    results = load_results(out_dir, out.records) + ended.orphans
    completed = {r.batch for r in results if output_key(r.batch, COMPLETION_FILE) in out.copied}
    summary = summarize(
        results, dead_letters=ended.dead_letters, completions=load_completions(out_dir, completed), run=facts
    )
    gallery = write_gallery(out_dir, summary)
    if ended.skipped:
        print(f"{ended.skipped} job(s) already succeeded in {out_dir}: not generated again")
    print(format_report(summary))
    print(f"{'guards':<14}{guards.describe()}")
    print(summary_line(summary))
    print(f"gallery: {gallery}   handler logs: {log_path}")
    if not ended.drained:
        print(
            f"Interrupted with {ended.unfinished} queued job(s) not finished: what finished is in "
            f"{out_dir}; run the same command again to do the rest.",
            file=terminal,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED
