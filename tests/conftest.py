"""The stack of template.yaml in moto, wired to the stand-in gateway, with the runner's Lambda plumbing.

Integration and end-to-end tests either drain the queues through the real handlers (as `nanobanana local`
does) or invoke a handler on records they received themselves, to look at one invocation's answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nanobanana_cli.harness import Pipeline, local_pipeline
from nanobanana_cli.standin import StandInGateway

API_KEY = "sk-test-integration-0123456789"


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    with StandInGateway(api_key=API_KEY) as standin:
        yield standin


@pytest.fixture
def pipeline(gateway: StandInGateway) -> Iterator[Pipeline]:
    with local_pipeline(gateway.base_url, API_KEY, gateway) as stack:
        yield stack


@pytest.fixture
def tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (250, 220, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _forget_gateways() -> Iterator[None]:
    """What one test's gateway taught the client (a dialect, a web page) must not steer the next test."""
    from nanobanana.client import forget_gateways

    yield
    forget_gateways()
