"""The real client through a real LiteLLM proxy (`litellm[proxy]` in `.venv-litellm`, `make litellm`) in
front of a fake Gemini API that answers as Google documents generateContent.

Nothing leaves 127.0.0.1: LiteLLM reads its bundled model cost map, sends no telemetry, and any other
outbound request goes to a proxy address that refuses connections.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from nanobanana.client import Failure, GatewayClient, GatewayConfig, Success
from nanobanana.errors import ErrorType
from nanobanana.jobs import parse_job
from nanobanana.retry import Deadline, SystemClock

ROOT = Path(__file__).resolve().parents[2]
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MASTER_KEY = "sk-litellm-master-0123456789"
MODEL = "gemini-2.5-flash-image"

pytestmark = pytest.mark.skipif(not LITELLM.exists(), reason="no .venv-litellm: run `make litellm`")

#: The top-level fields of a GenerateContentRequest (https://ai.google.dev/api/generate-content#request-body),
#: in both spellings Google's JSON parser accepts; Google rejects any other field.
REQUEST_FIELDS = {
    "contents",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
}
SIZES = {"1:1": (64, 64), "16:9": (128, 72), "9:16": (72, 128), "4:3": (96, 72), "3:2": (96, 64)}


def png(size: tuple[int, int], color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def google_error(code: int, status: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """Google's error body (https://ai.google.dev/gemini-api/docs/troubleshooting, google.rpc.Status)."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def generate_content(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Google's answer to a generateContent request (https://ai.google.dev/api/generate-content#response-body)."""
    unknown = sorted(set(request) - REQUEST_FIELDS)
    if unknown:
        message = f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
        violation = {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"description": message}],
        }
        return 400, google_error(400, "INVALID_ARGUMENT", message, [violation])
    prompt = " ".join(
        str(part.get("text", ""))
        for content in request.get("contents", [])
        for part in content.get("parts", [])
    )
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302}
    if "[[429]]" in prompt:
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}
        return 429, google_error(
            429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [retry]
        )
    if "[[503]]" in prompt:
        return 503, google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if "[[safety]]" in prompt:  # a blocked prompt: promptFeedback.blockReason and no candidates
        return 200, {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": usage,
            "modelVersion": MODEL,
        }
    config = request.get("generationConfig") or request.get("generation_config") or {}
    image_config = config.get("imageConfig") or config.get("image_config") or {}
    ratio = image_config.get("aspectRatio") or image_config.get("aspect_ratio") or "1:1"
    final = {"inlineData": {"mimeType": "image/png", "data": png(SIZES[ratio], (250, 220, 40))}}
    parts: list[dict[str, Any]] = [{"text": "Here is your banana."}, final]
    if "[[thoughts]]" in prompt:  # Gemini 3 thinks in a draft image (thought: true) before the final one
        draft = {"inlineData": {"mimeType": "image/png", "data": png((16, 16), (0, 0, 255))}, "thought": True}
        parts = [{"text": "Planning the composition.", "thought": True}, draft, *parts]
    candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}
    return 200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL, "responseId": "r1"}


class FakeGemini(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.requests.append(request)
        status, answer = generate_content(request)
        if ":streamGenerateContent" in self.path and status == 200:
            data, kind = f"data: {json.dumps(answer)}\r\n\r\n".encode(), "text/event-stream"
        else:
            data, kind = json.dumps(answer).encode(), "application/json; charset=UTF-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gemini = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    threading.Thread(target=gemini.serve_forever, daemon=True).start()
    folder = tmp_path_factory.mktemp("litellm")
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"gemini/{MODEL}",
                    "api_key": "fake-google-key",
                    "api_base": f"http://127.0.0.1:{gemini.server_address[1]}/v1beta",
                },
            }
        ],
        "litellm_settings": {"num_retries": 0, "request_timeout": 30, "telemetry": False},
        "general_settings": {"master_key": MASTER_KEY},
    }
    (folder / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        # whatever else it might fetch goes to a port that refuses connections
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = (folder / "litellm.log").open("w")
    command = [
        str(LITELLM),
        "--config",
        str(folder / "config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server, folder / "litellm.log")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        gemini.shutdown()
        gemini.server_close()


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"litellm exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"litellm did not start in 120 s:\n{log.read_text()[-3000:]}")


async def generate(base: str, prompt: str, **fields: Any) -> Success | Failure:
    clock = SystemClock()
    config = GatewayConfig(
        base_url=base, api_key=MASTER_KEY, model=MODEL, max_attempts=1, **fields.pop("config", {})
    )
    async with GatewayClient(config, clock=clock) as client:
        return await client.generate(
            parse_job({"id": "j", "prompt": prompt, **fields}), [], Deadline.after(60, clock)
        )


def size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


async def test_auto_gets_the_aspect_ratio_to_gemini_through_litellm(proxy: str) -> None:
    FakeGemini.requests.clear()
    result = await generate(proxy, "a wide banana", aspect_ratio="16:9")
    assert isinstance(result, Success), result
    assert size(result.images[0].data) == SIZES["16:9"]
    assert result.warnings == []
    first, *rest = FakeGemini.requests
    assert "google" in first  # LiteLLM copied the newapi dialect's extra_body to the top: rejected
    sent = rest[-1]["generationConfig"]
    assert (sent.get("imageConfig") or sent.get("image_config")) in (
        {"aspectRatio": "16:9"},
        {"aspect_ratio": "16:9"},
    )
    again = await generate(proxy, "another wide banana", aspect_ratio="16:9")  # learned: one call
    assert isinstance(again, Success) and again.attempts == 1


async def test_auto_recognises_litellm_before_a_job_asks_for_a_ratio(proxy: str) -> None:
    assert isinstance(await generate(proxy, "a plain banana"), Success)
    FakeGemini.requests.clear()
    result = await generate(proxy, "a tall banana", aspect_ratio="9:16")
    assert isinstance(result, Success) and result.attempts == 1
    assert size(result.images[0].data) == SIZES["9:16"]
    assert "google" not in FakeGemini.requests[0]


async def test_a_streamed_answer_through_litellm(proxy: str) -> None:
    result = await generate(proxy, "a streamed banana", aspect_ratio="9:16", config={"stream": True})
    assert isinstance(result, Success), result
    assert size(result.images[0].data) == SIZES["9:16"]


async def test_the_final_image_comes_first_when_gemini_thinks_in_images(proxy: str) -> None:
    result = await generate(proxy, "a thoughtful banana [[thoughts]]", aspect_ratio="3:2")
    assert isinstance(result, Success), result
    assert size(result.images[0].data) == SIZES["3:2"]


@pytest.mark.parametrize(
    ("directive", "expected", "retryable"),
    [
        ("[[429]]", ErrorType.RATE_LIMITED, True),
        ("[[503]]", ErrorType.SERVER_ERROR, True),
        ("[[safety]]", ErrorType.CONTENT_FILTERED, False),
    ],
)
async def test_gemini_failures_through_litellm_are_classified(
    proxy: str, directive: str, expected: ErrorType, retryable: bool
) -> None:
    result = await generate(proxy, f"a banana {directive}")
    assert isinstance(result, Failure), result
    assert result.error.type is expected, result.error.message
    assert result.error.retryable is retryable
    if directive == "[[429]]":
        assert result.retry_after is not None and result.retry_after >= 41  # Google's RetryInfo, relayed
        assert re.search(r"exhausted", result.error.message, re.IGNORECASE)
