"""Reading the gateway: the answer's images in every shape seen in the wild, and its error bodies.

Whatever a gateway sends, the result is an `Answer` with at least one image (or image URL to
download) or a typed `PipelineError`; nothing else escapes, so one odd answer fails one job.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nanobanana.errors import ErrorType, PipelineError
from nanobanana.images import GeneratedImage, decode_base64_image, to_image
from nanobanana.redaction import redact
from nanobanana.retry import parse_retry_after

#: Finish reasons (lower case) that mean the model declined to draw.
REFUSALS = frozenset(
    {
        "content_filter",
        "image_safety",
        "prohibited_content",
        "no_image",
        "safety",
        "recitation",
        "blocklist",
        "spii",
        "image_prohibited_content",
        "image_recitation",
    }
)
#: Error codes or types (any 4xx) that mean the account is out of money, whatever the status says.
BALANCE_CODES = frozenset({"insufficient_quota", "insufficient_user_quota", "insufficient_balance"})
#: Words of a 403 that mean "out of money" rather than "not allowed" (new-api answers in Chinese too).
_BALANCE_WORDS = re.compile(r"quota|balance|credit|额度|余额", re.IGNORECASE)
#: Linear on any text: possessive quantifiers, and no run may cross the `![` of the next candidate
#: (a failed candidate then costs at most the text up to the next one).
_MARKDOWN_IMAGE = re.compile(
    r"!\[[^\[\]]*+\]\(\s*+<?((?:data:|https?://)[^)\s<>\[\]]++)>?(?:\s++\"[^\"\[\]]*+\")?\s*+\)",
    re.IGNORECASE,
)
_BARE_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=_-]+", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s)\]>\"'<]+", re.IGNORECASE)
_IMAGE_FILE_URL = re.compile(r"\.(png|jpe?g|webp|gif)(?:[?#]|$)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_GAPS = re.compile(r"[ \t]{2,}")  # left where an image was taken out of a line
MAX_DETAIL = 300
#: The model's words kept in a record (a gateway may send megabytes of text).
MAX_TEXT = 10_000
#: Defaults of GatewayConfig's caps (deployment parameters MaxImagesPerAnswer, MaxImageBytes).
MAX_IMAGES = 10
MAX_IMAGE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """What the gateway answered: decoded images, image URLs still to download, references to images
    that could not be decoded (`broken`, why each failed: paid for, but nothing to keep), its words."""

    images: tuple[GeneratedImage, ...]
    urls: tuple[str, ...]
    text: str | None
    finish_reason: str | None
    model: str | None
    broken: tuple[str, ...] = ()

    @property
    def paid_images(self) -> int:
        """The images the gateway produced (and charged for), kept or not."""
        return len(self.images) + len(self.urls) + len(self.broken)


@dataclass
class _Found:
    """Images and words collected from every place an answer may put them, in order, at most
    `max_images` distinct references, each image at most `max_image_bytes`."""

    max_images: int
    max_image_bytes: int
    images: list[GeneratedImage] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    kept: set[bytes] = field(default_factory=set)

    def add(self, ref: Any) -> None:
        """One image reference: a data URL, an http(s) URL or bare base64."""
        if not isinstance(ref, str):
            raise PipelineError(ErrorType.BAD_RESPONSE, f"an image reference that is {type(ref).__name__}")
        ref = ref.strip()
        if ref in self.seen:  # some gateways repeat one image in content and in `images`
            return
        if len(self.seen) == self.max_images:
            raise PipelineError(
                ErrorType.BAD_RESPONSE,
                f"the answer holds more than {self.max_images} images (MaxImagesPerAnswer)",
                retryable=False,
            )
        self.seen.add(ref)
        if ref[:7].lower() == "http://" or ref[:8].lower() == "https://":
            self.urls.append(ref)
            return
        try:
            image = to_image(decode_base64_image(ref, self.max_image_bytes))
        except PipelineError as exc:
            self.broken.append(exc.detail)
            return
        if image.data not in self.kept:
            self.kept.add(image.data)
            self.images.append(image)

    def scan(self, text: str) -> None:
        """Take the images out of a text (markdown, bare data URLs, image-file URLs); keep the words."""
        rest = _MARKDOWN_IMAGE.sub(self._taking(lambda ref: True, group=1), text)
        rest = _BARE_DATA_URL.sub(self._taking(lambda ref: True), rest)
        rest = _BARE_URL.sub(self._taking(lambda ref: bool(_IMAGE_FILE_URL.search(ref))), rest)
        rest = _GAPS.sub(" ", rest).strip()
        if rest:
            self.words.append(rest)

    def _taking(self, wanted: Callable[[str], bool], group: int = 0) -> Callable[[re.Match[str]], str]:
        def take(match: re.Match[str]) -> str:
            ref = match[group]
            if not wanted(ref):
                return match[0]
            self.add(ref)
            return ""

        return take


def parse_response(
    payload: Any,
    *,
    secrets: Iterable[str] = (),
    max_images: int = MAX_IMAGES,
    max_image_bytes: int = MAX_IMAGE_BYTES,
) -> Answer:
    """The images of a chat completion in any of the shapes gateways use, or a PipelineError:
    BAD_RESPONSE when unreadable, CONTENT_FILTERED when the model answered without an image.

    Linear in the payload's size; past `max_images` distinct image references it stops (BAD_RESPONSE,
    not retryable: the same gateway would answer alike and be paid again)."""
    if not isinstance(payload, dict):
        raise PipelineError(
            ErrorType.BAD_RESPONSE, f"the answer is a JSON {type(payload).__name__}, not an object"
        )
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        if "error" in payload:
            raise _body_error(payload["error"], secrets)
        raise PipelineError(ErrorType.BAD_RESPONSE, "the answer has no choices")
    found = _Found(max_images, max_image_bytes)
    reasons: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise PipelineError(ErrorType.BAD_RESPONSE, "a choice without a message object")
        _read_message(choice["message"], found)
        reasons += [
            choice[key]
            for key in ("finish_reason", "native_finish_reason")
            if isinstance(choice.get(key), str)
        ]
        if "error" in choice and not found.seen:
            raise _body_error(choice["error"], secrets)
    text = redact("\n".join(found.words), secrets) or None
    finish_reason = reasons[0] if reasons else None
    model = payload.get("model")
    if not found.seen:
        refusal = next((reason for reason in reasons if reason.lower() in REFUSALS), None)
        if refusal is None and text is None:
            raise PipelineError(ErrorType.BAD_RESPONSE, "the answer holds neither an image nor text")
        said = f": {_clip(text)}" if text else ""
        why = f"finish_reason {_clip(redact(refusal, secrets))}" if refusal else "no image"
        raise PipelineError(ErrorType.CONTENT_FILTERED, f"the model answered with {why}{said}")
    return Answer(
        images=tuple(found.images),
        urls=tuple(found.urls),
        text=_clip(text, MAX_TEXT, spaces=False) if text else None,
        finish_reason=_clip(redact(finish_reason, secrets)) if finish_reason else None,
        model=_clip(redact(model, secrets)) if isinstance(model, str) else None,
        broken=tuple(found.broken),
    )


def parse_body(
    body: bytes,
    *,
    content_type: str = "",
    secrets: Iterable[str] = (),
    max_images: int = MAX_IMAGES,
    max_image_bytes: int = MAX_IMAGE_BYTES,
) -> Answer:
    """The Answer in a JSON body (see parse_response); BAD_RESPONSE for anything that is not JSON, too
    deep for the parser included."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise PipelineError(
            ErrorType.BAD_RESPONSE,
            f"the gateway's answer is not JSON ({content_type or 'no content type'}, {len(body)} bytes, "
            "truncated?)",
        ) from None
    return parse_response(payload, secrets=secrets, max_images=max_images, max_image_bytes=max_image_bytes)


