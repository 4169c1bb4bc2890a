"""The command line off the happy path: one line, a clear cause, exit 2; help that explains itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanobanana_cli.cli import main
from nanobanana_cli.localrun import environments

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles"
CATS = str(SAMPLES / "cats.txt")


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanobanana: error:"), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_out_naming_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    assert "is a file, not a directory" in _error(["local", CATS, "--out", str(target)], capsys)


def test_a_directory_given_as_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = _error(["local", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert "is a directory" in message and "no such file" not in message


def test_concurrency_that_is_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = _error(["local", CATS, "--out", str(tmp_path), "--concurrency", "abc"], capsys)
    assert "must be a whole number, not 'abc'" in message and "_positive" not in message


def test_a_sqs_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messages = tmp_path / "messages.jsonl"
    messages.write_bytes(b'{"prompt": "caf\xe9"}\n')
    message = _error(["local", CATS, "--sqs", str(messages), "--out", str(tmp_path / "out")], capsys)
    assert "not valid UTF-8" in message and str(messages) in message
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_two_files_with_the_same_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "cats.txt"
    other.write_text("another cat\n")
    message = _error(["local", CATS, str(other), "--out", str(tmp_path / "out")], capsys)
    assert "the same name" in message and "prompts/cats.txt" in message


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("nanobanana 0.")


@pytest.mark.parametrize("command", ["local", "check"])
def test_help_has_descriptions_defaults_and_environment(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status" in text and "default" in text
    if command == "local":
        assert "NANOBANANA_API_BASE_URL" in text and "NANOBANANA_API_KEY" in text
        assert "(default: 4)" in text and "Ctrl-C" in text


def test_check_reads_sqs_message_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messages = tmp_path / "messages.jsonl"
    messages.write_text(
        '{"id": "ok", "prompt": "a cat"}\n\n{"id": "bad", "prompt": "a cat", "colour": 1}\n[\n'
    )
    assert main(["check", "--sqs", str(messages), "--sqs", str(SAMPLES / "sqs/messages.jsonl")]) == 1
    printed = capsys.readouterr().out
    assert f"{messages}:3: " in printed and "colour" in printed
    assert f"{messages}:4: not valid JSON" in printed
    assert "3 jobs, 2 problems" in printed


def test_check_needs_something_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert "needs a FILE or --sqs" in _error(["check"], capsys)


@pytest.mark.parametrize(
    ("concurrency", "expected"), [(1, (1, 1)), (4, (1, 4)), (20, (2, 10)), (15, (3, 5)), (13, (13, 1))]
)
def test_concurrency_is_exactly_the_calls_in_flight(concurrency: int, expected: tuple[int, int]) -> None:
    assert environments(concurrency) == expected
