"""The guards as a user of `nanobanana local` and `nanobanana check` meets them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanobanana_cli.cli import main


def test_a_daily_budget_of_ten_cents_pays_for_two_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "kites.txt"
    prompts.write_text("".join(f"a kite number {n}\n" for n in range(5)), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["local", str(prompts), "--out", str(out), "--daily-budget", "0.10", "--concurrency", "2"])
    printed = capsys.readouterr().out
    assert code == 1, printed
    records = [json.loads(path.read_text()) for path in sorted((out / "kites").glob("*.json"))]
    paid = [r for r in records if r["status"] == "succeeded"]
    held = [r for r in records if r["status"] == "failed"]
    assert len(paid) == 2 and len(held) == 3
    for record in held:
        assert record["attempts"] == 0 and record["cost_usd"] == 0
        assert record["error"]["type"] == "budget_exceeded"
        assert "daily budget of $0.1" in record["error"]["message"]
        assert "raise DailyBudgetUSD (--daily-budget locally)" in record["error"]["message"]
    assert "guards        circuit closed, budget $0.02 of $0.10 left today" in printed
    assert "budget_exceeded" in printed
    assert "2 succeeded, 3 failed" in printed


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (
            "0.10",
            "5 jobs, 0 problems, estimated cost $0.20 (at $0.039 per image), over the daily budget of $0.10: "
            "2 jobs a day, the rest wait for the next",
        ),
        ("1", "5 jobs, 0 problems, estimated cost $0.20 (at $0.039 per image), daily budget $1.00"),
        ("0", "5 jobs, 0 problems, estimated cost $0.20 (at $0.039 per image), no daily budget"),
    ],
)
def test_check_shows_the_estimate_beside_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: str, expected: str
) -> None:
    prompts = tmp_path / "kites.txt"
    prompts.write_text("".join(f"a kite number {n}\n" for n in range(5)), encoding="utf-8")
    assert main(["check", str(prompts), "--daily-budget", budget]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_a_negative_budget_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "kites.txt"
    prompts.write_text("a kite\n", encoding="utf-8")
    assert main(["check", str(prompts), "--daily-budget", "-1"]) == 2
    assert "must be a price in USD, 0 or more" in capsys.readouterr().err