def _read_message(message: dict[str, Any], found: _Found) -> None:
    content = message.get("content")
    if isinstance(content, str):
        found.scan(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                found.scan(part["text"])
            elif part.get("type") == "image_url":
                found.add(_url_of(part))
    if isinstance(message.get("refusal"), str):
        found.words.append(message["refusal"])
    images = message.get("images")
    if isinstance(images, list):
        for item in images:
            found.add(_url_of(item))


def _url_of(item: Any) -> Any:
    """The URL of an `image_url` part or `images` item: `{"image_url": {"url": u}}`, `{"image_url": u}`
    or `{"url": u}`."""
    if not isinstance(item, dict):
        return item
    inner = item.get("image_url", item)
    return inner.get("url") if isinstance(inner, dict) else inner


def classify_http_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    secrets: Iterable[str] = (),
) -> PipelineError:
    """The typed error of a non-2xx answer, quoting the gateway's own message (redacted, clipped).

    Reads OpenRouter `{"error": {"code", "message", "metadata"}}` and new-api
    `{"error": {"message", "type", "code"}}` bodies; `now` (epoch seconds, default the wall clock) reads
    an HTTP-date Retry-After.
    """
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict) and ("error" in parsed or "detail" in parsed or "message" in parsed):
        error = parsed.get("error", parsed.get("detail", parsed))
    else:
        error = body.decode("utf-8", errors="replace")
    return _classify(status, error, secrets, parse_retry_after(headers, time.time() if now is None else now))


