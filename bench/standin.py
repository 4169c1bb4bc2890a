"""The stand-in gateway in a process of its own, as a gateway is: its drawing does not share our GIL."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from nanobanana_cli.standin import StandInGateway

API_KEY = "sk-bench"


def _serve(latency: float, address: Queue[str], stop: Event) -> None:
    with StandInGateway(api_key=API_KEY, latency=latency) as gateway:
        address.put(gateway.base_url)
        stop.wait()


@contextmanager
def remote_standin(latency: float) -> Iterator[str]:
    """Its base URL for the length of the block; every answer takes `latency` seconds, drawing included."""
    address: Queue[str] = multiprocessing.Queue()
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=_serve, args=(latency, address, stop), daemon=True)
    process.start()
    try:
        yield address.get(timeout=30)
    finally:
        stop.set()
        process.join(timeout=10)
