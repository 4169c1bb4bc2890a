"""What a local run shows while it works: jobs ended, jobs in flight, and jobs waiting to be retried.

The handlers' structured logs go to `run.log` through `LogWatch`, which also reads the lines that say a
job will be retried (and why) or has ended: that is how the progress line can say "3 retrying
(server_error)" instead of sitting still while the gateway fails.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from typing import Any, TextIO

RETRY_MESSAGE = "job will be retried"
END_MESSAGES = frozenset({"job succeeded", "job failed", "job already done: duplicate delivery skipped"})


class LogWatch(io.TextIOBase):
    """A text stream that writes through to the log file and keeps who is waiting for a retry."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self._partial = ""
        self._lock = threading.Lock()
        #: (batch, id) -> the error type of its last failed try, while it waits in the queue
        self.waiting: dict[tuple[str, str], str] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self.log.write(text)
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                if '"job ' in line:
                    self._read(line)
        return len(text)

    def flush(self) -> None:
        self.log.flush()

    def _read(self, line: str) -> None:
        try:
            entry: Any = json.loads(line)
        except ValueError:
            return
        if not isinstance(entry, dict):
            return
        job = (str(entry.get("batch")), str(entry.get("job_id")))
        if entry.get("message") == RETRY_MESSAGE:
            error = entry.get("error")
            self.waiting[job] = str(error.get("type")) if isinstance(error, dict) else "unknown"
        elif entry.get("message") in END_MESSAGES:
            self.waiting.pop(job, None)

    def retrying(self) -> str:
        """`3 retrying (server_error 2, rate_limited 1)`: jobs given back to the queue after a failed try."""
        with self._lock:
            causes = Counter(self.waiting.values())
        if not causes:
            return ""
        detail = ", ".join(f"{cause} {count}" for cause, count in causes.most_common())
        return f"{sum(causes.values())} retrying ({detail})"
