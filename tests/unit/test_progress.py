"""The progress line reads the handlers' logs: who waits to be retried, and why."""

from __future__ import annotations

import io
import json

from nanobanana_cli.progress import LogWatch


def _line(message: str, job_id: str, error_type: str | None = None) -> str:
    entry = {"level": "INFO", "message": message, "batch": "cats", "job_id": job_id}
    if error_type:
        entry["error"] = {"type": error_type, "message": "..."}
    return json.dumps(entry) + "\n"


def test_retrying_jobs_by_cause_until_they_end() -> None:
    log = io.StringIO()
    watch = LogWatch(log)
    text = (
        _line("gateway call will be retried", "1", "server_error")
        + _line("job will be retried", "2", "rate_limited")
        + _line("gateway call will be retried", "3", "server_error")
    )
    watch.write(text[:50])  # lines arrive in pieces
    watch.write(text[50:])
    assert watch.retrying() == "3 retrying (server_error 2, rate_limited 1)"
    watch.write(_line("job succeeded", "1") + _line("job failed", "2") + "not json\n")
    assert watch.retrying() == "1 retrying (server_error 1)"
    watch.write(_line("job succeeded", "3"))
    assert watch.retrying() == ""
    assert log.getvalue().count("\n") == 7  # everything still reaches run.log


def test_a_long_wait_is_explained_once() -> None:
    watch = LogWatch(io.StringIO())
    entry = {
        "message": "job will be retried",
        "batch": "cats",
        "job_id": "1",
        "delay_s": 300.0,
        "error": {"type": "bad_response", "message": "not an OpenAI-compatible gateway's JSON"},
    }
    watch.write(json.dumps(entry) + "\n" + json.dumps({**entry, "job_id": "2"}) + "\n")
    assert watch.news() == [
        "jobs wait 300 s to be retried: bad_response: not an OpenAI-compatible gateway's JSON"
    ]
    assert watch.news() == []
    assert watch.retrying() == "2 retrying (bad_response 2)"
