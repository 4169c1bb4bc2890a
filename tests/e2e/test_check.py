"""`nanobanana check`: the same verdicts as ingest, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanobanana_cli.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles"


def test_the_sample_files_are_good(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(SAMPLES.glob("*.*"))]
    assert main(["check", *files]) == 0
    assert "13 jobs, 0 problems, estimated cost $0.51" in capsys.readouterr().out


def test_bad_lines_and_unreadable_files_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"prompt": "ok"}\n{"prompt": "x", "colour": "red"}\nnot json\n')
    wrong = tmp_path / "notes.md"
    wrong.write_text("a prompt\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    assert main(["check", str(jsonl), str(wrong), str(latin), "--price", "0.1"]) == 1
    out = capsys.readouterr().out
    assert f"{jsonl}:2: colour: unknown field" in out
    assert f"{jsonl}:3: " in out and "not valid JSON" in out
    assert f"{wrong}: cannot be read: unsupported file extension" in out
    assert f"{latin}: cannot be read:" in out and "UTF-8" in out
    assert "1 jobs, 4 problems, estimated cost $0.10" in out
