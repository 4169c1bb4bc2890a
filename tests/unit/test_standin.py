"""The stand-in gateway over real sockets: every response style, the drawings, auth, latency and faults."""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from nanobanana_cli.standin import QUOTA_FAULT, Fault, StandInGateway, Style

STYLES: tuple[Style, ...] = ("openrouter", "newapi", "parts", "raw", "url")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    with StandInGateway() as gw:
        yield gw


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as http:
        yield http


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gemini-2.5-flash-image", "messages": [{"role": "user", "content": prompt}], **extra}


def post(client: httpx.Client, gw: StandInGateway, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return client.post(f"{gw.base_url}/v1/chat/completions", json=body, **kwargs)


def image_urls(message: dict[str, Any]) -> list[str]:
    """Where each style puts its images (a deliberately naive reader: the client's job is the real one)."""
    if "images" in message:
        return [image["image_url"]["url"] for image in message["images"]]
    content = message["content"]
    if isinstance(content, list):
        return [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    return re.findall(r"(data:image/png;base64,[A-Za-z0-9+/=]+|http://\S+\.png)", content)


def fetch_image(client: httpx.Client, url: str) -> bytes:
    if url.startswith("http://"):
        return client.get(url).raise_for_status().content
    return base64.b64decode(url.removeprefix("data:image/png;base64,"), validate=True)


def pngs(client: httpx.Client, response: httpx.Response) -> list[bytes]:
    """The response's images, each checked to be a PNG that Pillow reads."""
    assert response.status_code == 200, response.text
    images = [fetch_image(client, url) for url in image_urls(response.json()["choices"][0]["message"])]
    for data in images:
        assert data.startswith(PNG_MAGIC)
        Image.open(io.BytesIO(data)).verify()
    return images


def size_of(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def data_url(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize("style", STYLES)
def test_every_style_carries_decodable_distinct_pngs(style: Style, client: httpx.Client) -> None:
    with StandInGateway(style=style, n_images=2) as gw:
        response = post(client, gw, chat("a lighthouse in a storm"))
        images = pngs(client, response)
        base_url = gw.base_url
        message = response.json()["choices"][0]["message"]
    assert len(images) == 2
    assert images[0] != images[1]
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    urls = image_urls(message)
    if style == "raw":
        assert not any(url.startswith("data:") for url in urls)
    if style == "url":
        assert all(url.startswith(f"{base_url}/images/") for url in urls)
    if style in ("newapi", "url"):
        assert isinstance(message["content"], str)
        assert message["content"].startswith("Here is your image") and message["content"].endswith("Enjoy!")
    if style == "openrouter":
        assert isinstance(message["content"], str) and "base64" not in message["content"]


def test_same_prompt_same_bytes_different_prompt_different_bytes(client: httpx.Client) -> None:
    with StandInGateway() as first, StandInGateway(style="newapi") as second:
        cat = pngs(client, post(client, first, chat("a cat")))
        cat_again = pngs(client, post(client, second, chat("a cat")))
        dog = pngs(client, post(client, first, chat("a dog")))
    assert cat == cat_again
    assert cat != dog


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, (256, 256)),
        ({"image_config": {"aspect_ratio": "16:9"}}, (256, 144)),
        ({"extra_body": {"google": {"image_config": {"aspect_ratio": "9:16"}}}}, (144, 256)),
        ({"image_config": {"aspect_ratio": "3:4", "image_size": "2K"}}, (384, 512)),
        (
            {"extra_body": {"google": {"image_config": {"aspect_ratio": "21:9", "image_size": "1K"}}}},
            (256, 110),
        ),
    ],
)
def test_aspect_ratio_and_size_in_both_dialects(
    extra: dict[str, Any], expected: tuple[int, int], gateway: StandInGateway, client: httpx.Client
) -> None:
    (png,) = pngs(client, post(client, gateway, chat("a wide valley", **extra)))
    assert size_of(png) == expected


def test_malformed_aspect_ratio_is_a_400(gateway: StandInGateway, client: httpx.Client) -> None:
    response = post(client, gateway, chat("x", image_config={"aspect_ratio": "wide"}))
    assert response.status_code == 400
    assert "aspect_ratio" in response.json()["error"]["message"]


@pytest.mark.parametrize("encode", [data_url, lambda image: data_url(image).split(",", 1)[1]])
def test_input_image_is_pasted_into_the_drawing(
    encode: Any, gateway: StandInGateway, client: httpx.Client
) -> None:
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    parts = [
        {"type": "text", "text": "make it red"},
        {"type": "image_url", "image_url": {"url": encode(red)}},
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    (edited,) = pngs(client, post(client, gateway, body))
    (plain,) = pngs(client, post(client, gateway, chat("make it red")))
    assert edited != plain
    picture = Image.open(io.BytesIO(edited)).convert("RGB")
    assert picture.getpixel((20, picture.height - 20)) == (255, 0, 0)
    assert gateway.calls_for("make it red") == 2


def test_unreadable_input_image_is_a_400(gateway: StandInGateway, client: httpx.Client) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}]
    response = post(client, gateway, {"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert response.status_code == 400
    assert "readable image" in response.json()["error"]["message"]


@pytest.mark.parametrize("error_style", ["openrouter", "newapi"])
def test_bearer_key_is_checked(error_style: Any, client: httpx.Client) -> None:
    with StandInGateway(api_key="sk-right", error_style=error_style) as gw:
        missing = post(client, gw, chat("x"))
        wrong = post(client, gw, chat("x"), headers={"Authorization": "Bearer sk-wrong"})
        right = post(client, gw, chat("x"), headers={"Authorization": "Bearer sk-right"})
    assert missing.status_code == wrong.status_code == 401
    error = wrong.json()["error"]
    if error_style == "openrouter":
        assert error["code"] == 401
    else:
        assert (error["type"], error["code"]) == ("new_api_error", "invalid_api_key")
    assert error["message"]
    assert len(pngs(client, right)) == 1


def test_latency_is_applied_per_request(client: httpx.Client) -> None:
    with StandInGateway(latency=0.05) as gw:
        started = time.monotonic()
        pngs(client, post(client, gw, chat("slow")))
        assert time.monotonic() - started >= 0.05


def observe(client: httpx.Client, gw: StandInGateway, prompt: str) -> str:
    """A one-line summary of what a request got, comparable between scripted faults and directives."""
    try:
        response = post(client, gw, chat(prompt), timeout=httpx.Timeout(5, read=0.5))
    except httpx.TransportError as exc:
        return type(exc).__name__
    payload = response.json()
    if response.status_code != 200:
        return f"{response.status_code} {payload['error']['code']}"
    choice = payload["choices"][0]
    return f"200 {choice['finish_reason']} {len(image_urls(choice['message']))} image(s)"


SUCCESS = "200 stop 1 image(s)"
FAULTS = [
    (Fault(status=429), "[[status:429]]", "429 429"),
    (Fault(), "[[status:500]]", "500 500"),
    (QUOTA_FAULT, "[[quota]]", "403 insufficient_user_quota"),
    (Fault(kind="refuse"), "[[refuse]]", "200 content_filter 0 image(s)"),
    (Fault(kind="text"), "[[text]]", "200 stop 0 image(s)"),
    (Fault(kind="reset"), "[[reset]]", "ReadError"),
    (Fault(kind="truncate"), "[[truncate]]", "RemoteProtocolError"),
    (Fault(kind="hang"), "[[hang]]", "ReadTimeout"),
    (Fault(kind="hang", seconds=0.05), "[[hang:0.05]]", SUCCESS),
]


@pytest.mark.parametrize(("fault", "directive", "expected"), FAULTS)
def test_scripted_fault_hits_the_next_request_only(
    fault: Fault, directive: str, expected: str, gateway: StandInGateway, client: httpx.Client
) -> None:
    gateway.script(fault)
    assert observe(client, gateway, "plain prompt") == expected
    assert observe(client, gateway, "plain prompt") == SUCCESS


@pytest.mark.parametrize(("fault", "directive", "expected"), FAULTS)
def test_directive_fault_hits_every_call_of_its_prompt(
    fault: Fault, directive: str, expected: str, gateway: StandInGateway, client: httpx.Client
) -> None:
    prompt = f"a fox {directive} at night"
    assert observe(client, gateway, prompt) == expected
    assert observe(client, gateway, prompt) == expected
    assert observe(client, gateway, "a fox at night") == SUCCESS
    assert gateway.calls_for(directive) == 2


def test_scripted_faults_are_consumed_in_order_before_directives(
    gateway: StandInGateway, client: httpx.Client
) -> None:
    gateway.script(Fault(status=502), Fault(kind="text"))
    assert observe(client, gateway, "[[refuse]]") == "502 502"
    assert observe(client, gateway, "[[refuse]]") == "200 stop 0 image(s)"
    assert observe(client, gateway, "[[refuse]]") == "200 content_filter 0 image(s)"


def test_status_fault_headers_and_bodies(client: httpx.Client) -> None:
    with StandInGateway(error_style="newapi") as gw:
        gw.script(
            Fault(status=429, retry_after="0", retry_after_ms=250),
            Fault(status=502, body="<html>Bad Gateway</html>"),
            Fault(status=400, body={"error": {"message": "custom"}}),
        )
        limited = post(client, gw, chat("x"))
        proxy = post(client, gw, chat("x"))
        custom = post(client, gw, chat("x"))
    assert limited.status_code == 429
    assert (limited.headers["Retry-After"], limited.headers["retry-after-ms"]) == ("0", "250")
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "new_api_error"
    assert proxy.status_code == 502
    assert proxy.headers["Content-Type"].startswith("text/plain")
    assert proxy.text == "<html>Bad Gateway</html>"
    assert custom.json() == {"error": {"message": "custom"}}


def test_status_directive_can_carry_retry_after(gateway: StandInGateway, client: httpx.Client) -> None:
    response = post(client, gateway, chat("[[status:429:0]] cat"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0"


def test_flaky_prompt_fails_n_times_then_succeeds_and_reset_forgets(
    gateway: StandInGateway, client: httpx.Client
) -> None:
    prompt = "a flaky robot [[flaky:2:0]]"
    statuses = [post(client, gateway, chat(prompt)) for _ in range(3)]
    assert [response.status_code for response in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "0"
    assert gateway.calls_for("flaky robot") == 3
    gateway.script(Fault(kind="reset"))
    gateway.reset()
    assert gateway.requests == []
    assert post(client, gateway, chat(prompt)).status_code == 503
    assert post(client, gateway, chat("after reset")).status_code == 200


def test_requests_are_recorded_from_concurrent_clients(client: httpx.Client) -> None:
    with StandInGateway(latency=0.05) as gw, ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda i: post(client, gw, chat(f"job {i:02d}")), range(20)))
    assert all(response.status_code == 200 for response in responses)
    assert sorted(body["messages"][0]["content"] for body in gw.requests) == [
        f"job {i:02d}" for i in range(20)
    ]
    assert gw.calls_for("job 1") == 10
    assert gw.calls_for("job") == 20


def test_paths_and_bad_requests(gateway: StandInGateway, client: httpx.Client) -> None:
    assert (
        len(pngs(client, client.post(f"{gateway.base_url}/chat/completions", json=chat("short path")))) == 1
    )
    assert client.post(f"{gateway.base_url}/v1/completions", json=chat("x")).status_code == 404
    assert client.get(f"{gateway.base_url}/images/{'0' * 32}.png").status_code == 404
    invalid = client.post(f"{gateway.base_url}/v1/chat/completions", content=b"{not json")
    assert invalid.status_code == 400
    assert client.post(f"{gateway.base_url}/v1/chat/completions", json=[1, 2]).status_code == 400


def test_stop_ends_hung_requests_quickly_and_frees_the_port() -> None:
    gw = StandInGateway().start()
    port = gw.port
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.post(f"{gw.base_url}/v1/chat/completions", json=chat("[[hang]]"), timeout=30)
        except httpx.TransportError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=hang)
    caller.start()
    deadline = time.monotonic() + 5
    while not gw.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped_at = time.monotonic()
    gw.stop()
    caller.join(timeout=5)
    assert not caller.is_alive()
    assert time.monotonic() - stopped_at < 2
    assert len(outcome) == 1
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        _ = gw.base_url
    gw.stop()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="n_images"):
        StandInGateway(n_images=0)
