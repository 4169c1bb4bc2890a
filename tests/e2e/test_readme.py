"""The README, held to what ships: its quick start run as a user would, its tables checked against the code.

The commands come from the README itself (its fenced shell blocks), run by bash in a scratch copy of the
repository's tracked files, with the repository's `.venv` linked in (building a venv is `make`'s job,
and too slow for a test). The outputs it pastes must be what the commands print.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_args

import pytest

from nanobanana import metrics
from nanobanana.errors import ADVICE, RETRYABLE, ErrorType
from nanobanana.jobs import AspectRatio, ImageSize, JobSpec
from nanobanana_cli.harness import Pipeline
from nanobanana_cli.template import load_template

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
VENV = REPO / ".venv"
#: The Makefile's venv stamp: never remade here, the linked venv is the repository's own.
VENV_STAMP = ".venv/.installed"
COMMAND_TIMEOUT_SECONDS = 120

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^(#{1,6}) (.+)$", re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MAKE_TARGET = re.compile(r"(?<![\w.-])make ([\w./-]+)")
SUMMARY = re.compile(r"^\d+ succeeded, \d+ failed$")
#: Report lines that change from run to run: the stand-in's port, latencies, image sizes.
VARYING = ("No --api-base-url:", "latency ", "images ")
#: Environment a developer may have set that must not reach the user's commands.
HOST_ONLY = ("NANOBANANA_API_BASE_URL", "NANOBANANA_API_KEY", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")

#: What each quick-start command did, by the command as the README writes it.
Results = dict[str, subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its language tag and its text."""

    lang: str
    text: str


@cache
def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README under the heading `title`, down to the next heading of the same or a higher level.

    Lines inside fenced blocks are not headings (`# cats.txt` in an example is a comment).
    """
    text = readme()
    fences = [match.span() for match in FENCE.finditer(text)]
    headings = [
        match
        for match in HEADING.finditer(text)
        if not any(start <= match.start() < end for start, end in fences)
    ]
    for index, match in enumerate(headings):
        if match.group(2).strip() == title:
            level = len(match.group(1))
            following = (h.start() for h in headings[index + 1 :] if len(h.group(1)) <= level)
            return text[match.end() : next(following, len(text))]
    raise AssertionError(f"the README has no section {title!r}")


def blocks(text: str, *langs: str) -> list[Block]:
    return [Block(m.group(1), m.group(2)) for m in FENCE.finditer(text) if m.group(1) in langs]


def table(title: str) -> dict[str, list[str]]:
    """A section's table rows by the names in code in their first cell (a row may name several)."""
    rows: dict[str, list[str]] = {}
    for line in section(title).splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for name in INLINE_CODE.findall(cells[0]):
            rows[name] = cells
    assert rows, f"the README's section {title!r} has no table"
    return rows


def commands(block: Block) -> list[str]:
    return [line.strip() for line in block.text.splitlines() if line.strip() and not line.startswith("#")]


