"""Keeping the API key out of every record, log line and message, in whatever form it comes back.

Gateways echo what they were sent: the key as typed, upper-cased in an error, inside a base64 blob
(a Basic header, a JWT-like token), URL-encoded in a quoted URL. Each of those forms of each secret
is one alternative of a single case-insensitive pattern, so one pass over a text removes them all.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
#: Credentials that must never reach a result record, whether or not we know the key.
_CREDENTIALS = re.compile(r"(?i:bearer)\s+[^\s\"',]+|\bsk-[A-Za-z0-9_-]{8,}")
#: A variant shorter than this would redact ordinary words (a short key's base64 middle).
_MIN_VARIANT = 6


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any form of the secrets, nor anything that looks like a bearer credential."""
    pattern = _pattern(tuple(sorted(secret for secret in secrets if secret)))
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _CREDENTIALS.sub(REDACTED, text)


@lru_cache(maxsize=8)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    variants = {variant for secret in secrets for variant in _variants(secret)}
    if not variants:
        return None
    # longest first: a form that contains another is removed whole
    alternatives = sorted((re.escape(variant) for variant in variants), key=len, reverse=True)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _variants(secret: str) -> set[str]:
    """The secret as typed, URL-encoded, and in base64 (standard and URL-safe) at each of the three
    alignments it can have inside a longer base64 text, of the secret as typed, upper- and lower-cased."""
    found = {secret, quote(secret, safe=""), quote_plus(secret)}
    for cased in {secret, secret.upper(), secret.lower()}:
        for middle in _base64_middles(cased.encode()):
            found |= {middle, middle.replace("+", "-").replace("/", "_")}
    return {variant for variant in found if len(variant) >= _MIN_VARIANT}


def _base64_middles(data: bytes) -> list[str]:
    """The base64 characters that encode `data` alone, whatever bytes come before and after it."""
    middles = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode("ascii")
        start = -(-offset * 8 // 6)  # characters that mix in the bytes before
        end = (offset + len(data)) * 8 // 6  # characters made of the secret's bits only
        middles.append(encoded[start:end])
    return middles
