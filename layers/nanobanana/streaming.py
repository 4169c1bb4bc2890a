"""Streamed answers: an OpenAI-style event stream (`Content-Type: text/event-stream`) as one answer.

Gateways stream when asked (`"stream": true`) and some stream image models whether asked or not. The
chunks (`choices[i].delta` with `content`, `images`, `refusal`; `finish_reason` on the last one; an
`error` object when the provider fails mid-stream, as OpenRouter documents) are assembled into the
chat.completion object that `responses.parse_response` reads, so a streamed answer is read exactly as a
whole one. The bytes come from the client's bounded body reader: this module only arranges them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nanobanana.bodies import content_type
from nanobanana.errors import ErrorType, PipelineError

EVENT_STREAM = "text/event-stream"


def is_event_stream(headers: Mapping[str, str]) -> bool:
    """Whether an answer's Content-Type says it is a server-sent event stream."""
    kind = content_type(headers)
    return kind.split(";", 1)[0].strip().lower() == EVENT_STREAM


def assemble(lines: Iterable[bytes | str]) -> dict[str, Any]:
    """The chat.completion object that the chunks of an event stream add up to (up to `data: [DONE]`).

    BAD_RESPONSE when an event is not a JSON object.
    """
    answer = _Assembly()
    for data in events(lines):
        if data.strip() == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):  # nested deeper than the parser goes: unreadable too
            raise PipelineError(
                ErrorType.BAD_RESPONSE, f"an event of the streamed answer is not JSON: {data[:60]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise PipelineError(ErrorType.BAD_RESPONSE, "an event of the streamed answer is not an object")
        answer.add(chunk)
    return answer.completion()


def events(lines: Iterable[bytes | str]) -> Iterator[str]:
    """The data of each event, per the server-sent events format: `data:` lines joined by newlines, an
    empty line ends an event, `:` comments (OpenRouter's keep-alive `: OPENROUTER PROCESSING`) and other
    fields are skipped."""
    data: list[str] = []
    for raw in lines:
        line = (raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw).rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


@dataclass
class _Choice:
    """One choice's deltas, gathered in order."""

    text: list[str] = field(default_factory=list)
    parts: list[Any] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    thinking_blocks: list[Any] = field(default_factory=list)
    finish: dict[str, str] = field(default_factory=dict)

    def add(self, choice: dict[str, Any]) -> None:
        delta: dict[str, Any] = next(
            (choice[key] for key in ("delta", "message") if isinstance(choice.get(key), dict)), {}
        )
        content = delta.get("content")
        if isinstance(content, str):
            self.text.append(content)
        elif isinstance(content, list):
            self.parts.extend(content)
        for name, into in (("images", self.images), ("thinking_blocks", self.thinking_blocks)):
            if isinstance(delta.get(name), list):
                into.extend(delta[name])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
        for key in ("finish_reason", "native_finish_reason"):
            if isinstance(choice.get(key), str):
                self.finish[key] = choice[key]

    def message(self) -> dict[str, Any]:
        text = "".join(self.text)
        content: Any = [{"type": "text", "text": text}, *self.parts] if self.parts else text
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.images:
            message["images"] = self.images
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.thinking_blocks:
            message["thinking_blocks"] = self.thinking_blocks
        return message


@dataclass
class _Assembly:
    model: str | None = None
    error: Any = None
    choices: dict[int, _Choice] = field(default_factory=dict)

    def add(self, chunk: dict[str, Any]) -> None:
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if self.error is None and chunk.get("error") is not None:
            self.error = chunk["error"]
        choices = chunk.get("choices")
        for position, choice in enumerate(choices if isinstance(choices, list) else []):
            if isinstance(choice, dict):
                index = choice.get("index")
                key = index if isinstance(index, int) and not isinstance(index, bool) else position
                self.choices.setdefault(key, _Choice()).add(choice)

    def completion(self) -> dict[str, Any]:
        completion: dict[str, Any] = {
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {"index": index, "message": choice.message(), **choice.finish}
                for index, choice in sorted(self.choices.items())
            ],
        }
        if self.error is not None:
            completion["error"] = self.error
        return completion
