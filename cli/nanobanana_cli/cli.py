"""`nanobanana`: run the pipeline offline (`local`, `up`), validate prompt files (`check`), drive a stack.

The stack commands (submit, status, watch, fetch, retry, empty-bucket) are in `stackcli`, `up` in `up`.

Errors a user can fix (a missing file, a bad flag, an unreachable gateway) are one line and exit 2;
tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import boto3
from moto import mock_aws
from tqdm import tqdm

from nanobanana.config import Settings
from nanobanana.errors import InvalidJobError
from nanobanana.files import (
    PROMPTS_PREFIX,
    FileError,
    batch_name,
    check_batch,
    check_size,
    extension_of,
    read_jobs,
    size_limit,
)
from nanobanana.ingest import message_body
from nanobanana.storage import INPUTS_PREFIX, OUTPUTS_PREFIX, READ_CHUNK_BYTES
from nanobanana_cli.gallery import write_gallery
from nanobanana_cli.outputs import StackError
from nanobanana_cli.report import format_report, load_results, summarize, summary_line
from nanobanana_cli.runner import drain, event_source_mappings, preserved_environ, queue_depth
from nanobanana_cli.stack import GENERATE_FUNCTION, LOCAL_ENVIRONMENT, REGION, Stack, provision_template
from nanobanana_cli.stackcli import add_commands, run_command
from nanobanana_cli.standin import StandInGateway
from nanobanana_cli.up import DEFAULT_PORT, up

PROBE_TIMEOUT_SECONDS = 3.0
STANDIN_API_KEY = "local-stand-in-key"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Something the user can fix: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def _existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {value}")
    return path


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return number


def _price(value: str) -> float:
    price = float(value)
    if not math.isfinite(price) or price < 0:
        raise argparse.ArgumentTypeError(f"must be a price in USD, 0 or more, not {value}")
    return price


def _parser() -> _Parser:
    parser = _Parser(prog="nanobanana", description="Nano Banana batch image pipeline, offline tools.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    local = commands.add_parser(
        "local", help="run the pipeline offline: moto plays AWS, the real handlers do the work"
    )
    local.add_argument("files", nargs="+", type=_existing_file, metavar="FILE", help="prompt files")
    local.add_argument(
        "--sqs", type=_existing_file, metavar="FILE.jsonl", help="one jobs-queue message a line"
    )
    local.add_argument("--out", required=True, type=Path, metavar="DIR", help="where outputs are copied")
    _gateway_options(local)
    local.add_argument("--inputs", type=_existing_dir, metavar="DIR", help="uploaded under inputs/")
    serve = commands.add_parser(
        "up", help="the offline stack as a service on 127.0.0.1, for any AWS client (Ctrl-C stops it)"
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="moto's port (0: any free port)")
    serve.add_argument("--stack", metavar="NAME", help="the name its outputs are registered under")
    serve.add_argument("--log", type=Path, default=Path("out/up.log"), metavar="FILE", help="handler logs")
    _gateway_options(serve)
    add_commands(commands)
    check = commands.add_parser("check", help="validate prompt files as ingest would, offline")
    check.add_argument("files", nargs="+", type=_existing_file, metavar="FILE")
    check.add_argument("--price", type=_price, default=Settings.model_fields["price_per_image_usd"].default)
    return parser


def _gateway_options(parser: argparse.ArgumentParser) -> None:
    """What the functions call, for the commands that run them (`local`, `up`)."""
    parser.add_argument("--api-base-url", default=os.environ.get("NANOBANANA_API_BASE_URL"), metavar="URL")
    parser.add_argument("--api-key", default=os.environ.get("NANOBANANA_API_KEY"), metavar="KEY")
    parser.add_argument("--model", metavar="ID", help="the model id (template parameter ModelId)")
    parser.add_argument("--dialect", choices=["auto", "openrouter", "newapi"])
    parser.add_argument(
        "--stream", action="store_true", help='send "stream": true (template parameter GatewayStream)'
    )
    parser.add_argument("--concurrency", type=_positive, default=4, metavar="N", help="generate environments")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "check":
            return check(args.files, price=args.price)
        if args.command == "local":
            return local(args)
        if args.command == "up":
            return _up(args)
        return run_command(args)
    except (UsageError, StackError) as error:
        print(f"nanobanana: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _up(args: argparse.Namespace) -> int:
    with _gateway(args) as gateway:
        return up(
            port=args.port,
            stack_name=args.stack,
            parameters=_parameters(args, gateway),
            api_key=gateway.api_key,
            concurrency=args.concurrency,
            log_path=args.log,
        )


# -- check ---------------------------------------------------------------------------------------------


def check(files: Sequence[Path], *, price: float) -> int:
    """Read each file exactly as ingest does; print every bad line, the job count and what it would cost."""
    jobs = bad = 0
    for path in files:
        try:
            problems, count = _check_file(path)
        except (FileError, OSError) as error:
            bad += 1
            print(f"{path}: cannot be read: {error}")
            continue
        for problem in problems:
            print(problem)
        bad += len(problems)
        jobs += count
    print(f"{jobs} jobs, {bad} problems, estimated cost ${jobs * price:.2f} (at ${price} per image)")
    return EXIT_FAILED if bad else EXIT_OK


def _check_file(path: Path) -> tuple[list[str], int]:
    """A file's bad lines and its good jobs; FileError if ingest would reject it whole (no job counted)."""
    defaults = Settings.model_fields
    max_bytes: int = defaults["max_file_bytes"].default
    extension = extension_of(path.name)
    check_size(path.stat().st_size, size_limit(extension, max_bytes))
    key = PROMPTS_PREFIX + path.name
    check_batch(batch_name(key))
    problems, jobs = [], 0
    with path.open("rb") as stream:
        chunks = iter(lambda: stream.read(READ_CHUNK_BYTES), b"")
        max_jobs: int = defaults["max_jobs_per_file"].default
        for parsed in read_jobs(chunks, extension, max_jobs=max_jobs, max_file_bytes=max_bytes):
            source = {"bucket": "check", "key": key, "line": parsed.line}
            try:
                message_body(parsed, batch=batch_name(key), source=source, upload="check")
                jobs += 1
            except InvalidJobError as error:
                problems.append(f"{path}:{parsed.line}: {error}")
    return problems, jobs


