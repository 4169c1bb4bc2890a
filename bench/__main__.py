"""`make bench`: the figures the pipeline is held to, measured on the local stack.

1. A generate invocation over a 10-record batch against the stand-in at 1.0 s latency: wall time / 1.0 s
   (goal: at most 1.2; the records run concurrently, so a batch costs about one gateway latency). The
   stand-in runs in a process of its own, as a gateway is remote; the ratio is the median of three warm
   invocations, the cold one is reported beside it.
2. Ingesting a 10,000-line prompt file: SQS calls made (goal: 1,000, ten jobs per SendMessageBatch) and
   the peak of Python memory while it runs (the file is streamed, never held whole). The sends are
   answered by the harness (`captured_sends`): moto's SQS slows down with every message a queue holds.
3. Reading single-line `.json` files of 4 to 32 MiB as Ingest reads them: seconds per MiB, flat (see
   `bench/reading.py`).
4. Parsing hostile gateway answers of 1 to 8 MiB: seconds per MiB, flat; and the peak memory of
   reading a 1 GiB gzip bomb under the 32 MiB answer cap (see `bench/answers.py`).
5. `nanobanana local` over 200 jobs at 1 s latency and `--concurrency 20`: the median wall time of
   three runs over the ideal 10 s (goal: at most 1.08; see `bench/local.py`).
6. In the Lambda-like runtime (CPython 3.13, the built layer): each handler's cold import as a ratio to
   `import boto3, httpx`, and the peak RSS of a Generate invocation of 10 jobs with ~2 MB images (see
   `bench/runtime.py`).
7. 40 jobs against a gateway that is down for their first 5 s, then recovers: the calls made while it
   was down, with the circuit breaker and without (see `bench/outage.py`).
8. A 10,000-job run's accounting: AWS calls per job for counting its jobs' ends and completing it
   (goal: O(1), about 3, and no listing of the bucket; see `bench/completion.py`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import outage as outages
from bench.answers import bench_answers
from bench.completion import bench_completion
from bench.local import bench_local
from bench.reading import bench_reading
from bench.runtime import bench_runtime
from bench.standin import API_KEY, remote_standin
from nanobanana_cli.harness import local_pipeline
from nanobanana_cli.localrun import logs_to
from nanobanana_cli.runner import LambdaContext, load_handler
from nanobanana_cli.standin import StandInGateway

LATENCY_SECONDS = 1.0
BATCH = 10
INGEST_LINES = 10_000
#: warm invocations after the cold one; the ratio is their median's
WARM_RUNS = 3


def bench_generate() -> dict[str, Any]:
    """A cold invocation (module import excluded), then warm ones, as Lambda reuses its environments."""
    walls = []
    with remote_standin(LATENCY_SECONDS) as base_url, local_pipeline(base_url, API_KEY) as pipeline:
        # as in Lambda, where the runtime sets it: Powertools then keeps one event loop per environment
        os.environ["LAMBDA_TASK_ROOT"] = str(pipeline.generate.code)
        handler = load_handler(pipeline.generate, "bench")
        for run in range(1 + WARM_RUNS):
            for n in range(BATCH):
                pipeline.send_job({"id": f"run{run}-{n}", "prompt": f"benchmark image number {n}"})
            records = pipeline.receive(pipeline.jobs_queue, BATCH)
            assert len(records) == BATCH, "the queue gave fewer records than a batch"
            started = time.perf_counter()
            response = handler({"Records": records}, LambdaContext.starting_now(pipeline.generate))
            walls.append(time.perf_counter() - started)
            assert response == {"batchItemFailures": []}, response
        results = pipeline.results("sqs").values()
        assert [r["status"] for r in results] == ["succeeded"] * BATCH * (1 + WARM_RUNS)
        assert {r["attempts"] for r in results} == {1}
    cold, warm = walls[0], statistics.median(walls[1:])
    return {
        "records": BATCH,
        "latency_s": LATENCY_SECONDS,
        "cold_wall_s": round(cold, 3),
        "warm_wall_s": round(warm, 3),
        "warm_runs_s": [round(w, 3) for w in walls[1:]],
        "ratio": round(warm / LATENCY_SECONDS, 3),
        "cold_ratio": round(cold / LATENCY_SECONDS, 3),
        "goal": 1.2,
    }


def bench_ingest() -> dict[str, Any]:
    """SQS calls and peak Python memory of one ingest invocation (its cold start excluded)."""
    with (
        StandInGateway(api_key=API_KEY) as gateway,
        local_pipeline(gateway.base_url, API_KEY, gateway) as pipeline,
    ):
        pipeline.run()  # the notification's test event
        body = "".join(f"a banana in style number {n}\n" for n in range(INGEST_LINES))
        pipeline.put("prompts/bench.txt", body)
        records = pipeline.receive(pipeline.prompts_queue, 1)
        with pipeline.captured_sends(keep=False) as calls:
            handler = load_handler(pipeline.ingest, "bench")
            tracemalloc.start()
            started = time.perf_counter()
            response = handler({"Records": records}, LambdaContext.starting_now(pipeline.ingest))
            wall = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert response == {"batchItemFailures": []}, response
    return {
        "lines": INGEST_LINES,
        "file_mb": round(len(body) / 1e6, 2),
        "sqs_calls": dict(calls),
        "sqs_calls_total": sum(calls.values()),
        "goal_sqs_calls": INGEST_LINES // 10,
        "peak_python_mb": round(peak / 1e6, 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    log = Path("out/bench.log")
    log.parent.mkdir(exist_ok=True)
    # the handlers' prints and their logger (made at import, on the terminal) go to the log
    with log.open("w", encoding="utf-8") as handler_output, logs_to(handler_output):
        generate = bench_generate()
        ingest = bench_ingest()
        reading = bench_reading()
        answers = bench_answers()
        runtime = bench_runtime(handler_output)
        outage = outages.bench_outage()
        local = bench_local(handler_output)
        completion = bench_completion()
    print(
        f"generate: {generate['records']} records at {LATENCY_SECONDS} s latency: "
        f"warm {generate['warm_wall_s']} s -> ratio {generate['ratio']} (goal <= {generate['goal']}); "
        f"cold {generate['cold_wall_s']} s; warm runs {generate['warm_runs_s']}"
    )
    print(
        f"ingest: {ingest['lines']} lines ({ingest['file_mb']} MB): "
        f"{ingest['sqs_calls_total']} SQS calls {ingest['sqs_calls']} (goal {ingest['goal_sqs_calls']}), "
        f"peak Python memory {ingest['peak_python_mb']} MB, {ingest['wall_s']} s"
    )
    print(
        "reading single-line .json: "
        + ", ".join(f"{run['mib']} MiB {run['s_per_mib']} s/MiB" for run in reading["runs"])
        + f" (flat is the goal: spread {reading['spread']}x);"
        + f" peak Python memory {reading['peak_python_mb']} MB"
    )
    print(
        f"run accounting: {completion['jobs']} jobs: {completion['calls_per_job']} AWS calls per job "
        f"({completion['calls_per_job_end']} per job's end, {completion['completion_calls']} to complete "
        f"the run, {completion['list_calls']} listings; goal: O(1), about 3); "
        f"counting {completion['counting_s']} s, completion {completion['completion_s']} s in moto; "
        f"{completion['calls']}"
    )
    bomb = answers["bomb"]
    print(
        "parsing hostile answers (s/MiB at 1, 2, 4, 8 MiB; flat is the goal): "
        + "; ".join(
            f"{name} {[run['s_per_mib'] for run in runs]} (spread {answers['spread'][name]}x)"
            for name, runs in answers["shapes"].items()
        )
        + f"; a {bomb['bomb_mib']} MiB gzip bomb under the {bomb['cap_mib']} MiB cap: {bomb['outcome']}"
        + " after "
        + f"{bomb['compressed_read_kb']} KB read, peak Python memory {bomb['peak_python_mb']} MB"
    )
    if "skipped" in runtime:
        print(f"lambda runtime: skipped ({runtime['skipped']})")
    else:
        ratios = ", ".join(f"{name} {ratio}" for name, ratio in runtime["cold_import_ratio"].items())
        baseline = runtime["baseline_import_ms"]
        print(
            f"lambda runtime: cold import / `import boto3, httpx` ({baseline} ms): {ratios} "
            f"(goal <= {runtime['goal_ratio']}); Generate peak RSS after 10 jobs of "
            f"{runtime['image_mb']} MB images: {runtime['generate_peak_rss_mb']} MB "
            f"(goal <= {runtime['goal_rss_mb']} MB)"
        )
    print(outages.describe(outage))
    print(
        f"local: {local['jobs']} jobs at {local['latency_s']} s latency, "
        f"--concurrency {local['concurrency']}: "
        f"median {local['median_s']} s of {local['walls_s']} -> ratio {local['ratio']} to the ideal "
        f"{local['ideal_s']} s (goal <= {local['goal']})"
    )
    print(
        json.dumps(
            {
                "local": local,
                "generate": generate,
                "ingest": ingest,
                "reading": reading,
                "answers": answers,
                "runtime": runtime,
                "outage": outage,
                "completion": completion,
            }
        )
    )
    print(f"handler logs: {log}")


if __name__ == "__main__":
    main()
