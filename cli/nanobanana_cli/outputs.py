"""Finding a stack from a user's machine: its name, its AWS clients and its CloudFormation outputs.

A deployed stack and the offline one (`nanobanana up`) are found the same way: `DescribeStacks` on the
stack's name, against AWS or against the offline stack's endpoint, where `up` registers a stack holding
the outputs of what it provisioned. Every way this can go wrong that a user can fix is one line naming
the fix (`StackError`).
"""

from __future__ import annotations

import json
import os
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from nanobanana_cli.stack import REGION, TEMPLATE

SAMCONFIG = "samconfig.toml"
#: The stack name when no samconfig.toml names one (the repository's own samconfig.toml does).
DEFAULT_STACK_NAME = "nanobanana-pipeline"
#: What moto accepts as credentials: the offline stack needs none of the user's.
OFFLINE_KEY = "testing"
#: A CloudFormation stack holds at least one resource; this one creates nothing.
_PLACEHOLDER = {"Provisioned": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}
_CREDENTIAL_ERRORS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
NO_CREDENTIALS = (
    "no usable AWS credentials: run `aws configure` (or `aws sso login`), or set AWS_PROFILE; "
    "for the offline stack pass --endpoint-url"
)


NO_REGION = "no AWS region: set AWS_REGION (or `aws configure`), or pass --region"


class StackError(Exception):
    """Something about the stack or its endpoint that the user can fix: one line, exit code 2."""


def samconfig_value(key: str, directory: Path | None = None) -> str | None:
    """A deploy setting as `sam` reads it: samconfig.toml here, else the repository's own."""
    for folder in (directory or Path.cwd(), TEMPLATE.parent):
        path = folder / SAMCONFIG
        if path.is_file():
            config = tomllib.loads(path.read_text(encoding="utf-8")).get("default") or {}
            for command in ("deploy", "global"):
                value = ((config.get(command) or {}).get("parameters") or {}).get(key)
                if value:
                    return str(value)
    return None


@dataclass(frozen=True)
class Target:
    """Where a stack command goes: the stack's name and an AWS session, at an endpoint or at AWS."""

    name: str
    session: boto3.Session
    endpoint_url: str | None

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    @property
    def where(self) -> str:
        return f"at {self.endpoint_url}" if self.endpoint_url else f"in {self.session.region_name}"


def connect(stack: str | None, endpoint_url: str | None, region: str | None = None) -> Target:
    """The session and stack name a command uses; the offline stack needs no account of the user's."""
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    name = stack or samconfig_value("stack_name") or DEFAULT_STACK_NAME
    session = boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    region = session.region_name or samconfig_value("region") or (REGION if endpoint_url else None)
    if region is None:
        raise StackError(NO_REGION)
    session = boto3.Session(region_name=region)
    if endpoint_url is not None and session.get_credentials() is None:
        session = boto3.Session(
            region_name=region, aws_access_key_id=OFFLINE_KEY, aws_secret_access_key=OFFLINE_KEY
        )
    return Target(name, session, endpoint_url)


def describe(target: Target) -> dict[str, str]:
    """The stack's outputs by key, or a one-line StackError that says what to do."""
    try:
        stacks = target.client("cloudformation").describe_stacks(StackName=target.name)["Stacks"]
    except ClientError as error:
        raise StackError(explain(error, target)) from None
    except (BotoCoreError, ResponseParserError) as error:
        raise StackError(explain(error, target)) from None
    return {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs") or []}


def explain(error: Exception, target: Target) -> str:
    """An AWS error a user will meet, as one line with its fix."""
    if isinstance(error, EndpointConnectionError):
        return (
            f"nothing answers at {target.endpoint_url or error.kwargs.get('endpoint_url')}: start the "
            "offline stack with `nanobanana up`, or fix --endpoint-url (AWS_ENDPOINT_URL)"
        )
    if isinstance(error, ResponseParserError):
        return (
            f"{target.endpoint_url or 'AWS'} does not answer as AWS does: give --endpoint-url the address "
            "that `nanobanana up` prints as its endpoint (not the stand-in gateway's)"
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return NO_CREDENTIALS
    if isinstance(error, NoRegionError):
        return NO_REGION
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code == "ValidationError" and "does not exist" in message:
            fix = (
                "is `nanobanana up` running there? pass --stack NAME if it was started with another name"
                if target.endpoint_url
                else "deploy it with `sam deploy --guided`, or pass --stack NAME or --region REGION"
            )
            return f"stack {target.name} not found {target.where}: {fix}"
        if code in _CREDENTIAL_ERRORS:
            return f"AWS rejected the credentials ({code}): {NO_CREDENTIALS}"
        if code in ("AccessDenied", "AccessDeniedException", "403"):
            return f"access denied ({error.operation_name}): your AWS identity needs read access to the stack"
        return f"AWS answered {code or 'an error'} to {error.operation_name}: {message}"
    return f"AWS call failed: {error}"


def register(target: Target, outputs: Mapping[str, str]) -> None:
    """Publish a provisioned stack's outputs under its name, as CloudFormation holds a deployed one's."""
    # moto warns that it creates nothing for the placeholder, which is the point of it
    warnings.filterwarnings("ignore", message=".*WaitConditionHandle.*", category=UserWarning)
    template = {
        "Resources": _PLACEHOLDER,
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    target.client("cloudformation").create_stack(StackName=target.name, TemplateBody=json.dumps(template))