def argv(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def user_env() -> dict[str, str]:
    """The environment of a user who ran `make demo`: the repository's venv first on PATH."""
    env = {name: value for name, value in os.environ.items() if name not in HOST_ONLY}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One README command (or script) in bash, as typed; `make` is told the venv is up to date."""
    if argv(command)[:1] == ["make"]:
        command = f"make --assume-old={VENV_STAMP} {command.removeprefix('make ')}"
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def assert_shows(pasted: str, printed: str) -> None:
    """Every line the README pastes (bar those that vary by run) is one the command printed."""
    lines = {line.strip() for line in printed.splitlines()}
    for line in pasted.splitlines():
        if line.strip() and not line.startswith(VARYING):
            assert line.strip() in lines, f"the README shows {line.strip()!r}; printed:\n{printed}"


def output_after(text: str, script: Block) -> str:
    """The `text` block the README pastes right after a shell block: what that block prints."""
    fenced = [Block(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    following = fenced[fenced.index(script) + 1]
    assert following.lang == "text", f"no output pasted after {script.text!r}"
    return following.text


# -- the quick start, in a scratch copy ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files (modification times kept, so make sees the venv as current) and the venv."""
    assert (REPO / VENV_STAMP).is_file(), "run `make demo` once: the repository's .venv is missing"
    root = tmp_path_factory.mktemp("readme") / "repository"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # tracked but deleted in the working tree: not part of this checkout
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (root / ".venv").symlink_to(VENV, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def quick_start(scratch: Path) -> Results:
    """Every quick-start command, in order, but `make test` (which runs this very test)."""
    results = {}
    for block in blocks(section("Quick start"), "sh"):
        for command in commands(block):
            if argv(command) != ["make", "test"]:
                results[command] = run(command, scratch)
    return results


def test_quick_start_has_the_two_commands_first() -> None:
    first = blocks(section("Quick start"), "sh")[0]
    assert [argv(command) for command in commands(first)] == [["make", "demo"], ["make", "test"]]


def test_every_quick_start_command_succeeds(quick_start: Results) -> None:
    tools = {tuple(argv(command)[:2]) for command in quick_start}
    assert {("make", "demo"), ("nanobanana", "local"), ("nanobanana", "check")} <= tools
    for command, result in quick_start.items():
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def test_make_demo_prints_what_the_readme_shows(quick_start: Results, scratch: Path) -> None:
    demo = next(result for command, result in quick_start.items() if argv(command) == ["make", "demo"])
    text = section("Quick start")
    pasted = next(block.text for block in blocks(text, "text") if "succeeded" in block.text)
    assert "succeeded" in demo.stdout
    assert_shows(pasted, demo.stdout)
    assert (scratch / "out/demo/index.html").is_file()
    assert "`out/demo/index.html`" in text


def test_local_runs_write_their_gallery(quick_start: Results, scratch: Path) -> None:
    for command, result in quick_start.items():
        words = argv(command)
        if words[:2] == ["nanobanana", "local"]:
            out = Path(words[words.index("--out") + 1])
            assert (scratch / out / "index.html").is_file(), command
            assert any(SUMMARY.match(line) for line in result.stdout.splitlines()), result.stdout


def test_check_prints_what_the_readme_quotes(quick_start: Results) -> None:
    for command, result in quick_start.items():
        if argv(command)[:2] == ["nanobanana", "check"]:
            assert f"`{result.stdout.strip().splitlines()[-1]}`" in section("Quick start"), result.stdout


@pytest.mark.parametrize("title", ["Trying failures with the stand-in", "Checking files before you upload"])
def test_example_prints_what_the_readme_shows(scratch: Path, title: str) -> None:
    text = section(title)
    script = blocks(text, "sh")[0]
    workdir = scratch / "examples" / re.sub(r"\W+", "-", title.lower())
    workdir.mkdir(parents=True)
    result = run(script.text, workdir)
    assert_shows(output_after(text, script), result.stdout)


# -- names and numbers the README shares with the code and the template --------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template["Resources"].items() if res["Type"] == kind}


def test_every_make_target_it_names_exists(scratch: Path) -> None:
    code = "\n".join(block.text for block in blocks(readme(), "sh", "text", ""))
    code += "\n" + "\n".join(INLINE_CODE.findall(FENCE.sub("", readme())))
    targets = set(MAKE_TARGET.findall(code))
    assert {"demo", "test", "bench"} <= targets
    for target in sorted(targets):
        dry = subprocess.run(
            ["make", "--dry-run", f"--assume-old={VENV_STAMP}", target],
            cwd=scratch,
            env=user_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


def test_every_parameter_is_documented_with_its_default(template: dict[str, Any]) -> None:
    rows = table("Parameters")
    assert set(rows) == set(template["Parameters"])
    for name, spec in template["Parameters"].items():
        default = spec.get("Default")
        shown = "required" if default is None else f"`{default}`" if default != "" else '`""`'
        assert rows[name][1] == shown, name


def test_metrics_table_names_every_metric_and_nothing_else() -> None:
    rows = table("Metrics")
    assert set(rows) == set(metrics.ALL)
    assert f"`{metrics.ERROR_TYPE_DIMENSION}`" in rows[metrics.UPSTREAM_ERRORS][-1]
    assert f"`{metrics.DEFAULT_NAMESPACE}`" in section("Metrics")


def test_every_alarm_is_documented_with_its_threshold(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    rows = table("Alarms")
    assert set(rows) == set(alarms)
    for name, alarm in alarms.items():
        threshold = alarm["Properties"]["Threshold"]
        if isinstance(threshold, dict):
            parameter = threshold["Ref"]
            expected = [f"`{parameter}`", f"default {template['Parameters'][parameter]['Default']}"]
        else:
            expected = [f"{threshold:g}"]
        for words in expected:
            assert words in rows[name][-1], name


def test_every_stack_output_is_documented(template: dict[str, Any]) -> None:
    assert set(table("Stack outputs")) == set(template["Outputs"])


def test_error_table_agrees_with_the_taxonomy() -> None:
    rows = table("Errors and what to do")
    assert set(rows) == {str(error_type) for error_type in ErrorType}
    for error_type in ErrorType:
        _, _, retried, fix = rows[str(error_type)]
        assert fix == ADVICE[error_type], error_type
        assert retried.startswith("yes") == (error_type in RETRYABLE), error_type


def test_job_fields_table_names_every_field_and_value() -> None:
    rows = table("Job fields")
    assert set(rows) == set(JobSpec.model_fields)
    assert rows["aspect_ratio"][1] == f"`{' '.join(get_args(AspectRatio))}`"
    assert rows["image_size"][1] == f"`{' '.join(get_args(ImageSize))}`"


def test_result_record_fields_are_those_of_a_real_record(quick_start: Results, scratch: Path) -> None:
    documented = set(table("Result records"))
    real = next(path for path in (scratch / "out/demo").glob("*/*.json") if not path.name.startswith("_"))
    assert set(json.loads(real.read_text(encoding="utf-8"))) == documented
    examples = [json.loads(block.text) for block in blocks(section("Result records"), "json")]
    records = [example for example in examples if "status" in example]
    assert {example["status"] for example in records} == {"succeeded", "failed"}
    for example in records:
        assert set(example) == documented


def test_python_snippets_compile() -> None:
    snippets = blocks(readme(), "python")
    assert snippets
    for snippet in snippets:
        compile(snippet.text, "README.md", "exec")


def test_the_results_queue_snippet_gets_its_job_back(pipeline: Pipeline) -> None:
    """The snippet of "Knowing when a run is done", run as written against the local stack."""
    (snippet,) = [b.text for b in blocks(section("Knowing when a run is done"), "python")]
    code = re.sub(r'JOBS_QUEUE_URL = "[^"]+"', f'JOBS_QUEUE_URL = "{pipeline.jobs_queue}"', snippet)
    code = re.sub(r'RESULTS_QUEUE_URL = "[^"]+"', f'RESULTS_QUEUE_URL = "{pipeline.results_queue}"', code)
    code = code.replace('boto3.client("sqs")', 'boto3.client("sqs", region_name="us-east-1")')
    code = code.replace("WaitTimeSeconds=20", "WaitTimeSeconds=1")  # moto answers at once when empty
    send, wait = code.split("result = wait_for_result(job_id)")
    scope: dict[str, Any] = {}
    exec(send, scope)  # noqa: S102  # the README's own code
    pipeline.run()
    exec("result = wait_for_result(job_id)" + wait, scope)  # noqa: S102
    assert scope["result"]["status"] == "succeeded"
    assert scope["result"]["id"] == scope["job_id"]
    assert scope["result"]["images"] == [f"outputs/adhoc/{scope['job_id']}.png"]
