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


def test_hostile_lines_are_problems_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep_metadata = '{"a":' * 256 + "1" + "}" * 256
    lines = [
        '{"prompt": "ok"}',
        "[" * 10_000 + "]" * 10_000,
        '{"prompt": "x", "seed": ' + "9" * 5000 + "}",
        '{"prompt": "x", "metadata": ' + deep_metadata + "}",
        '{"prompt": "' + "\U0001f34c" * 90_000 + '"}',  # 360 KB: too big for a queue message
        '{"id": "00001", "prompt": "its id is the first line\'s"}',
    ]
    jsonl = tmp_path / "hostile.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["check", str(jsonl)]) == 1
    out = capsys.readouterr().out
    for line in range(2, 7):
        assert f"{jsonl}:{line}: " in out
    assert "queue message" in out and "already used by the job at line 1" in out
    assert "1 jobs, 5 problems" in out


def test_a_file_ingest_rejects_counts_no_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "late.csv"
    csv.write_text('prompt\na cat\na dog\n"a bird" flying\n')  # the last row's quoting is unreadable
    big = tmp_path / "big.json"
    big.write_text("[" + ", ".join(['{"prompt": "' + "x" * 1000 + '"}'] * 34_000) + "]")  # over 32 MiB
    assert main(["check", str(csv), str(big)]) == 1
    out = capsys.readouterr().out
    assert f"{csv}: cannot be read: unreadable CSV at line 4" in out
    assert f"{big}: cannot be read: the file is" in out and "over the limit of 33554432" in out
    assert "0 jobs, 2 problems, estimated cost $0.00" in out


@pytest.mark.parametrize("price", ["nan", "-1", "inf", "-0.5", "cheap"])
def test_a_bad_price_is_a_usage_error(price: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SAMPLES / "cats.txt"), "--price", price]) == 2
    captured = capsys.readouterr()
    assert "--price" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_hostile_messages_are_problems_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = tmp_path / "messages.jsonl"
    messages.write_text(
        '{"prompt": "ok"}\n' + "[" * 10_000 + "]" * 10_000 + '\n{"prompt": "x", "seed": ' + "9" * 5000 + "}\n"
    )
    assert main(["check", "--sqs", str(messages)]) == 1
    out = capsys.readouterr().out
    assert f"{messages}:2: not valid JSON" in out and f"{messages}:3: seed: a number of 5000 digits" in out
    assert "1 jobs, 2 problems" in out
