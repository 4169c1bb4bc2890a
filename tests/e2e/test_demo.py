"""`make demo` is always the demo: the stand-in draws, whatever gateway the environment names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_demo_ignores_a_gateway_in_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    environment = {
        **os.environ,
        "NANOBANANA_API_BASE_URL": "http://127.0.0.1:9",  # nothing listens: a paid gateway stand-in
        "NANOBANANA_API_KEY": "sk-would-be-paid",
    }
    done = subprocess.run(
        ["make", "-o", ".venv/.installed", "demo", f"DEMO_OUT={out}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the built-in stand-in gateway" in done.stdout
    assert "15 succeeded, 0 failed" in done.stdout
    assert (out / "index.html").is_file()
    assert (out / "gallery-desktop.png").is_file() and (out / "gallery-phone.png").is_file()
