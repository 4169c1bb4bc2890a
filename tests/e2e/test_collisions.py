"""`nanobanana local` over files whose ids collide: every job has a record of its own, and each counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanobanana_cli.cli import main


def test_colliding_ids_fail_on_their_own_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = tmp_path / "ids.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(job)
            for job in (
                {"id": "00002", "prompt": "an explicit id"},
                {"prompt": "a default id equal to line 1's"},
                {"id": "dup", "prompt": "the first dup"},
                {"id": "dup", "prompt": "the second dup"},
                {"id": "dup", "colour": "an invalid line reusing a valid id"},
            )
        )
        + "\n"
    )
    csv = tmp_path / "rows.csv"
    csv.write_text("id,prompt\n00002,a cat\n,a dog (row 2: default id 00002)\n")
    out = tmp_path / "out"
    code = main(["local", str(jsonl), str(csv), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "3 succeeded, 4 failed" in printed
    assert code == 1
    records = {
        path.relative_to(out).as_posix(): json.loads(path.read_text())
        for path in out.rglob("*.json")
        if path.name != "_batch.json"  # the runs' accounts, one per file
    }
    assert sorted(records) == [
        "ids/00002.json",
        "ids/dup.json",
        "ids/line00002..duplicate.json",
        "ids/line00004..duplicate.json",
        "ids/line00005..duplicate.json",
        "rows/00002.json",
        "rows/line00003..duplicate.json",
    ]
    assert records["ids/00002.json"]["status"] == records["ids/dup.json"]["status"] == "succeeded"
    assert records["ids/dup.json"]["prompt"] == "the first dup"
    second = records["ids/line00004..duplicate.json"]
    assert second["status"] == "failed" and second["source"]["line"] == 4
    assert "'dup' is already used by the job at line 3" in second["error"]["message"]
