"""The stack, played with moto: the template's bucket, queues, tables, secret and rule, as it defines them.

Everything is read from `template.yaml` (names, redrive policies, visibility timeouts, the bucket's
notification, the functions' environment), so a local run exercises what `sam deploy` would create rather
than a hand-kept copy of it. Must be called inside `moto.mock_aws()`, or with `AWS_ENDPOINT_URL` naming a
moto server that runs in this process (`nanobanana up`).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from nanobanana_cli.template import function_properties, load_template

#: The repository's template (the package is installed editable from the repository).
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
#: moto's account; the region is the runner's.
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "nanobanana-local"
#: The function that calls the gateway (its event-source mapping is the one that scales).
GENERATE_FUNCTION = "GenerateFunction"
#: What the functions see locally, whatever the template says: fake credentials, no X-Ray daemon.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
}
_NO_VALUE = object()
_DYNAMODB_WRITES = threading.Lock()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(Exception):
    """The template uses something the local runner cannot play."""


@dataclass(frozen=True)
class Queue:
    name: str
    url: str
    arn: str
    dead_letter_url: str | None
    max_receive_count: int | None


@dataclass(frozen=True)
class Function:
    """A function as the event-source mapping needs it."""

    logical_id: str
    name: str
    arn: str
    code: Path
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    queue_arn: str
    batch_size: int

    @property
    def handler_file(self) -> Path:
        """`app.lambda_handler` in CodeUri `functions/generate/` -> functions/generate/app.py."""
        module, _ = self.handler.rsplit(".", 1)
        return self.code / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Stack:
    bucket: str
    queues: dict[str, Queue]
    functions: dict[str, Function]
    #: the template's Outputs, resolved as CloudFormation would (for clients that find resources by them)
    outputs: dict[str, str] = field(default_factory=dict)

    def queue(self, arn: str) -> Queue:
        return next(queue for queue in self.queues.values() if queue.arn == arn)


class _Resolver:
    """CloudFormation's intrinsic functions over the parameters and the resources created so far."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str], stack_name: str) -> None:
        self.parameters: dict[str, str] = {
            name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()
        }
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise TemplateError(f"the template has no parameter {', '.join(sorted(unknown))}")
        self.parameters.update(parameters)
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack_name}/local",
        }
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}
        self.conditions_spec: dict[str, Any] = dict(template.get("Conditions") or {})
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.conditions_spec[name]))
        return self._conditions[name]

    def ref(self, name: str) -> str:
        for table in (self.parameters, self.pseudo, self.refs):
            if name in table:
                return table[name]
        raise TemplateError(f"Ref to {name!r}, which the local runner has not created")

    def get_att(self, target: str | list[str]) -> str:
        logical_id, attribute = target.split(".", 1) if isinstance(target, str) else target
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise TemplateError(f"GetAtt {logical_id}.{attribute} is not available locally") from None

    def sub(self, args: str | list[Any]) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.resolve(args[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            return self.get_att(name) if "." in name and not name.startswith("AWS::") else self.ref(name)

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = self._functions().get(key)
            if function is not None:
                return function(arg)
        return {
            k: item for k, item in ((k, self.resolve(v)) for k, v in value.items()) if item is not _NO_VALUE
        }

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": lambda arg: _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg),
            "Fn::GetAtt": self.get_att,
            "Fn::Sub": self.sub,
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: str(self.resolve(arg[0])) == str(self.resolve(arg[1])),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(arg)),
            "Fn::Or": lambda arg: any(self.resolve(arg)),
            "Condition": self.condition,
            "Fn::Join": lambda arg: str(self.resolve(arg[0])).join(str(v) for v in self.resolve(arg[1])),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(str(self.resolve(arg[0]))),
            "Fn::ToJsonString": lambda arg: json.dumps(self.resolve(arg)),
        }


def _physical_name(resolver: _Resolver, properties: Mapping[str, Any], key: str, logical_id: str) -> str:
    """The resource's name as the template gives it, or a stable one derived like CloudFormation's."""
    name = properties.get(key)
    stack_name = resolver.pseudo["AWS::StackName"]
    return str(resolver.resolve(name)) if name is not None else f"{stack_name}-{logical_id}"