def _body_error(error: Any, secrets: Iterable[str]) -> PipelineError:
    """An error object inside a 200 answer: typed by its numeric code when it has one."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return _classify(code, error, secrets, None)
    return PipelineError(
        ErrorType.BAD_RESPONSE, f"the gateway answered with an error: {_message(error, secrets)}"
    )


def _classify(status: int, error: Any, secrets: Iterable[str], retry_after: float | None) -> PipelineError:
    message = _message(error, secrets)
    codes = {str(error.get(key)).lower() for key in ("code", "type")} if isinstance(error, dict) else set()
    if status == 402 or (400 <= status < 500 and codes & BALANCE_CODES):
        error_type = ErrorType.INSUFFICIENT_BALANCE
    elif status == 403:
        balance = _BALANCE_WORDS.search(message) or any(_BALANCE_WORDS.search(code) for code in codes)
        error_type = ErrorType.INSUFFICIENT_BALANCE if balance else ErrorType.AUTHENTICATION
    elif status == 401:
        error_type = ErrorType.AUTHENTICATION
    elif status in (408, 504):
        error_type = ErrorType.TIMEOUT
    elif status == 429:
        error_type = ErrorType.RATE_LIMITED
    elif 500 <= status <= 599:
        error_type = ErrorType.SERVER_ERROR
    elif 400 <= status <= 499:
        error_type = ErrorType.CLIENT_ERROR
    else:
        error_type = ErrorType.BAD_RESPONSE
    return PipelineError(
        error_type,
        f"the gateway answered HTTP {status}: {message}",
        status_code=status,
        retry_after=retry_after,
    )


def _message(error: Any, secrets: Iterable[str]) -> str:
    """The gateway's words about an error (with the provider's raw message when OpenRouter has one)."""
    if isinstance(error, dict):
        words = [str(error.get("message") or error.get("detail") or "")]
        code = error.get("code") or error.get("type")
        if code:
            words.append(f"(code {code})")
        metadata = error.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("raw"), str):
            words.append(f"[{metadata.get('provider_name', 'provider')}: {metadata['raw']}]")
        text = " ".join(word for word in words if word)
    else:
        text = str(error)
    return _clip(redact(text, secrets)) or "no message"


def _clip(text: str, limit: int = MAX_DETAIL, *, spaces: bool = True) -> str:
    """`text` in at most `limit` characters (whitespace runs made one space, unless `spaces` is False)."""
    if spaces:
        text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