# -- local ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    base_url: str
    api_key: str


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
def _gateway(args: argparse.Namespace) -> Iterator[Gateway]:
    """The user's gateway, probed; or the stand-in, started for the length of the run."""
    if args.api_base_url:
        if not args.api_key:
            raise UsageError("--api-key (or NANOBANANA_API_KEY) is required with --api-base-url")
        _probe(args.api_base_url)
        yield Gateway(args.api_base_url, args.api_key)
        return
    with StandInGateway() as standin:
        print(f"No --api-base-url: the built-in stand-in gateway at {standin.base_url} draws the images")
        yield Gateway(standin.base_url, args.api_key or STANDIN_API_KEY)


def _parameters(args: argparse.Namespace, gateway: Gateway) -> dict[str, str]:
    overrides = {
        "ApiBaseUrl": gateway.base_url,
        "ModelId": args.model,
        "GatewayDialect": args.dialect,
        "GatewayStream": "true" if args.stream else None,
    }
    return {name: value for name, value in overrides.items() if value is not None}


def _upload(stack: Stack, args: argparse.Namespace) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    if args.inputs is not None:
        for path in sorted(p for p in args.inputs.rglob("*") if p.is_file()):
            s3.upload_file(str(path), stack.bucket, INPUTS_PREFIX + path.relative_to(args.inputs).as_posix())
    if args.sqs is not None:
        sqs = boto3.client("sqs", region_name=REGION)
        jobs_url = stack.queue(stack.functions[GENERATE_FUNCTION].queue_arn).url
        for line in args.sqs.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sqs.send_message(QueueUrl=jobs_url, MessageBody=line)
    for path in args.files:
        s3.upload_file(str(path), stack.bucket, PROMPTS_PREFIX + path.name)


def _download_outputs(bucket: str, out_dir: Path) -> list[Path]:
    """Copy `outputs/` into the output directory; the result records of this run."""
    s3 = boto3.client("s3", region_name=REGION)
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=OUTPUTS_PREFIX):
        for item in page.get("Contents", []):
            target = out_dir / item["Key"].removeprefix(OUTPUTS_PREFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            if target.suffix == ".json":
                records.append(target)
    return records


def _run(stack: Stack, args: argparse.Namespace, progress: Any) -> int:
    """Drain the queues through the handlers; the number of dead-lettered messages."""
    sqs = boto3.client("sqs", region_name=REGION)
    mappings = event_source_mappings(stack, args.concurrency)
    generate = next(m for m in mappings if m.function.logical_id == GENERATE_FUNCTION)

    def tick() -> None:
        """Jobs enqueued so far: done (deleted or dead-lettered) plus those still in the queue."""
        dead = generate.source.dead_letter_url
        done = generate.deleted + (queue_depth(sqs, dead) if dead else 0)
        # never shrinks: moto's approximate counts can miss a message while it changes hands
        total = max(progress.total, done + queue_depth(sqs, generate.source.url))
        if (progress.n, progress.total) != (done, total):
            progress.total = total
            progress.n = done
            progress.refresh()

    try:
        _upload(stack, args)
        drain(mappings, tick)
    finally:
        for mapping in mappings:
            mapping.stop()
    return sum(queue_depth(sqs, q.dead_letter_url) for q in stack.queues.values() if q.dead_letter_url)


def local(args: argparse.Namespace) -> int:
    """Run the whole pipeline in-process over the given files; exit 0 only if every job succeeded."""
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "run.log"
    terminal = sys.stderr
    with _gateway(args) as gateway, log_path.open("w", encoding="utf-8") as log, preserved_environ():
        os.environ.update(LOCAL_ENVIRONMENT)
        with (
            mock_aws(),
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            tqdm(total=0, desc="jobs", unit="job", file=terminal, leave=False) as progress,
        ):
            stack = provision_template(_parameters(args, gateway), gateway.api_key)
            dead_letters = _run(stack, args, progress)
            records = _download_outputs(stack.bucket, out_dir)
    summary = summarize(load_results(out_dir, records), dead_letters=dead_letters)
    gallery = write_gallery(out_dir, summary)
    print(format_report(summary))
    print(summary_line(summary))
    print(f"gallery: {gallery}   handler logs: {log_path}")
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED
