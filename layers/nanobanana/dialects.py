"""Request bodies: a `Job` as `/v1/chat/completions` JSON in the gateway's dialect.

OpenRouter-style gateways only return images when asked for the image modality and read
`image_config` at the top level; new-api/one-api resellers forward Gemini options from
`extra_body.google`. Everything else is plain OpenAI chat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from nanobanana.config import Dialect
from nanobanana.images import InputImage, to_data_url
from nanobanana.jobs import Job

RequestDialect = Literal["openrouter", "newapi"]

#: Hosts (and their subdomains) that speak the OpenRouter dialect when the setting is `auto`.
OPENROUTER_HOSTS = ("openrouter.ai", "ai-gateway.vercel.sh")


def resolve_dialect(setting: Dialect, base_url: str) -> RequestDialect:
    """The dialect to speak: the setting itself, or for `auto` the one the gateway's host is known for."""
    if setting != "auto":
        return setting
    host = (urlsplit(base_url).hostname or "").lower()
    known = any(host == known or host.endswith("." + known) for known in OPENROUTER_HOSTS)
    return "openrouter" if known else "newapi"


def build_request(
    job: Job, *, model: str, dialect: RequestDialect, inputs: Sequence[InputImage]
) -> dict[str, Any]:
    """The JSON body for one job. Never streaming: the client reads one whole answer."""
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
