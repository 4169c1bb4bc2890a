"""Reading a prompt file is linear in its size: single-line `.json` files of 4, 8, 16 and 32 MiB, read as
Ingest reads them (streamed from S3 in moto, every job parsed and validated), in seconds per MiB
(the median of three reads).

Flat is the goal. botocore's `iter_lines`, which Ingest used before, is quadratic in a line's length.
The peak of Python memory while the largest file is read is reported beside it (Ingest has 512 MB).
"""

from __future__ import annotations

import json
import statistics
import time
import tracemalloc
from typing import Any

import boto3
from moto import mock_aws

from nanobanana.files import MAX_JSON_FILE_BYTES, read_jobs
from nanobanana.storage import Storage

SIZES_MIB = (4, 8, 16, 32)
MIB = 2**20
PROMPT_CHARS = 2000
#: each size is read this many times; its time is their median
RUNS = 3


def one_line_json(size: int) -> bytes:
    """A `.json` list of jobs on one line, padded with spaces to exactly `size` bytes."""
    job = json.dumps({"prompt": "a banana in the style of " + "x" * PROMPT_CHARS})
    count = (size - 2) // (len(job) + 2)
    body = ("[" + ", ".join([job] * count) + "]").encode()
    return body + b" " * (size - len(body))


def _read(storage: Storage, key: str) -> int:
    jobs = read_jobs(storage.open_chunks(key), ".json", max_jobs=10**6, max_file_bytes=MAX_JSON_FILE_BYTES)
    return sum(1 for parsed in jobs if parsed.job is not None)


def bench_reading() -> dict[str, Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        storage = Storage(s3, "bench")
        runs = []
        for size_mib in SIZES_MIB:
            key = f"prompts/one-line-{size_mib}.json"
            s3.put_object(Bucket="bench", Key=key, Body=one_line_json(size_mib * MIB))
            walls = []
            for _ in range(RUNS):
                started = time.perf_counter()
                jobs = _read(storage, key)
                walls.append(time.perf_counter() - started)
            wall = statistics.median(walls)
            runs.append(
                {
                    "mib": size_mib,
                    "jobs": jobs,
                    "wall_s": round(wall, 2),
                    "s_per_mib": round(wall / size_mib, 3),
                }
            )
        tracemalloc.start()
        _read(storage, f"prompts/one-line-{SIZES_MIB[-1]}.json")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    per_mib = [run["s_per_mib"] for run in runs]
    return {
        "runs": runs,
        "spread": round(max(per_mib) / min(per_mib), 2),
        "peak_python_mb": round(peak / 1e6),
    }
