"""Ctrl-C and resume: results reach --out as each job ends, and a rerun pays only for what is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

JOBS = 12


def _succeeded(batch_dir: Path) -> dict[str, str]:
    """job id -> its record's text, for every succeeded record in the folder."""
    records = {}
    for path in batch_dir.glob("*.json"):
        text = path.read_text()
        if json.loads(text)["status"] == "succeeded":
            records[path.stem] = text
    return records


def test_ctrl_c_keeps_what_was_paid_and_the_same_command_resumes(tmp_path: Path) -> None:
    prompts = tmp_path / "slow.txt"
    prompts.write_text("".join(f"a slow cat number {n} [[hang:1]]\n" for n in range(JOBS)))
    out = tmp_path / "out"
    command = [str(Path(sys.executable).parent / "nanobanana"), "local", str(prompts), "--out", str(out)]
    command += ["--concurrency", "2"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_succeeded(out / "slow")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # results arrive while the run goes on, not at its end
        assert run.poll() is None, "the run ended before it could be interrupted"
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr
    assert "Interrupted" in stderr and "run the same command again" in stderr
    first = _succeeded(out / "slow")
    assert 2 <= len(first) < JOBS
    assert f"{len(first)} succeeded, 0 failed" in stdout  # the summary of what finished
    assert f"Interrupted with {JOBS - len(first)} queued job(s) not finished" in stderr
    assert all((out / "slow" / f"{job}.png").is_file() for job in first)

    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert f"{len(first)} job(s) already succeeded" in again.stdout
    assert f"{JOBS} succeeded, 0 failed" in again.stdout
    second = _succeeded(out / "slow")
    assert len(second) == JOBS
    assert all(second[job] == text for job, text in first.items())  # not generated (nor paid) again
