"""What `sam build` ships, run the way AWS Lambda runs it, on this machine.

The layer and the functions are built by their own makefiles (the ones `sam build` runs), for this
machine's architecture; CPython 3.13 runs them with nothing but the layer, the function's code and
boto3 on its path. Each execution environment is a process that imports its handler once and then serves
invocations one at a time, with the variables Lambda sets, the template's environment and tracing, and
an X-Ray daemon address. The runtime test and `make bench` use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import boto3

from nanobanana_cli.runner import preserved_environ, sqs_record
from nanobanana_cli.stack import LOCAL_ENVIRONMENT, TEMPLATE, Function, Stack, provision_template
from nanobanana_cli.standin import StandInGateway
from nanobanana_cli.template import function_properties, load_template
from nanobanana_cli.up import moto_server

ROOT = TEMPLATE.parent
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
#: Variables a test or a local stack sets for in-process handlers that Lambda never sets.
_NOT_LAMBDA = ("POWERTOOLS_TRACE_DISABLED",)


def runtime_python() -> Path | None:
    """CPython 3.13, as the Lambda runtime has it: pyenv's, else python3.13 on PATH; None if neither."""
    found = shutil.which("python3.13")
    candidates = sorted(Path.home().glob(".pyenv/versions/3.13*/bin/python")) + (
        [Path(found)] if found else []
    )
    for candidate in candidates:
        check = [str(candidate), "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"]
        if subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def machine_architecture() -> str:
    """This machine's architecture as Lambda names it (arm64, x86_64)."""
    return _ARCHITECTURES[platform.machine().lower()]


@dataclass(frozen=True)
class Runtime:
    """A build of the layer and the functions, and the Python and boto3 that run them."""

    python: Path
    layer: Path
    sdk: Path
    functions: dict[str, Path]


def build(into: Path, python: Path) -> Runtime:
    """Build what `sam build` builds, with its makefiles, for this machine; and the runtime's boto3.

    The wheels come from a cache kept under .aws-sam/ (filled from the package index on first use, per
    requirements, architecture and boto3 version): the makefile's own pip then installs offline."""
    make = ["make", "--no-print-directory", "-s"]
    architecture = machine_architecture()
    sdk_requirement = f"boto3=={version('boto3')}"
    offline = {
        **os.environ,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(_wheels(architecture, sdk_requirement)),
    }
    layer = into / "SharedLayer"
    _run(
        [*make, "-C", str(ROOT / "layers"), "build-SharedLayer", f"ARTIFACTS_DIR={layer}",
         f"ARCHITECTURE={architecture}", f"PYTHON={sys.executable}", f"RUNTIME_PYTHON={python}"],
        offline,
    )  # fmt: skip
    functions: dict[str, Path] = {}
    template = load_template(TEMPLATE)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            code = ROOT / function_properties(template, logical_id)["CodeUri"]
            functions[logical_id] = into / logical_id
            functions[logical_id].mkdir()  # SAM makes ARTIFACTS_DIR before it runs make
            _run([*make, "-C", str(code), f"build-{logical_id}", f"ARTIFACTS_DIR={functions[logical_id]}"])
    sdk = into / "runtime"  # compiled, as the runtime's own boto3 is
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(sdk), sdk_requirement],
        offline,
    )  # fmt: skip
    _run(
        [str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(sdk)]
    )
    return Runtime(python=python, layer=layer / "python", sdk=sdk, functions=functions)


def _wheels(architecture: str, sdk_requirement: str) -> Path:
    """Every wheel the layer and the runtime's boto3 need, for python3.13 on `architecture`."""
    requirements = ROOT / "layers" / "requirements.txt"
    key = hashlib.sha256(f"{requirements.read_text()}{architecture}{sdk_requirement}".encode()).hexdigest()
    folder = ROOT / ".aws-sam" / "runtime-wheels" / key[:16]
    if not (folder / ".complete").exists():
        platform_tag = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}[architecture]
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "--platform", platform_tag, "--implementation", "cp",
             "--python-version", "3.13", "--dest", str(folder), "-r", str(requirements), sdk_requirement],
        )  # fmt: skip
        (folder / ".complete").touch()
    return folder


