"""`nanobanana`: run the pipeline offline (`local`, `up`), validate prompt files (`check`), drive a stack.

The stack commands (submit, status, watch, fetch, retry, empty-bucket) are in `stackcli`, `up` in `up`,
`local` in `localrun`.

Errors a user can fix (a missing file, a bad flag, an unreachable gateway) are one line and exit 2;
tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from nanobanana.config import Settings
from nanobanana.errors import InvalidJobError
from nanobanana.files import PROMPTS_PREFIX, FileError, batch_name, check_file, read_jobs
from nanobanana.ingest import message_body
from nanobanana.storage import file_chunks
from nanobanana_cli.localrun import check_messages, environments, gateway, parameters, run_local
from nanobanana_cli.outputs import StackError
from nanobanana_cli.stack import TEMPLATE
from nanobanana_cli.stackcli import add_commands, run_command
from nanobanana_cli.template import load_template
from nanobanana_cli.up import DEFAULT_PORT, up
from nanobanana_cli.usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError

#: The project's name as installed (pyproject.toml), for --version.
DISTRIBUTION = "nanobanana-pipeline"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _existing_file(value: str) -> Path:
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory, not a file: {value}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def _output_dir(value: str) -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"is a file, not a directory: {value}")
    return path


def _existing_dir(value: str) -> Path:
    path = _output_dir(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {value}")
    return path


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return number


def _price(value: str) -> float:
    try:
        price = float(value)
    except ValueError:
        price = math.nan
    if not math.isfinite(price) or price < 0:
        raise argparse.ArgumentTypeError(f"must be a price in USD, 0 or more, not {value}")
    return price


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> _Parser:
    parser = _Parser(
        prog="nanobanana",
        description="Nano Banana batch image pipeline: run it offline, check prompt files, drive a stack.",
        epilog="Each command has its own help: nanobanana COMMAND --help",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    local = commands.add_parser(
        "local",
        help="run the pipeline offline: moto plays AWS, the real handlers do the work",
        description="Run the whole pipeline on this machine: moto plays S3, SQS and DynamoDB, the real "
        "Ingest and Generate handlers do the work, against your gateway or the built-in stand-in. "
        "Results reach DIR as each job ends; Ctrl-C stops cleanly, and the same command again resumes "
        "(jobs whose record in DIR says succeeded are not generated again). Exit status: 0 all jobs "
        "succeeded, 1 some failed, 2 usage error, 130 interrupted.",
    )
    _file_arguments(local, nargs="+", repeat=False)
    local.add_argument(
        "--out",
        required=True,
        type=_output_dir,
        metavar="DIR",
        help="where results go, DIR/<batch>/<id>.json and images, and the gallery DIR/index.html",
    )
    _gateway_options(local)
    local.add_argument(
        "--inputs", type=_existing_dir, metavar="DIR", help="input images, uploaded under inputs/"
    )
    local.add_argument(
        "--daily-budget",
        type=_price,
        metavar="USD",
        help="the run's budget: jobs past it are not called (template parameter DailyBudgetUSD; 0: no cap)",
    )
    serve = commands.add_parser(
        "up", help="the offline stack as a service on 127.0.0.1, for any AWS client (Ctrl-C stops it)"
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="moto's port (0: any free port)")
    serve.add_argument("--stack", metavar="NAME", help="the name its outputs are registered under")
    serve.add_argument("--log", type=Path, default=Path("out/up.log"), metavar="FILE", help="handler logs")
    _gateway_options(serve)
    add_commands(commands)
    check = commands.add_parser(
        "check",
        help="validate prompt files as ingest would, offline",
        description="Read prompt files (and --sqs message files) exactly as the pipeline would, print "
        "every bad line with its line number, the job count and the estimated cost. Exit status: 0 no "
        "problems, 1 problems found, 2 usage error.",
    )
    _file_arguments(check, nargs="*", repeat=True)
    price = Settings.model_fields["price_per_image_usd"].default
    check.add_argument(
        "--price",
        type=_price,
        default=price,
        metavar="USD",
        help=f"estimated price of one image (default: {price})",
    )
    check.add_argument(
        "--daily-budget",
        type=_price,
        metavar="USD",
        help="the daily budget to compare the estimate with (default: the template's DailyBudgetUSD)",
    )
    return parser


def _default_daily_budget() -> float:
    """The template's DailyBudgetUSD: what a deployment caps a day's spend at unless told otherwise."""
    return float(load_template(TEMPLATE)["Parameters"]["DailyBudgetUSD"]["Default"])


def _file_arguments(parser: argparse.ArgumentParser, *, nargs: str, repeat: bool) -> None:
    """FILE... and --sqs FILE.jsonl, as `local` and `check` take them (`check` may take --sqs again)."""
    kinds = "prompt files (.txt .jsonl .json .csv)"
    parser.add_argument("files", nargs=nargs, type=_existing_file, metavar="FILE", help=kinds)
    parser.add_argument(
        "--sqs",
        type=_existing_file,
        action="append" if repeat else "store",
        default=[] if repeat else None,
        metavar="FILE.jsonl",
        help="jobs-queue messages, one a line" + (" (may be repeated)" if repeat else ""),
    )


def _gateway_options(parser: argparse.ArgumentParser) -> None:
    """What the functions call, for the commands that run them (`local`, `up`)."""
    parser.add_argument(
        "--api-base-url",
        default=os.environ.get("NANOBANANA_API_BASE_URL"),
        metavar="URL",
        help="an OpenAI-compatible gateway (env NANOBANANA_API_BASE_URL; default: the built-in stand-in)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("NANOBANANA_API_KEY"),
        metavar="KEY",
        help="the gateway's Bearer key (env NANOBANANA_API_KEY)",
    )
    parser.add_argument("--model", metavar="ID", help="the model id (default: the template's ModelId)")
    parser.add_argument(
        "--dialect",
        choices=["auto", "openrouter", "newapi"],
        help="how image options are sent (default: the template's GatewayDialect, auto)",
    )
    parser.add_argument(
        "--stream", action="store_true", help='send "stream": true (template parameter GatewayStream)'
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=4,
        metavar="N",
        help="jobs generated at once, i.e. gateway calls in flight (default: 4)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "check":
            if not args.files and not args.sqs:
                raise UsageError("check needs a FILE or --sqs FILE.jsonl (see nanobanana check --help)")
            budget = _default_daily_budget() if args.daily_budget is None else args.daily_budget
            return check(args.files, price=args.price, sqs=args.sqs, daily_budget=budget)
        if args.command == "local":
            return run_local(args)
        if args.command == "up":
            return _up(args)
        return run_command(args)
    except (UsageError, StackError) as error:
        print(f"nanobanana: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _up(args: argparse.Namespace) -> int:
    """`--concurrency` means what it means for `local`: gateway calls in flight."""
    generate_environments, batch_size = environments(args.concurrency)
    with gateway(args) as used:
        return up(
            port=args.port,
            stack_name=args.stack,
            parameters={**parameters(args, used), "BatchSize": str(batch_size)},
            api_key=used.api_key,
            concurrency=generate_environments,
            log_path=args.log,
        )


# -- check ---------------------------------------------------------------------------------------------


def check(files: Sequence[Path], *, price: float, sqs: Sequence[Path] = (), daily_budget: float = 0.0) -> int:
    """Read each file exactly as ingest does; print every bad line, the job count, what it would cost and
    how that compares with the daily budget."""
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
    for path in sqs:
        try:
            checked = list(check_messages(path))
        except (FileError, OSError) as error:
            bad += 1
            print(f"{path}: cannot be read: {error}")
            continue
        for line, wrong in checked:
            if wrong is None:
                jobs += 1
            else:
                bad += 1
                print(f"{path}:{line}: {wrong}")
    estimate = jobs * price
    if not daily_budget:
        budget = "no daily budget"
    elif estimate <= daily_budget:
        budget = f"daily budget ${daily_budget:.2f}"
    else:
        fit = int(daily_budget // price) if price else jobs
        budget = f"over the daily budget of ${daily_budget:.2f}: {fit} jobs a day, the rest wait for the next"
    print(f"{jobs} jobs, {bad} problems, estimated cost ${estimate:.2f} (at ${price} per image), {budget}")
    return EXIT_FAILED if bad else EXIT_OK


def _check_file(path: Path) -> tuple[list[str], int]:
    """A file's bad lines and its good jobs; FileError if ingest would reject it whole (no job counted)."""
    defaults = Settings.model_fields
    max_bytes: int = defaults["max_file_bytes"].default
    key = PROMPTS_PREFIX + path.name
    extension = check_file(key, path.stat().st_size, max_bytes)
    problems, jobs = [], 0
    with path.open("rb") as stream:
        max_jobs: int = defaults["max_jobs_per_file"].default
        for parsed in read_jobs(file_chunks(stream), extension, max_jobs=max_jobs, max_file_bytes=max_bytes):
            source = {"bucket": "check", "key": key, "line": parsed.line}
            try:
                message_body(parsed, batch=batch_name(key), source=source, upload="check")
                jobs += 1
            except InvalidJobError as error:
                problems.append(f"{path}:{parsed.line}: {error}")
    return problems, jobs
