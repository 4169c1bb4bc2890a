"""Request bodies in each dialect."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_cases import JPEG, PNG, data_url

from nanobanana.dialects import build_request, other_dialect, ratio_warnings, resolve_dialect
from nanobanana.errors import ErrorType, PipelineError
from nanobanana.images import InputImage
from nanobanana.jobs import parse_job

DEFAULT = "gemini-2.5-flash-image-preview"


@pytest.mark.parametrize(
    ("setting", "base_url", "expected"),
    [
        ("auto", "https://openrouter.ai/api/v1", "openrouter"),
        ("auto", "https://OpenRouter.ai/api", "openrouter"),
        ("auto", "https://eu.openrouter.ai/api/v1", "openrouter"),
        ("auto", "https://ai-gateway.vercel.sh/v1", "openrouter"),
        ("auto", "https://api.reseller.example/v1", "newapi"),
        ("auto", "https://openrouter.ai.evil.example/v1", "newapi"),
        ("auto", "http://127.0.0.1:8080", "newapi"),
        ("newapi", "https://openrouter.ai/api/v1", "newapi"),
        ("openrouter", "http://127.0.0.1:8080", "openrouter"),
    ],
)
def test_resolve_dialect(setting: Any, base_url: str, expected: str) -> None:
    assert resolve_dialect(setting, base_url) == expected


def test_openrouter_body_asks_for_images_and_puts_image_config_on_top() -> None:
    job = parse_job({"prompt": "a cat", "aspect_ratio": "16:9", "image_size": "2K", "temperature": 0.5})
    body = build_request(job, model=DEFAULT, dialect="openrouter", inputs=[])
    assert body == {
        "model": DEFAULT,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}],
        "temperature": 0.5,
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
    }


def test_newapi_body_puts_image_config_under_extra_body_google() -> None:
    job = parse_job({"prompt": "a cat", "aspect_ratio": "9:16", "model": "gemini-2.5-flash-image", "seed": 3})
    body = build_request(job, model=DEFAULT, dialect="newapi", inputs=[])
    assert body == {
        "model": "gemini-2.5-flash-image",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}],
        "seed": 3,
        "extra_body": {"google": {"image_config": {"aspect_ratio": "9:16"}}},
    }


@pytest.mark.parametrize("dialect", ["openrouter", "newapi"])
def test_no_image_config_when_the_job_sets_none(dialect: Any) -> None:
    body = build_request(
        parse_job({"prompt": "x", "max_tokens": 50}), model=DEFAULT, dialect=dialect, inputs=[]
    )
    assert "image_config" not in body
    assert "extra_body" not in body
    assert body["max_tokens"] == 50


def test_input_images_follow_the_prompt_as_data_urls_typed_by_their_bytes() -> None:
    inputs = [InputImage(data=JPEG), InputImage(url="https://example.com/b.png")]
    body = build_request(parse_job({"prompt": "merge"}), model=DEFAULT, dialect="newapi", inputs=inputs)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "merge"},
        {"type": "image_url", "image_url": {"url": data_url(JPEG, "image/jpeg")}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
    ]


def test_unreadable_input_bytes_are_an_input_error() -> None:
    with pytest.raises(PipelineError) as caught:
        build_request(
            parse_job({"prompt": "x"}), model=DEFAULT, dialect="newapi", inputs=[InputImage(data=b"??")]
        )
    assert caught.value.type is ErrorType.INPUT_ERROR


def test_messages_pass_as_given_with_inputs_added_to_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "draw a cat"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "now make it blue", "name": "ann"},
    ]
    body = build_request(
        parse_job({"messages": messages}), model=DEFAULT, dialect="openrouter", inputs=[InputImage(data=PNG)]
    )
    assert body["messages"][:3] == messages[:3]
    assert body["messages"][3] == {
        "role": "user",
        "name": "ann",
        "content": [
            {"type": "text", "text": "now make it blue"},
            {"type": "image_url", "image_url": {"url": data_url(PNG)}},
        ],
    }


def test_inputs_extend_a_list_content_and_messages_without_inputs_stay_untouched() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "edit"}, part]}]
    job = parse_job({"messages": messages})
    assert build_request(job, model=DEFAULT, dialect="newapi", inputs=[])["messages"] == messages
    extended = build_request(job, model=DEFAULT, dialect="newapi", inputs=[InputImage(data=PNG)])["messages"]
    assert extended[0]["content"][:2] == messages[0]["content"]
    assert extended[0]["content"][2]["image_url"]["url"] == data_url(PNG)
    assert job.messages is not None
    assert job.messages[0].content == messages[0]["content"]


def test_inputs_without_any_user_message_get_one() -> None:
    job = parse_job({"messages": [{"role": "system", "content": "draw"}]})
    body = build_request(job, model=DEFAULT, dialect="newapi", inputs=[InputImage(data=PNG)])
    assert body["messages"][-1] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": data_url(PNG)}}],
    }


@pytest.mark.parametrize("dialect", ["openrouter", "newapi"])
def test_batch_line_options_pass_through_but_never_stream(dialect: Any) -> None:
    job = parse_job(
        {
            "custom_id": "c1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "google/gemini-2.5-flash-image",
                "messages": [{"role": "user", "content": "a fox"}],
                "stream": False,
                "top_p": 0.9,
                "user": "team-a",
            },
        }
    )
    body = build_request(job, model=DEFAULT, dialect=dialect, inputs=[])
    assert body["top_p"] == 0.9
    assert body["user"] == "team-a"
    assert body["model"] == "google/gemini-2.5-flash-image"
    assert "stream" not in body


def test_options_merge_with_the_jobs_own_image_config() -> None:
    job = parse_job({"prompt": "x", "aspect_ratio": "1:1"}).model_copy(
        update={"options": {"image_config": {"aspect_ratio": "4:3", "extra": 1}, "stream": True}}
    )
    body = build_request(job, model=DEFAULT, dialect="openrouter", inputs=[])
    assert body["image_config"] == {"aspect_ratio": "1:1", "extra": 1}
    assert "stream" not in body
    assert build_request(job, model=DEFAULT, dialect="newapi", inputs=[], stream=True)["stream"] is True


@pytest.mark.parametrize(
    ("dialect", "message", "expected"),
    [
        ("newapi", 'Invalid JSON payload received. Unknown name "google": Cannot find field.', "openrouter"),
        ("newapi", "extra_body: Extra inputs are not permitted", "openrouter"),
        ("openrouter", "Unrecognized request argument supplied: modalities", "newapi"),
        ("openrouter", "Unknown name \"image_config\" at 'generation_config'", "newapi"),
        ("newapi", "Unrecognized request argument supplied: modalities", None),  # not a newapi field
        ("newapi", "the google model is overloaded", None),  # no word of rejection
        ("openrouter", "max_tokens: Extra inputs are not permitted", None),
    ],
)
def test_other_dialect_only_for_a_rejected_field_of_this_one(
    dialect: Any, message: str, expected: str | None
) -> None:
    assert other_dialect(dialect, message) == expected


@pytest.mark.parametrize(
    ("ratio", "sizes", "warned"),
    [
        ("16:9", [(1344, 768)], []),  # Gemini's own 16:9, 1.5 % off
        ("4:3", [(1184, 864)], []),
        ("21:9", [(1536, 672)], []),
        ("16:9", [(1024, 1024)], [1]),
        ("9:16", [(768, 1344), (1024, 1024)], [2]),
        ("1:1", [None, (0, 0)], []),  # unknown sizes say nothing
        (None, [(1024, 1024)], []),
    ],
)
def test_ratio_warnings_name_each_image_without_the_ratio(
    ratio: str | None, sizes: list[tuple[int, int] | None], warned: list[int]
) -> None:
    warnings = ratio_warnings(ratio, sizes)
    assert len(warnings) == len(warned)
    for warning, number in zip(warnings, warned, strict=True):
        assert f"aspect_ratio {ratio} was asked for" in warning
        assert ("the image is" if len(sizes) == 1 else f"image {number} is") in warning
