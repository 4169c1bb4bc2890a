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

#: A job given back to the queue, or a call about to be tried again within the invocation.
RETRY_MESSAGES = frozenset({"job will be retried", "gateway call will be retried"})
#: A job given back to the queue for this long or longer is worth a sentence on the terminal, once per cause.
LONG_WAIT_SECONDS = 30.0
END_MESSAGES = frozenset({"job succeeded", "job failed", "job already done: duplicate delivery skipped"})


class LogWatch(io.TextIOBase):
    """A text stream that writes through to the log file and keeps who is waiting for a retry."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self._partial = ""
        self._lock = threading.Lock()
        #: (batch, id) -> the error type of its last failed try, while it waits in the queue
        self.waiting: dict[tuple[str, str], str] = {}
        #: why jobs wait long (e.g. "not an OpenAI-compatible gateway"), each said once: see `news`
        self._notices: dict[str, None] = {}
        self._told = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self.log.write(text)
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                if '"job ' in line or " retried" in line:  # only these lines are worth parsing
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
        if entry.get("message") in RETRY_MESSAGES:
            error = entry.get("error")
            self.waiting[job] = str(error.get("type")) if isinstance(error, dict) else "unknown"
            delay = entry.get("delay_s")
            if isinstance(delay, int | float) and delay >= LONG_WAIT_SECONDS and isinstance(error, dict):
                note = f"jobs wait {delay:.0f} s to be retried: {error.get('type')}: {error.get('message')}"
                self._notices.setdefault(note)
        elif entry.get("message") in END_MESSAGES:
            self.waiting.pop(job, None)

    def news(self) -> list[str]:
        """The notices not told yet."""
        with self._lock:
            notices = list(self._notices)[self._told :]
            self._told += len(notices)
        return notices

    def retrying(self) -> str:
        """`3 retrying (server_error 2, rate_limited 1)`: jobs given back to the queue after a failed try."""
        with self._lock:
            causes = Counter(self.waiting.values())
        if not causes:
            return ""
        detail = ", ".join(f"{cause} {count}" for cause, count in causes.most_common())
        return f"{sum(causes.values())} retrying ({detail})"
