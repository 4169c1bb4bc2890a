"""Request bodies: a `Job` as `/v1/chat/completions` JSON in the gateway's dialect.

OpenRouter-style gateways only return images when asked for the image modality and read
`image_config` at the top level; new-api/one-api resellers forward Gemini options from
`extra_body.google`. Everything else is plain OpenAI chat.

`auto` must never lose an option silently: a gateway that rejects one dialect's field as unknown gets
the other dialect (what it learned is kept for the process), and a result whose image does not have
the ratio asked for says so in its warnings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from nanobanana.config import Dialect
from nanobanana.images import InputImage, to_data_url
from nanobanana.jobs import Job

RequestDialect = Literal["openrouter", "newapi"]

#: Hosts (and their subdomains) that speak the OpenRouter dialect when the setting is `auto`.
OPENROUTER_HOSTS = ("openrouter.ai", "ai-gateway.vercel.sh")
#: The top-level fields only one dialect sends, as an upstream names them when it rejects one: Google
#: answers `Unknown name "google": Cannot find field.` when LiteLLM copies `extra_body` to the top of a
#: generateContent request; OpenAI-strict servers say `Unrecognized request argument supplied: modalities`.
DIALECT_FIELDS: dict[RequestDialect, tuple[str, ...]] = {
    "newapi": ("extra_body", "google"),
    "openrouter": ("modalities", "image_config"),
}
_UNKNOWN_FIELD = re.compile(
    r"unknown|unrecogni[sz]ed|not permitted|not allowed|unexpected|extra (?:inputs|fields)|cannot find field",
    re.IGNORECASE,
)
#: How far an image's width/height may be from the ratio asked for: Gemini's own sizes are up to 3 % off
#: (16:9 is 1344x768, 4:3 is 1184x864).
RATIO_TOLERANCE = 0.05
#: What each endpoint taught this process about its dialect (kept across clients: a new event loop or a
#: new key builds a new client, the gateway stays what it is).
_LEARNED: dict[str, RequestDialect] = {}


def resolve_dialect(setting: Dialect, base_url: str) -> RequestDialect:
    """The dialect to speak: the setting itself, or for `auto` the one the gateway's host is known for."""
    if setting != "auto":
        return setting
    host = (urlsplit(base_url).hostname or "").lower()
    known = any(host == known or host.endswith("." + known) for known in OPENROUTER_HOSTS)
    return "openrouter" if known else "newapi"


def learned_dialect(endpoint: str) -> RequestDialect | None:
    """The dialect an `auto` endpoint turned out to need, if it rejected the other one."""
    return _LEARNED.get(endpoint)


def learn_dialect(endpoint: str, dialect: RequestDialect) -> None:
    _LEARNED[endpoint] = dialect


def forget_dialects() -> None:
    """Forget what endpoints taught (for tests; a process keeps it for its life)."""
    _LEARNED.clear()


def other_dialect(dialect: RequestDialect, message: str) -> RequestDialect | None:
    """The dialect to try when a 400's `message` names a field only `dialect` sends as unknown."""
    if not _UNKNOWN_FIELD.search(message):
        return None
    if any(re.search(rf"\b{field}\b", message) for field in DIALECT_FIELDS[dialect]):
        return "newapi" if dialect == "openrouter" else "openrouter"
    return None


def ratio_warnings(aspect_ratio: str | None, sizes: Sequence[tuple[int, int] | None]) -> list[str]:
    """A warning for each image (its width and height, None if unknown) whose shape is not the ratio the
    job asked for: the user learns that the gateway dropped the option."""
    if aspect_ratio is None:
        return []
    across, down = (int(side) for side in aspect_ratio.split(":"))
    warnings = []
    for number, size in enumerate(sizes, start=1):
        if size is None or not size[1]:
            continue
        width, height = size
        if abs(width / height / (across / down) - 1) > RATIO_TOLERANCE:
            which = "the image" if len(sizes) == 1 else f"image {number}"
            warnings.append(
                f"aspect_ratio {aspect_ratio} was asked for but {which} is {width}x{height}: the gateway "
                "may have dropped the option (try --dialect openrouter or newapi)"
            )
    return warnings


def build_request(
    job: Job, *, model: str, dialect: RequestDialect, inputs: Sequence[InputImage], stream: bool = False
) -> dict[str, Any]:
    """The JSON body for one job; `stream` asks for an event stream (only the deployment decides it: a
    batch line's own `stream` is dropped)."""
    parts = [_image_part(image) for image in inputs]
    ours: dict[str, Any] = {"model": job.model or model, "messages": _messages(job, parts)}
    for name in ("temperature", "max_tokens", "seed"):
        value = getattr(job, name)
        if value is not None:
            ours[name] = value
    image_config = {
        key: value
        for key, value in (("aspect_ratio", job.aspect_ratio), ("image_size", job.image_size))
        if value is not None
    }
    if dialect == "openrouter":
        ours["modalities"] = ["image", "text"]
        if image_config:
            ours["image_config"] = image_config
    elif image_config:
        ours["extra_body"] = {"google": {"image_config": image_config}}
    body = _merge(job.options, ours)
    body.pop("stream", None)
    if stream:
        body["stream"] = True
    return body


def _image_part(image: InputImage) -> dict[str, Any]:
    url = image.url if image.data is None else to_data_url(image.data)
    return {"type": "image_url", "image_url": {"url": url}}


def _messages(job: Job, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's chat, with the input image parts added to its last user message."""
    if job.prompt is not None:
        return [{"role": "user", "content": [{"type": "text", "text": job.prompt}, *parts]}]
    messages = [message.model_dump(exclude_none=True) for message in job.messages or []]
    if not parts:
        return messages
    users = [index for index, message in enumerate(messages) if message["role"] == "user"]
    if not users:
        return [*messages, {"role": "user", "content": parts}]
    last = messages[users[-1]]
    content = last["content"]
    text = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    last["content"] = text + parts
    return messages


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` updated with `override`, merging nested objects so that a job's own settings win without
    dropping the other options of an OpenAI Batch body (e.g. more `image_config` keys)."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged
