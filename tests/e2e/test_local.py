"""`nanobanana local` end to end: moto, the real handlers, the stand-in gateway, the CLI's contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanobanana.batches import BATCH_FILE, RESULTS_FILE
from nanobanana_cli.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles"

SAMPLE_FILES = [SAMPLES / name for name in ("cats.txt", "jobs.jsonl", "posters.json", "scenes.csv")]
EXPECTED = {
    "cats": {"00002", "00003", "00005"},
    "jobs": {"banana-still-life", "poster-wide", "banana-on-the-moon", "batch-api-line"},
    "posters": {"jazz", "cinema", "00003"},
    "scenes": {"harbor", "market", "forest"},
    "sqs-demo": {"hello-sqs", "sqs-square"},
}


def _records(out: Path) -> dict[str, dict[str, dict[str, object]]]:
    records: dict[str, dict[str, dict[str, object]]] = {}
    for path in out.rglob("*.json"):
        if path.name == BATCH_FILE:
            continue
        record = json.loads(path.read_text())
        records.setdefault(str(record["batch"]), {})[path.stem] = record
    return records


def test_every_sample_format_sqs_and_inputs_succeed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [str(p) for p in SAMPLE_FILES]
    code = main(
        [
            "local",
            *args,
            "--sqs",
            str(SAMPLES / "sqs/messages.jsonl"),
            "--inputs",
            str(SAMPLES / "inputs"),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    records = _records(out)
    assert {batch: set(jobs) for batch, jobs in records.items()} == EXPECTED
    for jobs in records.values():
        for record in jobs.values():
            assert record["status"] == "succeeded", record
            images = [str(key).removeprefix("outputs/") for key in record["images"]]  # type: ignore[attr-defined]
            assert images and all((out / image).read_bytes().startswith(b"\x89PNG") for image in images)
    edit = records["jobs"]["banana-on-the-moon"]
    assert edit["attempts"] == 1
    assert "15 succeeded, 0 failed" in printed
    assert "stand-in gateway" in printed
    assert str(out / "index.html") in printed
    gallery = (out / "index.html").read_text()
    for batch, ids in EXPECTED.items():
        for job_id in ids:
            assert f'id="{batch}/{job_id}"' in gallery
    assert gallery.count("<script") == 1 and "http" not in gallery.split("<body>")[1]
    log = (out / "run.log").read_text()
    assert "_aws" in log  # the handlers' EMF metrics went to the log, not the terminal
    assert "_aws" not in printed


def test_failed_jobs_exit_1_and_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "mixed.txt"
    prompts.write_text("a fine cat\na cat [[status:400]]\na <b>cat</b> [[refuse]]\n")
    out = tmp_path / "out"
    assert main(["local", str(prompts), "--out", str(out), "--concurrency", "2"]) == 1
    printed = capsys.readouterr().out
    assert "1 succeeded, 2 failed" in printed
    assert "client_error" in printed and "content_filtered" in printed
    assert "rephrase the prompt" in printed  # the fix from errors.ADVICE
    records = _records(out)["mixed"]
    assert {job: r["status"] for job, r in records.items()} == {
        "00001": "succeeded",
        "00002": "failed",
        "00003": "failed",
    }
    gallery = (out / "index.html").read_text()
    assert "a &lt;b&gt;cat&lt;/b&gt;" in gallery and "<b>cat</b>" not in gallery
    assert "content_filtered" in gallery
    assert '<b>content_filtered</b> · 1 job(s) · <span class="fix">fix: the model refused' in gallery
    assert gallery.count("fix: the model refused") == 1  # once per error type, not on every card


def test_an_unreadable_file_counts_as_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing but a comment\n")
    assert main(["local", str(empty), "--out", str(tmp_path / "out")]) == 1
    assert "0 succeeded, 1 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["local", "no/such/file.txt", "--out", "OUT"],
        ["local", str(SAMPLES / "cats.txt"), "--out", "OUT", "--bogus"],
        ["local", str(SAMPLES / "cats.txt")],
        ["local", str(SAMPLES / "cats.txt"), "--out", "OUT", "--concurrency", "0"],
        ["local", str(SAMPLES / "cats.txt"), "--out", "OUT", "--dialect", "klingon"],
        [
            "local",
            str(SAMPLES / "cats.txt"),
            "--out",
            "OUT",
            "--api-base-url",
            "http://127.0.0.1:9",
            "--api-key",
            "k",
        ],
        ["local", str(SAMPLES / "cats.txt"), "--out", "OUT", "--api-base-url", "http://127.0.0.1:9"],
        [],
    ],
)
def test_usage_errors_exit_2_in_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path / "out") if arg == "OUT" else arg for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanobanana: error:"), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_the_installed_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "nanobanana"
    out = tmp_path / "out"
    done = subprocess.run(
        [str(script), "local", str(SAMPLES / "cats.txt"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "3 succeeded, 0 failed" in done.stdout
    assert {p.name for p in (out / "cats").glob("*.json")} == {
        "00002.json",
        "00003.json",
        "00005.json",
        BATCH_FILE,
    }
    assert json.loads((out / "cats" / BATCH_FILE).read_text())["succeeded"] == 3
    assert len((out / "cats" / RESULTS_FILE).read_text().splitlines()) == 3
    bad = subprocess.run([str(script), "local", "--nope"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_retries_by_cause_in_the_report_and_the_gallery(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "flaky.txt"
    prompts.write_text("a flaky cat [[flaky:1:1]]\n")  # one 503 asking for a 1 s wait
    out = tmp_path / "out"
    assert main(["local", str(prompts), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "retries       1   (server_error 1)" in captured.out
    assert "retries 1 (server_error 1)" in (out / "index.html").read_text()
    assert "1 retrying (server_error 1)" in captured.err  # the progress line said so while it waited


def test_stream_dialect_fallback_and_ratio_warnings_reach_the_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanobanana_cli.standin import StandInGateway

    jobs = tmp_path / "wild.jsonl"
    lines = [
        {"id": "strict", "prompt": "a wide fox [[strict]]", "aspect_ratio": "16:9"},
        {"id": "square", "prompt": "a wide fox [[square]]", "aspect_ratio": "16:9"},
    ]
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    with StandInGateway(api_key="sk-wild-0123456789") as gateway:
        args = ["local", str(jobs), "--out", str(out), "--stream", "--concurrency", "1"]
        code = main([*args, "--api-base-url", gateway.base_url, "--api-key", "sk-wild-0123456789"])
        requests = gateway.requests
    assert code == 0, capsys.readouterr().out
    records = _records(out)["wild"]
    assert all(request["stream"] is True for request in requests)
    assert records["strict"]["warnings"] == []  # the ratio reached the gateway in the other dialect
    assert records["strict"]["attempts"] == 2
    assert "aspect_ratio 16:9" in records["square"]["warnings"][0]
    assert '<div class="warning">aspect_ratio 16:9 was asked for' in (out / "index.html").read_text()
