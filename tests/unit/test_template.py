"""template.yaml holds to the contract the code relies on: settings, names, limits and least privilege.

`make template` runs cfn-lint, `sam validate --lint` and `sam build` for real; these tests check
what no linter knows: that the template and the `nanobanana` package agree.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from nanobanana import metrics
from nanobanana.config import ENVIRONMENT, Dialect, OverBudget, Settings
from nanobanana_cli.template import function_properties, load_template

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("IngestFunction", "GenerateFunction")
DATA_SERVICES = ("s3:", "sqs:", "dynamodb:", "secretsmanager:")
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template["Resources"].items() if res["Type"] == kind}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in the template, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def allow_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Allow statement of every policy: function policies, managed, bucket, queue and key policies."""
    return [
        statement
        for node in walk(template["Resources"])
        if isinstance(node.get("Statement"), list)
        for statement in node["Statement"]
        if statement["Effect"] == "Allow"
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def text_of(value: Any) -> str:
    """A resource as written: a plain string, or the pattern of a `Fn::Sub`."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub[0] if isinstance(sub, list) else sub)
    return value if isinstance(value, str) else json.dumps(value)


def queue_of_arn(value: Any) -> str:
    """The logical id of the queue behind `!GetAtt Queue.Arn`."""
    assert value == {"Fn::GetAtt": [value["Fn::GetAtt"][0], "Arn"]}
    return str(value["Fn::GetAtt"][0])


def sqs_events(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    events = function_properties(template, function)["Events"].values()
    return [event["Properties"] for event in events if event["Type"] == "SQS"]


def environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    variables: dict[str, Any] = function_properties(template, function)["Environment"]["Variables"]
    return variables


def service_name(template: dict[str, Any]) -> str:
    names = {environment(template, function)["POWERTOOLS_SERVICE_NAME"] for function in FUNCTIONS}
    assert len(names) == 1, "both functions must emit metrics under one service dimension"
    return str(names.pop())


# --- the loader --------------------------------------------------------------------------------


def test_loader_gives_every_short_form_its_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "A: !Ref Bucket\n"
        "B: !GetAtt Queue.Arn\n"
        "C: !GetAtt [Queue, QueueName]\n"
        "D: !Sub ['x-${Id}', {Id: !Select [2, !Split ['/', !Ref AWS::StackId]]}]\n"
        "E: !If [Cond, !Ref X, !Ref AWS::NoValue]\n"
        "F: !Not [!Condition Other]\n"
        "G: !Sub '${Bucket.Arn}/outputs/*'\n",
        encoding="utf-8",
    )
    assert load_template(path) == {
        "A": {"Ref": "Bucket"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::GetAtt": ["Queue", "QueueName"]},
        "D": {
            "Fn::Sub": ["x-${Id}", {"Id": {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}}]
        },
        "E": {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]},
        "F": {"Fn::Not": [{"Condition": "Other"}]},
        "G": {"Fn::Sub": "${Bucket.Arn}/outputs/*"},
    }


def test_loader_refuses_what_is_not_a_template(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a CloudFormation template"):
        load_template(path)


def test_function_properties_apply_globals_as_sam_does() -> None:
    template = {
        "Globals": {
            "Function": {"Timeout": 3, "Layers": ["L1"], "Environment": {"Variables": {"A": "1", "B": "1"}}}
        },
        "Resources": {
            "F": {"Properties": {"Timeout": 30, "Layers": ["L2"], "Environment": {"Variables": {"B": "2"}}}}
        },
    }
    assert function_properties(template, "F") == {
        "Timeout": 30,
        "Layers": ["L1", "L2"],
        "Environment": {"Variables": {"A": "1", "B": "2"}},
    }


# --- settings the handlers read ----------------------------------------------------------------


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_setting_is_set_for_each_function(template: dict[str, Any], function: str) -> None:
    variables = environment(template, function)
    missing = set(ENVIRONMENT) - set(variables)
    assert not missing, f"{function} lacks {sorted(missing)}"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"} <= set(variables)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_settings_parse_with_the_templates_values_and_defaults(
    template: dict[str, Any], function: str
) -> None:
    """Literal values and parameter defaults must be what Settings accepts, and agree with its defaults."""
    parameters = template["Parameters"]

    def value(raw: Any) -> str:
        if isinstance(raw, dict) and "Default" in parameters.get(raw.get("Ref"), {}):
            return str(parameters[raw["Ref"]]["Default"])
        return raw if isinstance(raw, str) else "resolved-at-deploy-time"

    settings = Settings.from_env({name: value(raw) for name, raw in environment(template, function).items()})
    defaults = Settings(bucket="b", idempotency_table="t")
    assert settings.model_id == defaults.model_id
    assert settings.dialect == defaults.dialect
    assert settings.stream is defaults.stream is False
    assert settings.price_per_image_usd == defaults.price_per_image_usd
    assert set(parameters["GatewayDialect"]["AllowedValues"]) == set(get_args(Dialect))
    assert parameters["MetricsNamespace"]["Default"] == metrics.DEFAULT_NAMESPACE


# --- queues, retries and the functions that consume them ---------------------------------------


@pytest.mark.parametrize("function", FUNCTIONS)
def test_visibility_timeout_is_six_times_the_consumers_timeout(
    template: dict[str, Any], function: str
) -> None:
    timeout = function_properties(template, function)["Timeout"]
    for event in sqs_events(template, function):
        queue = template["Resources"][queue_of_arn(event["Queue"])]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * timeout


@pytest.mark.parametrize("function", FUNCTIONS)
def test_redrive_after_max_receive_count_the_function_knows(template: dict[str, Any], function: str) -> None:
    (event,) = sqs_events(template, function)
    queue = template["Resources"][queue_of_arn(event["Queue"])]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    assert int(environment(template, function)["MAX_RECEIVE_COUNT"]) == redrive["maxReceiveCount"]
    dead_letters = template["Resources"][queue_of_arn(redrive["deadLetterTargetArn"])]["Properties"]
    assert dead_letters["MessageRetentionPeriod"] == DLQ_RETENTION_SECONDS
    assert queue["MessageRetentionPeriod"] < dead_letters["MessageRetentionPeriod"]


def test_every_queue_is_encrypted(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    assert len(queues) == 6
    assert all(queue["Properties"]["SqsManagedSseEnabled"] is True for queue in queues.values())


def test_event_sources_report_partial_failures_and_cap_concurrency(template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        (event,) = sqs_events(template, function)
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert "ReservedConcurrentExecutions" not in function_properties(template, function)
    (ingest,) = sqs_events(template, "IngestFunction")
    assert queue_of_arn(ingest["Queue"]) == "PromptFilesQueue"
    assert ingest["BatchSize"] == 1
    (generate,) = sqs_events(template, "GenerateFunction")
    assert queue_of_arn(generate["Queue"]) == "JobsQueue"
    assert generate["BatchSize"] == {"Ref": "BatchSize"}
    assert generate["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaxConcurrency"}}
    assert template["Parameters"]["MaxConcurrency"]["MinValue"] >= 2  # SQS ScalingConfig's minimum


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_run_python_313_on_arm_with_tracing_and_the_layer(
    template: dict[str, Any], function: str
) -> None:
    properties = function_properties(template, function)
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Tracing"] == "Active"
    assert properties["Handler"] == "app.lambda_handler"
    assert properties["Layers"] == [{"Ref": "SharedLayer"}]
    assert (ROOT / properties["CodeUri"] / "Makefile").is_file()


def test_everything_builds_without_docker(template: dict[str, Any]) -> None:
    for logical_id in (*FUNCTIONS, "SharedLayer"):
        assert template["Resources"][logical_id]["Metadata"]["BuildMethod"] == "makefile"


# --- storage -----------------------------------------------------------------------------------


def test_only_prompts_trigger_ingestion(template: dict[str, Any]) -> None:
    (notification,) = template["Resources"]["PipelineBucket"]["Properties"]["NotificationConfiguration"][
        "QueueConfigurations"
    ]
    assert queue_of_arn(notification["Queue"]) == "PromptFilesQueue"
    assert notification["Event"] == "s3:ObjectCreated:*"
    (rule,) = notification["Filter"]["S3Key"]["Rules"]
    assert rule == {"Name": "prefix", "Value": "prompts/"}
    for written in ("outputs/", "inputs/"):
        assert not written.startswith(rule["Value"]) and not rule["Value"].startswith(written)


def test_functions_write_only_outputs(template: dict[str, Any]) -> None:
    writes = [s for s in allow_statements(template) if "s3:PutObject" in as_list(s["Action"])]
    assert writes
    for statement in writes:
        for resource in as_list(statement["Resource"]):
            assert text_of(resource) == "${PipelineBucket.Arn}/outputs/*"


def test_queue_policy_names_exactly_the_pipeline_bucket(template: dict[str, Any]) -> None:
    """The policy spells the bucket's ARN without referring to it (that would be circular): same name."""
    name = template["Resources"]["PipelineBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    (statement,) = template["Resources"]["PromptFilesQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source == ["arn:${AWS::Partition}:s3:::" + name[0], name[1]]
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert template["Resources"]["PipelineBucket"]["DependsOn"] == "PromptFilesQueuePolicy"


def test_bucket_is_private_versioned_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["PipelineBucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policy = template["Resources"]["PipelineBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "PipelineBucket"}
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_batches_table_keys_runs_by_batch_and_upload(template: dict[str, Any]) -> None:
    table = template["Resources"]["BatchesTable"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "batch", "KeyType": "HASH"},
        {"AttributeName": "upload", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


def test_results_queue_gets_this_stacks_events_and_only_from_its_rule(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    rule = resources["ResultsRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "EventBusName"}
    assert rule["EventPattern"] == {
        "source": ["nanobanana"],
        "detail": {"stack": [{"Ref": "AWS::StackName"}]},
    }
    (target,) = rule["Targets"]
    assert queue_of_arn(target["Arn"]) == "ResultsQueue"
    assert queue_of_arn(target["DeadLetterConfig"]["Arn"]) == "ResultsDeadLetterQueue"
    redrive = resources["ResultsQueue"]["Properties"]["RedrivePolicy"]
    assert queue_of_arn(redrive["deadLetterTargetArn"]) == "ResultsDeadLetterQueue"
    (statement,) = resources["ResultsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ResultsRule", "Arn"]}}}
    assert template["Parameters"]["EventBusName"]["Default"] == "default"
    assert template["Outputs"]["ResultsQueueUrl"]["Value"] == {"Ref": "ResultsQueue"}


def test_idempotency_table_has_powertools_key_and_ttl(template: dict[str, Any]) -> None:
    table = template["Resources"]["IdempotencyTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


# --- least privilege ---------------------------------------------------------------------------


def test_no_allow_statement_has_a_wildcard_action(template: dict[str, Any]) -> None:
    statements = allow_statements(template)
    assert len(statements) > 5
    for statement in statements:
        assert "NotAction" not in statement
        assert not [action for action in as_list(statement["Action"]) if "*" in action], statement


def test_no_data_permission_is_on_every_resource(template: dict[str, Any]) -> None:
    data = [
        s
        for s in allow_statements(template)
        if any(a.startswith(DATA_SERVICES) for a in as_list(s["Action"]))
    ]
    assert data
    for statement in data:
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            assert not text_of(resource).endswith(("}/*", ":*")), statement


@pytest.mark.parametrize(
    ("function", "granted"),
    [
        (
            "IngestFunction",
            {
                "s3:GetObject": {"${PipelineBucket.Arn}/prompts/*", "${PipelineBucket.Arn}/outputs/*"},
                "s3:GetObjectVersion": {"${PipelineBucket.Arn}/prompts/*"},
                "s3:PutObject": {"${PipelineBucket.Arn}/outputs/*"},
                "sqs:SendMessage": {'{"Fn::GetAtt": ["JobsQueue", "Arn"]}'},
            },
        ),
        (
            "GenerateFunction",
            {
                "s3:GetObject": {
                    "${PipelineBucket.Arn}/inputs/*",
                    "${PipelineBucket.Arn}/prompts/*",
                    "${PipelineBucket.Arn}/outputs/*",
                },
                "s3:GetObjectVersion": {"${PipelineBucket.Arn}/prompts/*"},
                "s3:PutObject": {"${PipelineBucket.Arn}/outputs/*"},
                "sqs:ChangeMessageVisibility": {'{"Fn::GetAtt": ["JobsQueue", "Arn"]}'},
                "secretsmanager:GetSecretValue": {
                    '{"Fn::If": ["CreateApiKeySecret", {"Ref": "ApiKeySecret"}, {"Ref": "ApiKeySecretArn"}]}'
                },
            },
        ),
    ],
)
def test_each_function_gets_exactly_its_data_permissions(
    template: dict[str, Any], function: str, granted: dict[str, set[str]]
) -> None:
    """SAM adds the SQS poller's own permissions; everything else a function may do is listed here."""
    documents = []
    for policy in function_properties(template, function)["Policies"]:
        managed = template["Resources"].get(policy.get("Ref", ""), {})
        documents.append(managed["Properties"]["PolicyDocument"] if managed else policy)
    actual: dict[str, set[str]] = {}
    for document in documents:
        for statement in document["Statement"]:
            for action in as_list(statement["Action"]):
                actual.setdefault(action, set()).update(text_of(r) for r in as_list(statement["Resource"]))
    table, runs = '{"Fn::GetAtt": ["IdempotencyTable", "Arn"]}', '{"Fn::GetAtt": ["BatchesTable", "Arn"]}'
    items = {f"dynamodb:{verb}Item": {table, runs} for verb in ("Get", "Put", "Update")}
    if function == "GenerateFunction":  # the guards: read the circuit, count outcomes, reserve the budget
        guards = '{"Fn::GetAtt": ["GuardsTable", "Arn"]}'
        items = {**items, **{f"dynamodb:{verb}Item": {table, runs, guards} for verb in ("Get", "Update")}}
    bus = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
    assert actual == {**granted, **items, "dynamodb:DeleteItem": {table}, "events:PutEvents": {bus}}


def test_guards_table_is_encrypted_and_expires_its_items(template: dict[str, Any]) -> None:
    table = template["Resources"]["GuardsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


def test_guard_parameters_default_to_what_the_code_defaults_to(template: dict[str, Any]) -> None:
    parameters, defaults = template["Parameters"], Settings(bucket="b", idempotency_table="t")
    assert parameters["BreakerMinCalls"]["Default"] == defaults.breaker_min_calls
    assert parameters["BreakerFailurePercent"]["Default"] == defaults.breaker_failure_percent
    assert parameters["BreakerOpenSeconds"]["Default"] == defaults.breaker_open_seconds
    assert parameters["OverBudget"]["Default"] == defaults.over_budget
    assert set(parameters["OverBudget"]["AllowedValues"]) == set(get_args(OverBudget))


# --- alarms and dashboard ----------------------------------------------------------------------


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm watches, whether it watches one or computes over several."""
    if "MetricName" in alarm:
        return [{key: alarm[key] for key in ("Namespace", "MetricName", "Dimensions")}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def test_alarms_watch_the_contracts_metrics_and_notify_the_topic(template: dict[str, Any]) -> None:
    service = [{"Name": "service", "Value": service_name(template)}]
    watched: set[tuple[str, str]] = set()
    for alarm in (a["Properties"] for a in resources_of(template, "AWS::CloudWatch::Alarm").values()):
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        for metric in alarm_metrics(alarm):
            if metric["Namespace"] == {"Ref": "MetricsNamespace"}:
                assert metric["MetricName"] in metrics.ALL
                assert metric["Dimensions"] == service
                watched.add(("custom", metric["MetricName"]))
            else:
                (dimension,) = metric["Dimensions"]
                target = dimension["Value"].get("Ref") or dimension["Value"]["Fn::GetAtt"][0]
                watched.add((target, metric["MetricName"]))
    assert watched >= {
        ("custom", metrics.JOBS_SUCCEEDED),
        ("custom", metrics.JOBS_FAILED),
        ("custom", metrics.UPSTREAM_LATENCY),
        ("custom", metrics.ESTIMATED_COST_USD),
        ("custom", metrics.GATEWAY_CIRCUIT_OPEN),
        ("custom", metrics.BUDGET_EXHAUSTED),
        ("PromptFilesDeadLetterQueue", "ApproximateNumberOfMessagesVisible"),
        ("JobsDeadLetterQueue", "ApproximateNumberOfMessagesVisible"),
        ("JobsQueue", "ApproximateAgeOfOldestMessage"),
        *((function, name) for function in FUNCTIONS for name in ("Errors", "Throttles")),
    }


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(template: dict[str, Any]) -> None:
    """CloudWatch cannot publish to a topic under alias/aws/sns, whose key policy nobody can change."""
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key_policy = template["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]
    principals = [s["Principal"] for s in key_policy["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's JSON, the namespace parameter at its default and other substitutions stubbed."""
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = body.replace("${MetricsNamespace}", metrics.DEFAULT_NAMESPACE)
    parsed: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "substituted", body))
    return parsed


def test_dashboard_shows_every_metric_of_the_contract_and_no_other(template: dict[str, Any]) -> None:
    service = service_name(template)
    shown: set[str] = set()
    for widget in dashboard(template)["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):  # a math expression: SEARCH names its metric in quotes
                shown.update(re.findall(r'MetricName="(\w+)"', row[0]["expression"]))
            elif row[0] == metrics.DEFAULT_NAMESPACE:
                assert row[2:4] == ["service", service]
                shown.add(row[1])
    assert shown == set(metrics.ALL)


def test_outputs_say_where_everything_is(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert set(outputs) >= {
        "BucketName",
        "PromptFilesQueueUrl",
        "JobsQueueUrl",
        "PromptFilesDeadLetterQueueUrl",
        "JobsDeadLetterQueueUrl",
        "ApiKeySecretArn",
        "AlarmTopicArn",
        "DashboardUrl",
        "ResultsQueueUrl",
        "BatchesTableName",
    }
    assert "#dashboards:name=${Dashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]


# --- the layer ---------------------------------------------------------------------------------


def test_the_layer_is_named_after_its_stack_and_built_for_the_functions_architecture(
    template: dict[str, Any],
) -> None:
    layer = template["Resources"]["SharedLayer"]
    assert layer["Properties"]["LayerName"] == {"Fn::Sub": "${AWS::StackName}-nanobanana"}
    assert "CompatibleArchitectures" not in layer["Properties"]  # set once, in Globals
    assert "BuildArchitecture" not in layer["Metadata"]
    (architecture,) = template["Globals"]["Function"]["Architectures"]
    platform = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}[architecture]
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(ROOT / "layers"), "build-SharedLayer", "ARTIFACTS_DIR=/nowhere"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"--platform {platform} " in dry_run.stdout


def test_layer_requirements_are_pinned_and_leave_out_the_sdk() -> None:
    lines = (ROOT / "layers" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][^\s]*", r) for r in requirements)
    names = {re.split(r"[\[=]", r)[0].lower() for r in requirements}
    assert names == {"aws-lambda-powertools", "httpx", "pydantic"}
    assert any(r.startswith("aws-lambda-powertools[tracer]") for r in requirements)
