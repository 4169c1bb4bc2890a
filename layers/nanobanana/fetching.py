"""Fetching a URL a stranger chose (an image link in an answer) without letting it reach inside.

An answer may link to the instance metadata address, the container credentials address, the Lambda
Runtime API on 127.0.0.1:9001 or a private network. So a URL is fetched only over https, only from a
name whose every address is public, checked after name resolution and again on every redirect (at
most MAX_REDIRECTS, followed here, never by httpx).

DNS rebinding (a name that resolves to a public address for the check and to a private one for the
connection) cannot happen: the name is resolved once, here, and the request goes to the checked
address itself (the URL's host replaced by the address literal, which nothing resolves again), with
the name kept where TLS and HTTP need it: the `sni_hostname` extension (httpcore sends it as SNI and
verifies the certificate against it) and the Host header. Connections are not kept alive, so a
connection opened for one name is never reused for another name at the same address.

The gateway's own origin is trusted as the gateway is (it is the operator's choice, and the stand-in
of the local runner serves its images from 127.0.0.1 that way): its URLs are fetched as they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from nanobanana.bodies import read_body
from nanobanana.errors import ErrorType, PipelineError

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: NAT64's well-known prefix: its addresses reach the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

#: (host, port) -> the addresses the name resolves to.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
Origin = tuple[str, str]


async def system_resolver(host: str, port: int) -> list[str]:
    """The name's addresses, as the operating system resolves them."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: str) -> bool:
    """True for a globally reachable unicast address; False for loopback, private, link-local (the
    metadata and credentials addresses), shared, reserved, multicast, and IPv6 forms that embed one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(str(embedded))
    return ip.is_global and not ip.is_multicast


def origin(url: str) -> Origin:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def shorten(url: str) -> str:
    """A URL fit for a message: no query string (signed URLs carry tokens), at most 120 characters."""
    bare = url.split("?", 1)[0].split("#", 1)[0]
    return bare if len(bare) <= 120 else bare[:117] + "..."


@dataclass(frozen=True)
class Pinned:
    """A request for a checked URL: to its checked address, with its name for TLS and Host."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


class UrlGuard:
    """Decides whether a URL may be fetched, and where to connect for it."""

    def __init__(self, resolver: Resolver = system_resolver, trusted: Collection[Origin] = ()) -> None:
        self._resolve = resolver
        self._trusted = frozenset(trusted)

    async def pin(self, url: str, error_type: ErrorType) -> Pinned:
        """The request to make for `url`, or a PipelineError of `error_type` that says why not."""
        shown = shorten(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise PipelineError(error_type, f"an image URL that cannot be fetched: {shown}") from None
        if origin(url) in self._trusted:
            return Pinned(url)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise PipelineError(error_type, f"{shown} is not an https URL; only https images are fetched")
        host = parts.hostname
        addresses = await self._addresses(host, port or 443, shown, error_type)
        refused = [address for address in addresses if not is_public(address)]
        if refused or not addresses:
            raise PipelineError(
                error_type,
                f"{shown} resolves to {refused[0] if refused else 'no address'}, which is not a public "
                "address; images are fetched from public https addresses only",
            )
        address = addresses[0]
        netloc = f"[{address}]" if ":" in address else address
        if port is not None:
            netloc += f":{port}"
        return Pinned(
            urlunsplit(("https", netloc, parts.path, parts.query, "")),
            headers={"Host": parts.netloc.rpartition("@")[2]},
            extensions={"sni_hostname": host},
        )

    async def _addresses(self, host: str, port: int, shown: str, error_type: ErrorType) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            host.encode("idna")
            return list(await self._resolve(host, port))
        except (OSError, UnicodeError) as exc:
            # a name that does not resolve now may resolve in a moment: worth another try
            kind = ErrorType.SERVER_ERROR if error_type is ErrorType.BAD_RESPONSE else error_type
            raise PipelineError(
                kind, f"the name of {shown} does not resolve ({type(exc).__name__})"
            ) from None


async def fetch(
    http: httpx.AsyncClient,
    guard: UrlGuard,
    url: str,
    *,
    limit: int,
    headers: dict[str, str] | None = None,
    error_type: ErrorType = ErrorType.BAD_RESPONSE,
) -> bytes:
    """The body at `url` (at most `limit` bytes), every hop checked by `guard`; `headers` go only to
    `url`'s own origin. A non-2xx answer is a PipelineError of `error_type` with its status code."""
    first = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        pinned = await guard.pin(url, error_type)
        sent = {**pinned.headers, **(headers if headers and origin(url) == first else {})}
        shown = shorten(url)
        async with http.stream("GET", pinned.url, headers=sent, extensions=pinned.extensions) as response:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if not response.is_success:
                raise PipelineError(
                    error_type,
                    f"{shown} answered HTTP {response.status_code}",
                    status_code=response.status_code,
                )
            return await read_body(response, limit, what=shown, error_type=error_type)
    raise PipelineError(error_type, f"{shorten(url)}: more than {MAX_REDIRECTS} redirects")
