"""An execution environment's runtime loop, as AWS Lambda's Python runtime runs a function.

Run by the runtime's Python (3.13) in isolated mode with no site-packages, so that the only code it can
import is the function's (LAMBDA_TASK_ROOT, /var/task in Lambda), the layer's (/opt/python) and the
runtime's boto3 (/var/runtime):

    python3.13 -I -S lambda_bootstrap.py TASK_ROOT LAYER SDK HANDLER

It imports the handler once (the cold start) and answers with the import's duration, then runs one
invocation per line of its standard input (a JSON request: event, deadline, request id, trace header)
and answers each on its own channel (the original standard output) with the handler's result or error
and the process's peak RSS. What the function prints goes to standard error, with its logs. Bytecode is
never written, as on Lambda's read-only file system: only what the layer ships is used.

HANDLER `-` imports nothing but `boto3` and `httpx`, the baseline of a cold start.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from typing import Any, TextIO


class Context:
    """The `context` a Lambda handler receives."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = request["function_arn"]
        self.aws_request_id = request["request_id"]
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline_ms = float(request["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def peak_rss_kb() -> int:
    """This process's peak resident set since it started: VmHWM (getrusage's ru_maxrss would count the
    parent's, which a forked child inherits across exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def answer(channel: TextIO, reply: dict[str, Any]) -> None:
    reply["max_rss_kb"] = peak_rss_kb()
    channel.write(json.dumps(reply, default=str) + "\n")
    channel.flush()


def main() -> None:
    task_root, layer, sdk, handler_spec = sys.argv[1:5]
    sys.path[:0] = [task_root, layer, sdk]
    sys.dont_write_bytecode = True
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    started = time.perf_counter()
    if handler_spec == "-":
        importlib.import_module("boto3")
        importlib.import_module("httpx")
        answer(channel, {"init_ms": (time.perf_counter() - started) * 1000})
        return
    module_name, function_name = handler_spec.rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), function_name)
    init_ms = (time.perf_counter() - started) * 1000
    answer(channel, {"init_ms": init_ms, "httpx_imported": "httpx" in sys.modules})
    for line in sys.stdin:
        request = json.loads(line)
        os.environ["_X_AMZN_TRACE_ID"] = request["trace"]
        try:
            reply = {"result": handler(request["event"], Context(request))}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        answer(channel, reply)


if __name__ == "__main__":
    main()
