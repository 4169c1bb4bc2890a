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

from nanobanana.bodies import content_type
from nanobanana.errors import NO_IMAGE_ADVICE, ErrorType, PipelineError, Said
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
#: Error codes or types (any 4xx, or an error inside a 200) that mean a moderation filter blocked the
#: prompt or the answer: new-api's `prompt_blocked` (a Gemini promptFeedback.blockReason) and
#: `sensitive_words_detected` (types/error.go of QuantumNous/new-api), OpenAI's and Azure's
#: `content_filter` and `content_policy_violation`.
FILTER_CODES = frozenset(
    {"prompt_blocked", "sensitive_words_detected", "content_filter", "content_policy_violation"}
)
#: Statuses a proxy in front of a real gateway answers with an HTML page while the gateway is away:
#: these stay what their status says (retried), an HTML page with any other status is no gateway.
PROXY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: How long an endpoint that answered with a web page is not called again (a redeploy fixes ApiBaseUrl).
NOT_A_GATEWAY_SECONDS = 300.0
NOT_A_GATEWAY_ADVICE = (
    "check ApiBaseUrl (--api-base-url): it must be an OpenAI-compatible gateway's base URL, without "
    "/v1/chat/completions (see the README's gateway table)"
)
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
_IMAGE_FILE_URL = re.compile(r"\.(png|jpe?g|webp)(?:[?#]|$)", re.IGNORECASE)
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
    refused: bool = False

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
    BAD_RESPONSE when unreadable, CONTENT_FILTERED when the model answered without an image, the
    provider's own error (typed) when the answer carries one instead of an image. Each failure keeps
    what the gateway said (`said`: model, finish_reason, text) for the failed record.

    Linear in the payload's size; past `max_images` distinct image references it stops (BAD_RESPONSE,
    not retryable: the same gateway would answer alike and be paid again)."""
    if not isinstance(payload, dict):
        raise PipelineError(
            ErrorType.BAD_RESPONSE, f"the answer is a JSON {type(payload).__name__}, not an object"
        )
    model = payload.get("model")
    model = _clip(redact(model, secrets)) if isinstance(model, str) else None
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        if "error" in payload:
            raise _body_error(payload["error"], secrets, Said(model=model))
        raise PipelineError(ErrorType.BAD_RESPONSE, "the answer has no choices", said=Said(model=model))
    found = _Found(max_images, max_image_bytes)
    reasons: list[str] = []
    errors = [payload["error"]] if "error" in payload else []
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise PipelineError(ErrorType.BAD_RESPONSE, "a choice without a message object")
        _read_message(choice["message"], found)
        reasons += [
            choice[key]
            for key in ("finish_reason", "native_finish_reason")
            if isinstance(choice.get(key), str)
        ]
        if "error" in choice:
            errors.append(choice["error"])
    text = redact("\n".join(found.words), secrets) or None
    text = _clip(text, MAX_TEXT, spaces=False) if text else None
    finish_reason = _clip(redact(reasons[0], secrets)) if reasons else None
    if not found.seen:
        said = Said(model, finish_reason, text)
        if errors or "error" in (reason.lower() for reason in reasons):
            # OpenRouter's error during generation: HTTP 200, an `error` object, finish_reason "error"
            raise _body_error(errors[0] if errors else None, secrets, said)
        refusal = next((reason for reason in reasons if reason.lower() in REFUSALS), None)
        if refusal is None and text is None:
            raise PipelineError(
                ErrorType.BAD_RESPONSE, "the answer holds neither an image nor text", said=said
            )
        quoted = f": {_clip(text)}" if text else ""
        if refusal or found.refused:
            why = f"finish_reason {_clip(redact(refusal, secrets))}" if refusal else "a refusal"
            raise PipelineError(
                ErrorType.CONTENT_FILTERED, f"the model answered with {why}{quoted}", said=said
            )
        raise PipelineError(
            ErrorType.CONTENT_FILTERED,
            f"the gateway answered with text and no image{quoted}",
            advice=NO_IMAGE_ADVICE,
            said=said,
        )
    return Answer(
        images=tuple(found.images),
        urls=tuple(found.urls),
        text=text,
        finish_reason=finish_reason,
        model=model,
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
            if not isinstance(part, dict) or _is_thought(part):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                found.scan(part["text"])
            elif part.get("type") == "image_url":
                found.add(image_url_of(part))
    if isinstance(message.get("refusal"), str):
        found.words.append(message["refusal"])
        found.refused = True
    images = message.get("images")
    if isinstance(images, list):
        finals = [item for item in images if not _is_thought(item)]
        for item in finals[_draft_images(message, len(finals)) :]:
            found.add(image_url_of(item))


def _is_thought(item: Any) -> bool:
    """A part the gateway marks as the model's thinking (Gemini's `"thought": true` on a part, kept by
    gateways that pass parts through): its image is a draft, not the answer."""
    return isinstance(item, dict) and item.get("thought") is True


def _draft_images(message: dict[str, Any], images: int) -> int:
    """How many leading `images` are thought drafts that the gateway did not mark.

    LiteLLM puts every inlineData image of a Gemini answer into `message.images`, thought parts first,
    unmarked; it also makes one `thinking_blocks` entry per thought part, with the part's text, which an
    image part has not (litellm/llms/vertex_ai/gemini/vertex_and_google_ai_studio_gemini.py,
    _extract_image_response_from_parts and _extract_thinking_blocks_from_parts). So each empty thinking
    block is one draft image; the last image is always kept.
    """
    blocks = message.get("thinking_blocks")
    if not isinstance(blocks, list):
        return 0
    drafts = sum(isinstance(block, dict) and not block.get("thinking") for block in blocks)
    return min(drafts, images - 1) if images else 0


def image_url_of(item: Any) -> Any:
    """The URL of an `image_url` part or `images` item: `{"image_url": {"url": u}}`, `{"image_url": u}`
    or `{"url": u}` (an answer's parts, and a job's own that the client checks before sending them)."""
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

    Reads OpenRouter `{"error": {"code", "message", "metadata"}}`, new-api `{"error": {"message", "type",
    "code"}}`, LiteLLM (`code` a string) and Google (`status`, `details`) bodies; the wait it asks for
    from its headers or a Google RetryInfo (`now`: epoch seconds, default the wall clock, reads an
    HTTP-date Retry-After).
    """
    page = not_a_gateway(status, body, headers)
    if page is not None:
        return page
    text = body.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict) and ("error" in parsed or "detail" in parsed or "message" in parsed):
        error = parsed.get("error", parsed.get("detail", parsed))
    else:
        error = text
    wait = parse_retry_after(headers, time.time() if now is None else now, text)
    return _classify(status, error, secrets, wait)


