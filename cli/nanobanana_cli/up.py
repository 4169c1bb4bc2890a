"""`nanobanana up`: the offline stack as a service on 127.0.0.1, for any AWS client to use.

moto runs as a server in this process; the template's resources are provisioned in it by the local
runner's own `provision_template` (every client in this process, the handlers' included, reaches it
through `AWS_ENDPOINT_URL`), and the runner's event-source mappings poll its queues until Ctrl-C. The
stack's outputs are registered in the server's CloudFormation under the stack's name, so that
`nanobanana submit --endpoint-url ...` (or a user's own code) finds the bucket and queues exactly as it
would find a deployed stack's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from moto.server import ThreadedMotoServer

from nanobanana_cli.outputs import StackError, Target, connect, register
from nanobanana_cli.runner import event_source_mappings, preserved_environ, serve
from nanobanana_cli.stack import LOCAL_ENVIRONMENT, REGION, Stack, provision_template

HOST = "127.0.0.1"
DEFAULT_PORT = 4566
#: Outputs worth a line of the banner: where to put files and send jobs, and what comes back.
_SHOWN_OUTPUTS = ("BucketName", "IdempotencyTableName", "ApiKeySecretArn")


def _check_port(port: int) -> None:
    """moto's server thread would die silently on a busy port (and `start()` wait forever): ask first."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise StackError(
                f"cannot listen on {HOST}:{port} ({error.strerror or error}): is another `nanobanana up` "
                "running? pass --port N (0: any free port)"
            ) from None


@contextlib.contextmanager
def moto_server(port: int) -> Iterator[str]:
    """moto as a server on 127.0.0.1 for the length of the block; its endpoint URL."""
    _check_port(port)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the terminal
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        host, bound = server.get_host_and_port()
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) asks for a clean stop; a second one leaves at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(130)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def banner(endpoint: str, stack_name: str, stack: Stack, log_path: Path) -> str:
    """What `up` prints: where everything is, and a first command to try."""
    outputs = stack.outputs
    shown = [key for key in outputs if key in _SHOWN_OUTPUTS or key.endswith("QueueUrl")]
    width = max(len(key) for key in shown)
    lines = [
        f"Offline stack {stack_name} at {endpoint} (region {REGION}; any credentials will do)",
        *(f"  {key:<{width}}  {outputs[key]}" for key in shown),
        f"  {'handler logs':<{width}}  {log_path}",
        "Try:",
        f"  aws --endpoint-url {endpoint} s3 cp samplefiles/cats.txt s3://{stack.bucket}/prompts/",
        f"  nanobanana submit --endpoint-url {endpoint} samplefiles/cats.txt --wait",
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


def up(
    *,
    port: int,
    stack_name: str | None,
    parameters: dict[str, str],
    api_key: str,
    concurrency: int,
    log_path: Path,
    terminal: TextIO = sys.stdout,
) -> int:
    """Serve the stack until Ctrl-C; the handlers' output goes to `log_path`, the terminal stays readable."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with (
        _stop_on_signals(stop),
        moto_server(port) as endpoint,
        preserved_environ(),
        log_path.open("a", encoding="utf-8") as log,
    ):
        os.environ.update(LOCAL_ENVIRONMENT)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        target: Target = connect(stack_name, endpoint, REGION)
        stack = provision_template(parameters, api_key, stack_name=target.name)
        register(target, stack.outputs)
        print(banner(endpoint, target.name, stack, log_path), file=terminal, flush=True)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            mappings = event_source_mappings(stack, concurrency)
            try:
                serve(mappings, stop)
            finally:
                for mapping in mappings:
                    mapping.stop()
    print("Stopped: the offline stack and everything in it are gone.", file=terminal, flush=True)
    return 0
