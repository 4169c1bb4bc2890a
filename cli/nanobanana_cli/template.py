"""Read `template.yaml` as plain data, for the local runner and the template's tests.

CloudFormation's short-form tags (`!Ref`, `!GetAtt`, `!Sub`, ...) are not YAML that a safe loader
accepts; here they become the long forms CloudFormation itself defines (`{"Ref": ...}`,
`{"Fn::GetAtt": [...]}`, `{"Fn::Sub": ...}`), so that one walk over dicts and lists sees everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

#: Short-form tags whose long form is not `Fn::<tag>`.
_PLAIN_NAMES = frozenset({"Ref", "Condition"})


class _TemplateLoader(yaml.SafeLoader):
    """A safe loader that also knows CloudFormation's tags (registered on this subclass only)."""


def _intrinsic(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict[str, Any]:
    name = tag if tag in _PLAIN_NAMES else f"Fn::{tag}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag == "GetAtt":  # `!GetAtt Resource.Attribute` is short for [Resource, Attribute]
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template as dicts and lists, every intrinsic function in its long form."""
    with Path(path).open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=_TemplateLoader)  # noqa: S506  # a SafeLoader subclass
    if not isinstance(template, dict):
        raise ValueError(f"{path} is not a CloudFormation template (its top level is not a mapping)")
    return template


def _merge_globals(defaults: Any, own: Any) -> Any:
    if isinstance(defaults, Mapping) and isinstance(own, Mapping):
        merged = dict(defaults)
        for key, value in own.items():
            merged[key] = _merge_globals(defaults[key], value) if key in defaults else value
        return merged
    if isinstance(defaults, list) and isinstance(own, list):
        return [*defaults, *own]
    return own


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A serverless function's Properties with `Globals.Function` applied as SAM applies them.

    Maps merge (the function's keys win), lists are the global items followed by the function's,
    anything else the function sets replaces the global value.
    """
    defaults = (template.get("Globals") or {}).get("Function") or {}
    merged: dict[str, Any] = _merge_globals(defaults, template["Resources"][logical_id]["Properties"])
    return merged
