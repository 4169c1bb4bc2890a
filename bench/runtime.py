"""Cold start and memory of what `sam build` ships, in the Lambda-like runtime of `nanobanana_cli.lambdaenv`
(CPython 3.13, the built layer and boto3 only, Lambda's variables, tracing on).

1. The cold import of each handler (the module Lambda imports at init, median of three new environments)
   as a ratio to `import boto3, httpx` in the same runtime (goal: at most 1.3).
2. The peak RSS of one Generate environment after one invocation of 10 jobs whose answers carry images
   of about 2 MB (goal: at most 256 MB).
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
from pathlib import Path
from typing import IO, Any
from unittest import mock

import boto3
from PIL import Image

from nanobanana_cli.lambdaenv import baseline_import_ms, build, lambda_cloud, runtime_python
from nanobanana_cli.standin import StandInGateway

API_KEY = "sk-bench-runtime"
RUNS = 3
BATCH = 10
#: noise does not compress: 830 x 830 RGB pixels make a PNG of about 2 MB
NOISE_SIDE = 830


def noise_png(*_: Any, **__: Any) -> bytes:
    """What the stand-in draws here instead of its picture: an image of about 2 MB."""
    image = Image.frombytes("RGB", (NOISE_SIDE, NOISE_SIDE), os.urandom(NOISE_SIDE * NOISE_SIDE * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def bench_runtime(log: IO[str]) -> dict[str, Any]:
    python = runtime_python()
    if python is None:
        return {"skipped": "no CPython 3.13 (pyenv's ~/.pyenv/versions/3.13*): nothing measured"}
    with tempfile.TemporaryDirectory() as folder:
        runtime = build(Path(folder), python)
        baseline = statistics.median(baseline_import_ms(runtime) for _ in range(RUNS))
        with (
            mock.patch("nanobanana_cli.drawing.draw", noise_png),
            StandInGateway(api_key=API_KEY) as gateway,
            lambda_cloud(runtime, gateway, API_KEY, log) as cloud,
        ):
            imports: dict[str, float] = {}
            for logical_id in ("IngestFunction", "GenerateFunction"):
                inits = []
                for _ in range(RUNS):
                    environment = cloud.environment(logical_id)
                    inits.append(float(environment.init["init_ms"]))
                    environment.close()
                imports[logical_id] = statistics.median(inits)
            for n in range(BATCH):
                boto3.client("sqs").send_message(
                    QueueUrl=cloud.stack.queue(cloud.stack.functions["GenerateFunction"].queue_arn).url,
                    MessageBody=f'{{"id": "big-{n}", "prompt": "a big noisy image {n}"}}',
                )
            records = cloud.receive("GenerateFunction")
            generate = cloud.environment("GenerateFunction")
            try:
                response = generate.invoke({"Records": records})
            finally:
                generate.close()
            assert response == {"batchItemFailures": []}, response
            assert len(records) == BATCH, len(records)
    return {
        "baseline_import_ms": round(baseline, 1),
        "cold_import_ms": {name: round(ms, 1) for name, ms in imports.items()},
        "cold_import_ratio": {name: round(ms / baseline, 2) for name, ms in imports.items()},
        "goal_ratio": 1.3,
        "image_mb": round(len(noise_png()) / 1e6, 2),
        "generate_peak_rss_mb": round(generate.max_rss_kb / 1024, 1),
        "goal_rss_mb": 256,
    }
