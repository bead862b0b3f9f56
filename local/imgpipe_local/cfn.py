"""CloudFormation evaluation: the template's YAML, the SAM transform, parameters and intrinsics.

What the template *means* locally (which resource is which server, queue or worker) is
imgpipe_local.template's business; this module only evaluates, and fails clearly on anything
it cannot evaluate rather than letting an unresolved reference through as a string.
"""

from __future__ import annotations

import base64
import copy
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

# The translator warns about its own unpublished usage metrics on every run.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

STACK_NAME = "imgpipe"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
# Local CodeUri/ContentUri folders are swapped for S3 URIs under this bucket before
# translation (the translator accepts only S3 locations) and read back from them after.
CODE_BUCKET = "imgpipe-local-code"


class TemplateError(ValueError):
    pass


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]  # typed only with types-PyYAML
    """SafeLoader that reads CloudFormation's short-form tags (!Ref, !Sub, !GetAtt…) as their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        return {"Fn::GetAtt": loader.construct_scalar(node).split(".", 1)}
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {key: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.MappingNode)
    return {key: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(path: str | Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return document


def parameter_values(sam: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Template defaults, then overrides, then the pseudo parameters of the local account."""
    declared = sam.get("Parameters") or {}
    values = {name: spec["Default"] for name, spec in declared.items() if "Default" in spec}
    values.update(overrides)
    stack = values.setdefault("AWS::StackName", STACK_NAME)
    values.setdefault("AWS::AccountId", ACCOUNT_ID)
    values.setdefault("AWS::Region", REGION)
    values.setdefault("AWS::Partition", "aws")
    values.setdefault("AWS::URLSuffix", "amazonaws.com")
    values.setdefault("AWS::StackId", f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack}/local")
    missing = [name for name in declared if name not in values]
    if missing:
        raise TemplateError(f"parameters without a value: {', '.join(missing)}")
    return values


def translate(sam: Mapping[str, Any], parameter_values: Mapping[str, Any]) -> dict[str, Any]:
    """SAM -> CloudFormation, offline: no managed-policy lookups, no AWS credentials."""
    sam = copy.deepcopy(dict(sam))
    properties = [resource.get("Properties") or {} for resource in sam.get("Resources", {}).values()]
    for props in [*properties, (sam.get("Globals") or {}).get("Function") or {}]:
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://{CODE_BUCKET}/{props[key]}"
    session = boto3.session.Session(region_name=parameter_values["AWS::Region"])
    cfn: dict[str, Any] = Translator({}, Parser(), boto_session=session).translate(
        sam, parameter_values=dict(parameter_values), get_managed_policy_map=lambda: {}
    )
    return cfn


_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluates intrinsic functions with the stack's parameter values.

    `ref` and `get_att` answer for resources (a logical id and an attribute); each raises
    TemplateError for what it does not know. `rewrite` maps every resolved string, so a URL
    built from placeholders (an API's execute-api host) can become a local one.
    """

    def __init__(
        self,
        cfn: Mapping[str, Any],
        parameters: Mapping[str, Any],
        *,
        ref: Callable[[str], str],
        get_att: Callable[[str, str], str],
        rewrite: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.cfn = cfn
        self.parameters = dict(parameters)
        self._ref, self._get_att, self._rewrite = ref, get_att, rewrite
        self._conditions: dict[str, bool] = {}

    def resolve(self, value: Any) -> Any:
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else resolved

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = (self.cfn.get("Conditions") or {}).get(name)
            if definition is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self._resolve(definition))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            value = self.parameters[name]
            kind = str(((self.cfn.get("Parameters") or {}).get(name) or {}).get("Type", ""))
            if kind.startswith(("CommaDelimitedList", "List<")) and isinstance(value, str):
                return [part.strip() for part in value.split(",")] if value else []
            return value if isinstance(value, list) else str(value)
        if name not in self.cfn.get("Resources", {}):
            raise TemplateError(f"Ref {name}: no such parameter or resource in the template")
        return self._ref(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.cfn.get("Resources", {}):
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute}: no such resource in the template")
        return self._get_att(logical_id, attribute)

    def _sub(self, template: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self._resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return _SUB_VARIABLE.sub(replace, template)

    def _function(self, key: str, arg: Any) -> Any:
        match key:
            case "Ref":
                return self.ref(arg)
            case "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, self._resolve(attribute))
            case "Fn::Sub":
                template, variables = (arg, {}) if isinstance(arg, str) else arg
                return self._sub(template, variables)
            case "Fn::Join":
                return arg[0].join(str(item) for item in self._resolve(arg[1]))
            case "Fn::Select":
                return self._resolve(arg[1])[int(self._resolve(arg[0]))]
            case "Fn::Split":
                return str(self._resolve(arg[1])).split(arg[0])
            case "Fn::If":
                return self._resolve(arg[1] if self.condition(arg[0]) else arg[2])
            case "Fn::Equals":
                left, right = (self._resolve(item) for item in arg)
                return left == right if isinstance(left, list) else str(left) == str(right)
            case "Fn::Not":
                return not self._resolve(arg[0])
            case "Fn::And":
                return all(self._resolve(item) for item in arg)
            case "Fn::Or":
                return any(self._resolve(item) for item in arg)
            case "Condition":
                return self.condition(arg)
            case "Fn::Base64":
                return base64.b64encode(str(self._resolve(arg)).encode()).decode()
            case "Fn::FindInMap":
                name, top, second = (self._resolve(item) for item in arg)
                return self._resolve(self.cfn["Mappings"][name][top][second])
        raise TemplateError(f"intrinsic {key} is not supported by the local stack")

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self._resolve, value) if item is not _NO_VALUE]
        if isinstance(value, str):
            return self._rewrite(value)
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                resolved = self._function(key, arg)
                return self._rewrite(resolved) if isinstance(resolved, str) else resolved
        resolved = {key: self._resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
