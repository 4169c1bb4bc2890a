"""What every end-to-end test needs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto import mock_aws

from nanobanana_cli.runner import preserved_environ
from nanobanana_cli.stack import LOCAL_ENVIRONMENT


@pytest.fixture(autouse=True)
def _no_gateway_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real gateway settings must never leak into a test run."""
    monkeypatch.delenv("NANOBANANA_API_BASE_URL", raising=False)
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto for the length of a test, in the environment the local runner gives its handlers."""
    with preserved_environ():
        os.environ.update(LOCAL_ENVIRONMENT)
        with mock_aws():
            yield
