"""The SSRF guard: image URLs reach public https addresses only, checked after resolution and on every
redirect, connected to at the address checked. Names resolve through resolvers the tests control; no
request leaves httpx.MockTransport except to a TLS server of the test's own on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gateway_cases import API_KEY, PNG, PUBLIC_ADDRESS, FakeClock, completion, requested_url
from test_client import BASE, JOB, Gateway, failed, succeeded

from nanobanana.client import GatewayClient, GatewayConfig, InputImage, Success
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.fetching import Pinned, UrlGuard, fetch, is_public
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline

INSIDE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # instance metadata
    "169.254.170.2",  # container credentials
    "100.64.0.1",  # shared address space
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "224.0.0.1",
    "::1",
    "fd00:ec2::254",  # instance metadata over IPv6
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "not an address",
]


@pytest.mark.parametrize("address", INSIDE)
def test_inside_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are(address: str) -> None:
    assert is_public(address)


class Names:
    """A resolver the test controls: name -> addresses, one list per lookup in turn; records lookups."""

    def __init__(self, table: dict[str, list[Sequence[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        answers = self.table[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]


async def generate(gateway: Gateway, names: Names, inputs: Sequence[InputImage] = ()) -> Success | object:
    clock = FakeClock()
    settings = GatewayConfig(base_url=BASE, api_key=API_KEY)
    client = GatewayClient(
        settings, transport=httpx.MockTransport(gateway), clock=clock, rng=random.Random(3), resolver=names
    )
    async with client:
        return await client.generate(JOB, list(inputs), Deadline.after(300.0, clock))


def linking(url: str) -> httpx.Response:
    return httpx.Response(200, json=completion(f"![i]({url})"))


@pytest.mark.parametrize("address", INSIDE[:-1])
async def test_a_name_that_resolves_inside_is_never_fetched(address: str) -> None:
    gateway = Gateway(linking("https://images.example/a.png"))
    result = failed(await generate(gateway, Names({"images.example": [[address]]})))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert "not a public address" in result.error.message
    assert not result.error.retryable  # the answer was paid for: not generated again
    assert (len(gateway.posts), gateway.gets) == (1, [])


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example/a.png",  # https only
        "https://169.254.169.254/latest/meta-data/iam/a.png",
        "https://[::1]:9001/2018-06-01/runtime/invocation/next.png",
        "https://127.0.0.1:9001/a.png",
    ],
)
async def test_plain_http_and_address_literals_inside_are_refused(url: str) -> None:
    names = Names({"images.example": [[PUBLIC_ADDRESS]]})
    gateway = Gateway(httpx.Response(200, json=completion("", images=[url])))
    result = failed(await generate(gateway, names))
    assert result.error.type is ErrorType.BAD_RESPONSE
    assert gateway.gets == []


async def test_one_inside_address_among_public_ones_is_enough_to_refuse() -> None:
    names = Names({"images.example": [[PUBLIC_ADDRESS, "10.0.0.7"]]})
    gateway = Gateway(linking("https://images.example/a.png"))
    assert "10.0.0.7" in failed(await generate(gateway, names)).error.message
    assert gateway.gets == []


async def test_the_request_goes_to_the_address_checked_with_the_name_for_tls_and_host() -> None:
    # DNS rebinding: public for the check, 169.254.169.254 for any later lookup. There is none.
    names = Names({"images.example": [[PUBLIC_ADDRESS], ["169.254.169.254"]]})
    gateway = Gateway(
        linking("https://images.example:8443/a.png?sig=1"),
        files={"https://images.example:8443/a.png?sig=1": httpx.Response(200, content=PNG)},
    )
    succeeded(await generate(gateway, names))
    (request,) = gateway.gets
    assert (request.url.host, request.url.port) == (PUBLIC_ADDRESS, 8443)
    assert request.headers["host"] == "images.example:8443"
    assert request.extensions["sni_hostname"] == "images.example"
    assert names.lookups == ["images.example"]


def redirect(location: str) -> httpx.Response:
    return httpx.Response(302, headers={"location": location})


async def test_each_redirect_is_checked_again_and_carries_no_key() -> None:
    names = Names(
        {"gw.example": [[PUBLIC_ADDRESS]], "cdn.example": [[PUBLIC_ADDRESS]], "evil.example": [["10.0.0.1"]]}
    )
    files = {
        "https://gw.example/v1/files/a.png": redirect("https://cdn.example/a.png"),
        "https://cdn.example/a.png": redirect("/b.png"),
        "https://cdn.example/b.png": httpx.Response(200, content=PNG),
        "https://gw.example/v1/files/c.png": redirect("https://evil.example/latest/meta-data"),
    }
    gateway = Gateway(linking("https://gw.example/v1/files/a.png"), files=files)
    succeeded(await generate(gateway, names))
    assert [requested_url(get) for get in gateway.gets][1:] == list(files)[1:3]
    assert gateway.gets[0].headers["authorization"] == f"Bearer {API_KEY}"  # the gateway's own origin
    assert all("authorization" not in get.headers for get in gateway.gets[1:])
    gateway = Gateway(linking("https://gw.example/v1/files/c.png"), files=files)
    result = failed(await generate(gateway, names))
    assert "not a public address" in result.error.message
    assert len(gateway.gets) == 1


async def test_more_than_three_redirects_are_not_followed() -> None:
    names = Names({"cdn.example": [[PUBLIC_ADDRESS]]})
    files = {f"https://cdn.example/{n}.png": redirect(f"/{n + 1}.png") for n in range(10)}
    gateway = Gateway(linking("https://cdn.example/0.png"), files=files)
    result = failed(await generate(gateway, names))
    assert "more than 3 redirects" in result.error.message
    assert len(gateway.gets) == 4


async def test_an_https_input_pointing_inside_fails_before_any_call() -> None:
    names = Names({"inputs.example": [["192.168.0.10"]], "ok.example": [[PUBLIC_ADDRESS]]})
    gateway = Gateway(linking("https://gw.example/x.png"))
    inputs = [InputImage(url="https://ok.example/a.png"), InputImage(url="https://inputs.example/cat.png")]
    result = failed(await generate(gateway, names, inputs))
    assert result.error.type is ErrorType.INPUT_ERROR
    assert (result.attempts, gateway.posts) == (0, [])
    http_input = failed(await generate(gateway, names, [InputImage(url="http://ok.example/a.png")]))
    assert http_input.error.type is ErrorType.INPUT_ERROR


async def test_a_name_that_does_not_resolve_is_retried_as_a_download() -> None:
    async def broken(host: str, port: int) -> Sequence[str]:
        raise OSError("temporary failure in name resolution")

    guard = UrlGuard(broken)
    with pytest.raises(PipelineError) as caught:
        await guard.pin("https://cdn.example/a.png", ErrorType.BAD_RESPONSE)
    assert caught.value.type is ErrorType.SERVER_ERROR
    with pytest.raises(PipelineError) as caught:
        await guard.pin("https://cdn.example/a.png", ErrorType.INPUT_ERROR)
    assert caught.value.type is ErrorType.INPUT_ERROR


async def test_fetch_refuses_what_the_guard_refuses_without_sending() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=PNG)

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
        with pytest.raises(PipelineError):
            await fetch(http, UrlGuard(Names({"x.example": [["127.0.0.1"]]})), "https://x.example/", limit=10)
    assert sent == []


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (and its key), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, ssl.SSLContext, list[str]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for images.test; yields its port, a client
    context that trusts it, and the SNI names it was reached with."""
    cert_file, key_file = _certificate(tmp_path, "images.test")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    seen: list[str] = []
    server_context.sni_callback = lambda sock, name, ctx: seen.append(name or "")  # type: ignore[func-returns-value]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\nHost: ", 1)[1].split(b"\r\n", 1)[0].decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(PNG) + PNG)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, ssl.create_default_context(cafile=str(cert_file)), seen