def _run(command: list[str], environment: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


class Environment:
    """One execution environment of a function: its process, cold-started once, invoked many times."""

    def __init__(
        self,
        runtime: Runtime,
        function: Function,
        *,
        endpoint: str,
        daemon: str,
        log: IO[str],
    ) -> None:
        self.function = function
        code = runtime.functions[function.logical_id]
        tracing = function_properties(load_template(TEMPLATE), function.logical_id).get("Tracing")
        self.sampled = tracing == "Active"
        environment = {
            **{k: v for k, v in function.environment.items() if k not in _NOT_LAMBDA},
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(code),
            "LAMBDA_RUNTIME_DIR": str(runtime.sdk),
            "_HANDLER": function.handler,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_XRAY_DAEMON_ADDRESS": daemon,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_ENDPOINT_URL": endpoint,  # moto's server plays every AWS service
        }
        self.process = subprocess.Popen(
            [
                str(runtime.python),
                "-I",
                "-S",
                str(BOOTSTRAP),
                str(code),
                str(runtime.layer),
                str(runtime.sdk),
                function.handler,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=environment,
            text=True,
        )
        #: the cold start: {"init_ms", "httpx_imported", "max_rss_kb"}
        self.init = self._read()

    def invoke(self, event: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """One invocation; the handler's result, or RuntimeError with its traceback."""
        seconds = self.function.timeout_seconds if timeout is None else timeout
        request = {
            "event": event,
            "deadline_ms": time.time() * 1000 + seconds * 1000,
            "request_id": str(uuid.uuid4()),
            "function_arn": self.function.arn,
            "trace": trace_header(self.sampled),
        }
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"{self.function.logical_id} raised {reply['error']}\n{reply['traceback']}")
        self.max_rss_kb = int(reply["max_rss_kb"])
        result: dict[str, Any] = reply["result"]
        return result

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the {self.function.logical_id} environment died (exit {self.process.wait()})"
            )
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def baseline_import_ms(runtime: Runtime) -> float:
    """`import boto3, httpx` in a fresh process of the runtime: what any such function's cold start pays."""
    command = [
        str(runtime.python),
        "-I",
        "-S",
        str(BOOTSTRAP),
        str(runtime.sdk),
        str(runtime.layer),
        str(runtime.sdk),
        "-",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, input="")
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return float(json.loads(done.stdout.splitlines()[0])["init_ms"])


class XRayDaemon:
    """A UDP socket on 127.0.0.1 where the X-Ray SDK sends its segments, as to the daemon beside a
    Lambda function; `documents` holds every segment and subsegment it received."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.documents: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._receive, name="xray-daemon", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                datagram = self.socket.recv(65536)
            except OSError:  # closed
                return
            _, _, body = datagram.decode("utf-8", "replace").partition("\n")
            self.documents.append(json.loads(body))

    def close(self) -> None:
        self.socket.close()
        self._thread.join(timeout=5)


def trace_header(sampled: bool) -> str:
    """An X-Ray trace header as Lambda sets it for each invocation (`_X_AMZN_TRACE_ID`)."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled={1 if sampled else 0}"


@dataclass
class Cloud:
    """The template's stack in moto's server, a gateway, and an X-Ray daemon's socket: where execution
    environments of the built functions run, and what drives them as the event-source mappings would."""

    runtime: Runtime
    endpoint: str
    stack: Stack
    gateway: StandInGateway
    daemon: XRayDaemon
    log: IO[str]

    def environment(self, logical_id: str) -> Environment:
        """A new execution environment of the function: its cold start happens here."""
        function = self.stack.functions[logical_id]
        return Environment(
            self.runtime, function, endpoint=self.endpoint, daemon=self.daemon.address, log=self.log
        )

    def receive(self, logical_id: str) -> list[dict[str, Any]]:
        """Up to a batch of messages of the function's queue, as Lambda event records."""
        queue = self.stack.queue(self.stack.functions[logical_id].queue_arn)
        messages = boto3.client("sqs").receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [sqs_record(dict(message), queue.arn) for message in messages.get("Messages", [])]

    def delete(self, logical_id: str, records: list[dict[str, Any]]) -> None:
        """What the event-source mapping does with the records an invocation did not report as failed."""
        queue = self.stack.queue(self.stack.functions[logical_id].queue_arn)
        for record in records:
            boto3.client("sqs").delete_message(QueueUrl=queue.url, ReceiptHandle=record["receiptHandle"])


@contextmanager
def lambda_cloud(runtime: Runtime, gateway: StandInGateway, api_key: str, log: IO[str]) -> Iterator[Cloud]:
    """The stack provisioned in moto's server (this process reaches it through AWS_ENDPOINT_URL)."""
    with moto_server(0) as endpoint, preserved_environ():
        os.environ.update(LOCAL_ENVIRONMENT)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        stack = provision_template({"ApiBaseUrl": gateway.base_url}, api_key)
        daemon = XRayDaemon()
        try:
            yield Cloud(runtime, endpoint, stack, gateway, daemon, log)
        finally:
            daemon.close()