class NotAGateway(PipelineError):
    """A web page where the gateway's JSON belongs: the client stops calling that URL for a while."""


def not_a_gateway(status: int, body: bytes, headers: Mapping[str, str]) -> NotAGateway | None:
    """A web page where a gateway's JSON belongs (a web server's 404, 405, 500 or 501 to a POST, a site's
    front page): not an OpenAI-compatible gateway, whatever its status. Retried only after
    NOT_A_GATEWAY_SECONDS (a proxy's page for a status in PROXY_STATUSES is left to that status)."""
    kind = content_type(headers)
    start = body[:64].lstrip().lower()
    page = "html" in kind.lower() or start.startswith((b"<!doctype html", b"<html"))
    if not page or status in PROXY_STATUSES:
        return None
    return NotAGateway(
        ErrorType.BAD_RESPONSE,
        f"the gateway URL answered HTTP {status} with a web page (HTML), not an OpenAI-compatible "
        "gateway's JSON; it is not called again for a few minutes",
        status_code=status,
        retry_after=NOT_A_GATEWAY_SECONDS,
        advice=NOT_A_GATEWAY_ADVICE,
    )


def _body_error(error: Any, secrets: Iterable[str], said: Said) -> PipelineError:
    """An error object inside a 200 answer (or one that came without choices): typed by its numeric code
    when it has one (OpenRouter: a number, LiteLLM: a string of digits), as a moderation block by a filter
    code, else the provider failed while generating (OpenRouter's finish_reason "error"): retryable."""
    code = error.get("code") if isinstance(error, dict) else None
    status = int(code) if isinstance(code, int | str) and str(code).isdigit() else 0
    if 400 <= status <= 599 and not isinstance(code, bool):
        return _classify(status, error, secrets, None, said)
    filtered = bool(_codes(error) & FILTER_CODES)
    return PipelineError(
        ErrorType.CONTENT_FILTERED if filtered else ErrorType.SERVER_ERROR,
        f"the gateway answered with an error instead of an image: {_message(error, secrets)}",
        said=said,
    )


def _classify(
    status: int, error: Any, secrets: Iterable[str], retry_after: float | None, said: Said | None = None
) -> PipelineError:
    message = _message(error, secrets)
    codes = _codes(error)
    if status == 402 or (400 <= status < 500 and codes & BALANCE_CODES):
        error_type = ErrorType.INSUFFICIENT_BALANCE
    elif 400 <= status < 500 and (codes & FILTER_CODES or _flagged(error)):
        error_type = ErrorType.CONTENT_FILTERED
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
        said=said,
    )


def _codes(error: Any) -> set[str]:
    """An error's `code` and `type`, lower case (new-api puts its code in both)."""
    return {str(error.get(key)).lower() for key in ("code", "type")} if isinstance(error, dict) else set()


def _flagged(error: Any) -> bool:
    """OpenRouter's moderation error: `metadata.reasons` and `flagged_input` (openrouter.ai/docs/api/
    reference/errors-and-debugging, "Moderation Errors")."""
    metadata = error.get("metadata") if isinstance(error, dict) else None
    return isinstance(metadata, dict) and ("reasons" in metadata or "flagged_input" in metadata)


def _message(error: Any, secrets: Iterable[str]) -> str:
    """The gateway's words about an error, with OpenRouter's provider message and moderation reasons."""
    if isinstance(error, dict):
        words = [str(error.get("message") or error.get("detail") or "")]
        code = error.get("code") or error.get("type")
        if code:
            words.append(f"(code {code})")
        metadata = error.get("metadata")
        if isinstance(metadata, dict):
            if isinstance(metadata.get("raw"), str):
                words.append(f"[{metadata.get('provider_name', 'provider')}: {metadata['raw']}]")
            reasons = metadata.get("reasons")
            if isinstance(reasons, list) and reasons:
                words.append(f"flagged for: {', '.join(str(reason) for reason in reasons)}")
            if isinstance(metadata.get("flagged_input"), str):
                words.append(f"in: {metadata['flagged_input']!r}")
        text = " ".join(word for word in words if word)
    elif error is None:
        text = ""
    else:
        text = str(error)
    return _clip(redact(text, secrets)) or "no message"


def _clip(text: str, limit: int = MAX_DETAIL, *, spaces: bool = True) -> str:
    """`text` in at most `limit` characters (whitespace runs made one space, unless `spaces` is False)."""
    if spaces:
        text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