def _create_queue(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    name = _physical_name(resolver, props, "QueueName", logical_id)
    settable = (
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
    )
    attributes: dict[Any, str] = {key: str(resolver.resolve(props[key])) for key in settable if key in props}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
    resolver.refs[logical_id] = url
    resolver.attributes.update(
        {(logical_id, "Arn"): arn, (logical_id, "QueueName"): name, (logical_id, "QueueUrl"): url}
    )


def _create_bucket(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    name = _physical_name(resolver, props, "BucketName", logical_id).lower()
    s3.create_bucket(Bucket=name)
    versioning = resolver.resolve(props.get("VersioningConfiguration") or {})
    if versioning.get("Status"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    resolver.refs[logical_id] = name
    resolver.attributes.update(
        {(logical_id, "Arn"): f"arn:aws:s3:::{name}", (logical_id, "DomainName"): f"{name}.s3.amazonaws.com"}
    )


def _create_table(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    spec = resolver.resolve(dict(props))
    name = _physical_name(resolver, props, "TableName", logical_id)
    dynamodb.create_table(
        TableName=name,
        KeySchema=spec["KeySchema"],
        AttributeDefinitions=spec["AttributeDefinitions"],
        BillingMode=spec.get("BillingMode", "PAY_PER_REQUEST"),
        **(
            {"ProvisionedThroughput": spec["ProvisionedThroughput"]}
            if "ProvisionedThroughput" in spec
            else {}
        ),
    )
    ttl = spec.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": bool(ttl["Enabled"]), "AttributeName": ttl["AttributeName"]},
        )
    resolver.refs[logical_id] = name
    resolver.attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"


def _create_rule(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> None:
    """An EventBridge rule and its targets: moto delivers matching events to SQS targets as AWS does."""
    events = boto3.client("events", region_name=REGION)
    spec = resolver.resolve(dict(props))
    name = _physical_name(resolver, props, "Name", logical_id)
    bus = str(spec.get("EventBusName", "default"))
    if bus != "default":
        events.create_event_bus(Name=bus)
    arn = events.put_rule(
        Name=name,
        EventBusName=bus,
        EventPattern=json.dumps(spec["EventPattern"]),
        State=spec.get("State", "ENABLED"),
    )["RuleArn"]
    targets: list[Any] = [{"Id": target["Id"], "Arn": target["Arn"]} for target in spec.get("Targets", [])]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    resolver.refs[logical_id] = name
    resolver.attributes[(logical_id, "Arn")] = arn


def _secret_creator(api_key: str) -> Callable[[_Resolver, str, Mapping[str, Any]], None]:
    """The template's secret holds whatever it generates; locally it holds the key the runner was given."""

    def create(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> None:
        client = boto3.client("secretsmanager", region_name=REGION)
        name = _physical_name(resolver, props, "Name", logical_id)
        arn = client.create_secret(Name=name, SecretString=api_key)["ARN"]
        resolver.refs[logical_id] = arn
        resolver.attributes[(logical_id, "Id")] = arn

    return create


def _configure_queue_redrive(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> Queue:
    """Second pass: a queue's RedrivePolicy names its dead-letter queue, which exists by now."""
    url = resolver.refs[logical_id]
    policy = resolver.resolve(props.get("RedrivePolicy"))
    dead_letter_url = None
    max_receive_count = None
    if policy:
        boto3.client("sqs", region_name=REGION).set_queue_attributes(
            QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)}
        )
        dead_letter_url = resolver.refs[_logical_id_of(resolver, "Arn", policy["deadLetterTargetArn"])]
        max_receive_count = int(policy["maxReceiveCount"])
    return Queue(
        resolver.get_att([logical_id, "QueueName"]),
        url,
        resolver.get_att([logical_id, "Arn"]),
        dead_letter_url,
        max_receive_count,
    )


def _logical_id_of(resolver: _Resolver, attribute: str, value: str) -> str:
    return next(lid for (lid, attr), v in resolver.attributes.items() if attr == attribute and v == value)


def _configure_notifications(resolver: _Resolver, logical_id: str, props: Mapping[str, Any]) -> None:
    """The bucket's NotificationConfiguration in the S3 API's shape (CloudFormation spells it differently)."""
    spec = resolver.resolve(props.get("NotificationConfiguration") or {})
    queues: list[Any] = [
        {
            "QueueArn": item["Queue"],
            "Events": [item["Event"]],
            **(
                {"Filter": {"Key": {"FilterRules": item["Filter"]["S3Key"]["Rules"]}}}
                if "Filter" in item
                else {}
            ),
        }
        for item in spec.get("QueueConfigurations") or []
    ]
    if queues:
        boto3.client("s3", region_name=REGION).put_bucket_notification_configuration(
            Bucket=resolver.refs[logical_id], NotificationConfiguration={"QueueConfigurations": queues}
        )


def _function(resolver: _Resolver, template: Mapping[str, Any], root: Path, logical_id: str) -> Function:
    """A function's settings, Globals applied as SAM applies them, and its SQS event source."""
    props = function_properties(template, logical_id)
    variables = (props.get("Environment") or {}).get("Variables") or {}
    sources = [
        event["Properties"] for event in (props.get("Events") or {}).values() if event.get("Type") == "SQS"
    ]
    if len(sources) != 1:
        raise TemplateError(f"{logical_id} must have exactly one SQS event source to run locally")
    source = resolver.resolve(sources[0])
    name = resolver.ref(logical_id)  # named by provision(), before anything could refer to it
    resolved = {key: _env_value(resolver.resolve(value)) for key, value in variables.items()}
    environment = {key: value for key, value in resolved.items() if value is not None}
    timeout = int(resolver.resolve(props.get("Timeout", 3)))
    memory = int(resolver.resolve(props.get("MemorySize", 128)))
    return Function(
        logical_id=logical_id,
        name=name,
        arn=resolver.get_att([logical_id, "Arn"]),
        code=root / str(resolver.resolve(props["CodeUri"])),
        handler=str(resolver.resolve(props["Handler"])),
        environment={
            **environment,
            **LOCAL_ENVIRONMENT,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        },
        timeout_seconds=timeout,
        memory_mb=memory,
        queue_arn=str(source["Queue"]),
        batch_size=int(source.get("BatchSize", 10)),
    )


def _env_value(value: Any) -> str | None:
    if value is _NO_VALUE or value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def serialize_dynamodb_writes() -> None:
    """DynamoDB applies each write, its condition included, atomically; moto checks the condition and
    writes in separate Python steps that concurrent threads can interleave. Locally, writes are made one
    at a time, as DynamoDB makes them per item, so that conditional updates guard what they guard."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item"):
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "serialized", False):
            continue

        @functools.wraps(method)
        def serialized(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            with _DYNAMODB_WRITES:
                return _method(*args, **kwargs)

        serialized.serialized = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, serialized)


def provision(
    template: Mapping[str, Any],
    root: Path,
    parameters: Mapping[str, str],
    api_key: str,
    stack_name: str = STACK_NAME,
) -> Stack:
    """Create the template's stateful resources in moto and describe its functions."""
    serialize_dynamodb_writes()
    resolver = _Resolver(template, parameters, stack_name)
    creators: dict[str, Callable[[_Resolver, str, Mapping[str, Any]], None]] = {
        "AWS::SecretsManager::Secret": _secret_creator(api_key),
        "AWS::SQS::Queue": _create_queue,
        "AWS::DynamoDB::Table": _create_table,
        "AWS::S3::Bucket": _create_bucket,
        "AWS::Events::Rule": _create_rule,
    }
    resources: dict[str, Any] = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    for kind, create in creators.items():
        for logical_id, resource in resources.items():
            if resource["Type"] == kind:
                create(resolver, logical_id, resource.get("Properties") or {})
    functions = [
        lid for lid, resource in resources.items() if resource["Type"] == "AWS::Serverless::Function"
    ]
    for logical_id in functions:
        name = _physical_name(resolver, resources[logical_id]["Properties"], "FunctionName", logical_id)
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
    for logical_id in resources:
        resolver.refs.setdefault(logical_id, logical_id)
    queues = {
        lid: _configure_queue_redrive(resolver, lid, resource.get("Properties") or {})
        for lid, resource in resources.items()
        if resource["Type"] == "AWS::SQS::Queue"
    }
    buckets = [lid for lid, resource in resources.items() if resource["Type"] == "AWS::S3::Bucket"]
    if len(buckets) != 1:
        raise TemplateError("the local runner expects exactly one bucket in the template")
    _configure_notifications(resolver, buckets[0], resources[buckets[0]].get("Properties") or {})
    return Stack(
        bucket=resolver.refs[buckets[0]],
        queues=queues,
        functions={lid: _function(resolver, template, root, lid) for lid in functions},
        outputs={
            key: str(resolver.resolve(output["Value"]))
            for key, output in (template.get("Outputs") or {}).items()
            if "Condition" not in output or resolver.condition(output["Condition"])
        },
    )


def provision_template(
    parameters: Mapping[str, str], api_key: str, template: Path = TEMPLATE, stack_name: str = STACK_NAME
) -> Stack:
    """The stack of `template.yaml`, its CodeUri paths taken relative to the template's folder."""
    return provision(load_template(template), template.parent, parameters, api_key, stack_name)
