"""A guards table in moto, keyed as the template's (`id`), for the breaker and the budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from nanobanana_cli.stack import LOCAL_ENVIRONMENT, REGION, serialize_dynamodb_writes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

GUARDS_TABLE = "guards"


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBClient]:
    for name, value in LOCAL_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        serialize_dynamodb_writes()
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=GUARDS_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client
