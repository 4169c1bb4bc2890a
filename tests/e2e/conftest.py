"""What every end-to-end test needs."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_gateway_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real gateway settings must never leak into a test run."""
    monkeypatch.delenv("NANOBANANA_API_BASE_URL", raising=False)
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