async def test_a_pinned_request_reaches_the_address_and_verifies_the_name(
    tls_server: tuple[int, ssl.SSLContext, list[str]],
) -> None:
    """The mechanism the guard relies on: the address in the URL, the name in SNI and Host, and the
    certificate checked against the name (so a pinned address cannot be served a wrong host)."""
    port, trust, seen = tls_server
    pinned = Pinned(
        f"https://127.0.0.1:{port}/a.png",
        headers={"Host": f"images.test:{port}"},
        extensions={"sni_hostname": "images.test"},
    )
    async with httpx.AsyncClient(verify=trust, trust_env=False) as http:
        response = await http.get(pinned.url, headers=pinned.headers, extensions=pinned.extensions)
        assert response.content == PNG
        assert seen == ["images.test", f"images.test:{port}"]
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await http.get(
                pinned.url, headers={"Host": "other.test"}, extensions={"sni_hostname": "other.test"}
            )


INSIDE_URL = "https://169.254.169.254/latest/a.png"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": INSIDE_URL}},
        {"type": "image_url", "image_url": INSIDE_URL},
        {"type": "image_url", "url": INSIDE_URL},  # every shape the answers' reader knows
    ],
)
async def test_image_urls_in_a_jobs_messages_are_checked_as_inputs(part: dict[str, object]) -> None:
    job = parse_job(
        {
            "id": "edit",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "make it blue"}, part]}],
        }
    )
    clock = FakeClock()
    gateway = Gateway(linking("https://gw.example/x.png"))
    settings = GatewayConfig(base_url=BASE, api_key=API_KEY)
    client = GatewayClient(settings, transport=httpx.MockTransport(gateway), clock=clock, resolver=Names({}))
    async with client:
        result = failed(await client.generate(job, [], Deadline.after(300.0, clock)))
    assert result.error.type is ErrorType.INPUT_ERROR
    assert gateway.posts == []
