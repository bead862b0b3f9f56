"""template.yaml as the local stack sees it: SAM-translated, intrinsics resolved, wiring extracted.

The SAM translator turns the template into the CloudFormation that AWS deploys (implicit
permissions, the HTTP API's OpenAPI body, the S3 notification, the layers' hashed ids), and
everything the local stack wires up is read from that output, so the template stays the only
description of routes, authorizers, CORS, buckets and triggers.
"""

from __future__ import annotations

import base64
import copy
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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
# translation (the translator accepts only S3 locations) and swapped back afterwards.
_CODE_BUCKET = "imgpipe-local-code"


class TemplateError(ValueError):
    pass


# ---------------------------------------------------------------- YAML


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short-form tags (!Ref, !Sub, !GetAtt…) as their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        return {"Fn::GetAtt": loader.construct_scalar(node).split(".", 1)}
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(path: str | Path) -> dict[str, Any]:
    return yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


# ---------------------------------------------------------------- SAM translation


def translate(sam: Mapping[str, Any], parameter_values: Mapping[str, Any]) -> dict[str, Any]:
    """SAM -> CloudFormation, offline: no managed-policy lookups, no AWS credentials."""
    sam = copy.deepcopy(dict(sam))
    for resource in sam.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://{_CODE_BUCKET}/{props[key]}"
    function_globals = (sam.get("Globals") or {}).get("Function") or {}
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = f"s3://{_CODE_BUCKET}/{function_globals['CodeUri']}"
    translator = Translator(
        {}, Parser(), boto_session=boto3.session.Session(region_name=parameter_values["AWS::Region"])
    )
    return translator.translate(
        sam, parameter_values=dict(parameter_values), get_managed_policy_map=lambda: {}
    )


# ---------------------------------------------------------------- intrinsics

_NO_VALUE = object()
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluates CloudFormation intrinsics with local values for parameters and resources.

    Physical ids are what the local stack creates: buckets by their BucketName, queues and
    functions named `<stack>-<LogicalId>`, and no CloudFront distribution (Ref -> "") so
    code that would invalidate a cache skips it. URLs that would point at AWS endpoints
    (execute-api, the distribution's domain) are rewritten to the local servers.
    """

    def __init__(
        self,
        cfn: Mapping[str, Any],
        parameters: Mapping[str, Any],
        *,
        queue_url_base: str = "",
        url_rewrites: Mapping[str, str] | None = None,
    ) -> None:
        self.cfn = cfn
        self.resources: dict[str, Any] = cfn.get("Resources", {})
        self.parameters = dict(parameters)
        self.queue_url_base = queue_url_base.rstrip("/")
        self.url_rewrites = dict(url_rewrites or {})
        self._conditions: dict[str, bool] = {}

    # -- public
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
            declared = (self.cfn.get("Parameters") or {}).get(name) or {}
            if str(declared.get("Type", "")).startswith(("CommaDelimitedList", "List<")) and isinstance(
                value, str
            ):
                return [part.strip() for part in value.split(",")] if value else []
            return value if isinstance(value, list) else str(value)
        resource = self.resources.get(name)
        if resource is None:
            raise TemplateError(f"Ref to unknown parameter or resource {name}")
        return self.physical_id(name)

    def physical_id(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        kind = resource["Type"]
        props = resource.get("Properties") or {}
        name_property = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Logs::LogGroup": "LogGroupName",
        }.get(kind)
        if name_property and props.get(name_property) is not None:
            name = str(self.resolve(props[name_property]))
        else:
            name = f"{self.parameters['AWS::StackName']}-{logical_id}"
            if kind == "AWS::S3::Bucket":
                name = name.lower()
        if kind == "AWS::SQS::Queue":
            return f"{self.queue_url_base}/{self.parameters['AWS::AccountId']}/{name}"
        if kind == "AWS::Lambda::LayerVersion":
            layer = props.get("LayerName") or logical_id
            return f"arn:aws:lambda:{self._region}:{self._account}:layer:{layer}:1"
        if kind == "AWS::ApiGatewayV2::Api":
            return logical_id.lower()
        if kind == "AWS::CloudFront::Distribution":
            return ""
        return name

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"GetAtt of unknown resource {logical_id}")
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket":
            name = self.physical_id(logical_id)
            return {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self._region}.amazonaws.com",
            }.get(attribute, f"{name}.{attribute}")
        if kind == "AWS::SQS::Queue":
            url = self.physical_id(logical_id)
            name = url.rsplit("/", 1)[-1]
            return {
                "Arn": f"arn:aws:sqs:{self._region}:{self._account}:{name}",
                "QueueName": name,
                "QueueUrl": url,
            }.get(attribute, f"{name}.{attribute}")
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            return f"arn:aws:lambda:{self._region}:{self._account}:function:{self.physical_id(logical_id)}"
        if kind == "AWS::CloudFront::Distribution":
            return distribution_domain(logical_id) if attribute == "DomainName" else ""
        if kind == "AWS::ApiGatewayV2::Api" and attribute == "ApiEndpoint":
            return api_placeholder_url(logical_id, self._region)
        if kind == "AWS::ApiGatewayV2::Api" and attribute == "ApiId":
            return self.physical_id(logical_id)
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{self._region}:{self._account}:log-group:{self.physical_id(logical_id)}:*"
        return f"{logical_id}.{attribute}"

    # -- internals
    @property
    def _region(self) -> str:
        return str(self.parameters["AWS::Region"])

    @property
    def _account(self) -> str:
        return str(self.parameters["AWS::AccountId"])

    def _rewrite(self, text: str) -> str:
        for placeholder, local in self.url_rewrites.items():
            text = text.replace(placeholder, local)
        return text

    def _sub(self, template: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self._resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return _SUB_VAR.sub(replace, template)

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if isinstance(value, str):
            return self._rewrite(value)
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                resolved = self.ref(arg)
                return self._rewrite(resolved) if isinstance(resolved, str) else resolved
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._rewrite(self.get_att(logical_id, self._resolve(attribute)))
            if key == "Fn::Sub":
                template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._rewrite(self._sub(template, variables))
            if key == "Fn::Join":
                separator, items = arg
                return self._rewrite(separator.join(str(item) for item in self._resolve(items)))
            if key == "Fn::Select":
                index, items = arg
                return self._resolve(items)[int(self._resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self._resolve(text)).split(separator)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self._resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self._resolve(item) for item in arg)
                return str(left) == str(right) if not isinstance(left, list) else left == right
            if key == "Fn::Not":
                return not self._resolve(arg[0])
            if key == "Fn::And":
                return all(self._resolve(item) for item in arg)
            if key == "Fn::Or":
                return any(self._resolve(item) for item in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Base64":
                return base64.b64encode(str(self._resolve(arg)).encode()).decode()
            if key == "Fn::FindInMap":
                name, top, second = (self._resolve(item) for item in arg)
                return self._resolve(self.cfn["Mappings"][name][top][second])
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic {key} is not supported by the local stack")
        resolved = {key: self._resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}


def distribution_domain(logical_id: str) -> str:
    """The placeholder domain a distribution gets locally; `https://<it>` is rewritten to the CDN url."""
    return f"{logical_id.lower()}.cloudfront.local"


def api_placeholder_url(logical_id: str, region: str = REGION) -> str:
    return f"https://{logical_id.lower()}.execute-api.{region}.amazonaws.com"


# ---------------------------------------------------------------- the wiring


@dataclass(frozen=True)
class EventInvokeConfig:
    maximum_retry_attempts: int = 2
    maximum_event_age_seconds: int = 21600
    on_failure_queue: str | None = None  # local queue name of an SQS on-failure destination


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    code_uri: Path
    handler: str
    environment: dict[str, str]
    layers: tuple[Path, ...]
    timeout: int
    memory_size: int
    event_invoke: EventInvokeConfig
    reserved_concurrency: int | None = None  # None: the account's unreserved pool

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name}"


@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str  # logical id
    identity_sources: tuple[str, ...]  # "$request.header.Authorization", "$request.querystring.x"…
    simple_responses: bool
    payload_version: str
    ttl_seconds: int


@dataclass(frozen=True)
class Route:
    method: str  # upper case, "ANY" for x-amazon-apigateway-any-method
    path: str  # "/avatars/{id}", "/{proxy+}" or "$default"
    function: str  # logical id
    payload_version: str
    authorizer: str | None

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True)
class HttpApi:
    logical_id: str
    api_id: str
    routes: tuple[Route, ...]
    authorizers: dict[str, Authorizer]
    cors: Cors | None
    stage: str = "$default"


@dataclass(frozen=True)
class BucketTrigger:
    function: str  # logical id
    event: str  # "s3:ObjectCreated:*"
    filter_rules: tuple[tuple[str, str], ...]  # (("prefix", "avatars/"), ("suffix", "/original"))

    def queue_name(self, bucket: str) -> str:
        return f"{bucket}-to-{self.function}"[:80]


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    name: str
    versioned: bool
    cors_rules: tuple[dict[str, Any], ...]  # CloudFormation shape (AllowedOrigins, AllowedMethods…)
    triggers: tuple[BucketTrigger, ...]


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class CdnConfig:
    bucket: str  # bucket name the default behaviour's origin reads
    cors: Cors | None
    headers: dict[str, str]  # security + custom headers added to every response


@dataclass
class LocalTemplate:
    functions: dict[str, Function]
    apis: list[HttpApi]
    buckets: dict[str, Bucket]
    queues: dict[str, Queue]
    cdn: CdnConfig | None
    outputs: dict[str, Any]
    parameters: dict[str, Any]
    cfn: dict[str, Any] = field(repr=False)

    def function_by_name(self, name: str) -> Function:
        for function in self.functions.values():
            if function.name == name:
                return function
        raise TemplateError(f"no function named {name}")


def parameter_values(sam: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Template defaults + overrides + the pseudo parameters of the local account."""
    values: dict[str, Any] = {}
    for name, declared in (sam.get("Parameters") or {}).items():
        if "Default" in declared:
            values[name] = declared["Default"]
    values.update(overrides)
    values.setdefault("AWS::StackName", STACK_NAME)
    values.setdefault("AWS::AccountId", ACCOUNT_ID)
    values.setdefault("AWS::Region", REGION)
    values.setdefault("AWS::Partition", "aws")
    values.setdefault("AWS::URLSuffix", "amazonaws.com")
    values.setdefault("AWS::StackId", f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/imgpipe/local")
    missing = [
        name
        for name, declared in (sam.get("Parameters") or {}).items()
        if name not in values and "Default" not in declared
    ]
    if missing:
        raise TemplateError(f"parameters without a value: {', '.join(missing)}")
    return values


def load(
    template_path: str | Path,
    parameters: Mapping[str, Any],
    *,
    api_url: str = "",
    cdn_url: str = "",
    queue_url_base: str = "",
) -> LocalTemplate:
    """Read, translate and resolve `template_path` for a local stack at these URLs."""
    template_path = Path(template_path)
    root = template_path.parent
    sam = load_yaml(template_path)
    values = parameter_values(sam, parameters)
    cfn = translate(sam, values)
    rewrites: dict[str, str] = {}
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::ApiGatewayV2::Api" and api_url:
            rewrites[api_placeholder_url(logical_id, values["AWS::Region"])] = api_url.rstrip("/")
        if resource["Type"] == "AWS::CloudFront::Distribution" and cdn_url:
            rewrites[f"https://{distribution_domain(logical_id)}"] = cdn_url.rstrip("/")
            rewrites[distribution_domain(logical_id)] = cdn_url.split("://", 1)[-1].rstrip("/")
    resolver = Resolver(cfn, values, queue_url_base=queue_url_base, url_rewrites=rewrites)
    functions = _functions(cfn, resolver, root)
    return LocalTemplate(
        functions=functions,
        apis=_apis(cfn, resolver, functions),
        buckets=_buckets(cfn, resolver, functions),
        queues=_queues(cfn, resolver),
        cdn=_cdn(cfn, resolver),
        outputs={
            name: resolver.resolve(output["Value"])
            for name, output in (cfn.get("Outputs") or {}).items()
            if "Condition" not in output or resolver.condition(output["Condition"])
        },
        parameters=values,
        cfn=cfn,
    )


def _of_type(cfn: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource for logical_id, resource in cfn["Resources"].items() if resource["Type"] == kind
    }


def _local_path(code: Mapping[str, Any], root: Path, what: str) -> Path:
    if code.get("S3Bucket") != _CODE_BUCKET:
        raise TemplateError(f"{what}: only local CodeUri/ContentUri folders can run locally, got {code}")
    return (root / code["S3Key"]).resolve()


def _logical_id_from_arn(arn: str, functions: Mapping[str, Function]) -> str:
    match = re.search(r"function:([A-Za-z0-9_-]+)", arn)
    if not match:
        raise TemplateError(f"cannot find a function in {arn}")
    for function in functions.values():
        if function.name == match.group(1):
            return function.logical_id
    raise TemplateError(f"{arn} names no function of the template")


def _functions(cfn: Mapping[str, Any], resolver: Resolver, root: Path) -> dict[str, Function]:
    layer_ids = _of_type(cfn, "AWS::Lambda::LayerVersion")
    invoke_configs = {
        resolver.resolve(resource["Properties"]["FunctionName"]): resource["Properties"]
        for resource in _of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()
    }
    functions = {}
    for logical_id, resource in _of_type(cfn, "AWS::Lambda::Function").items():
        props = resource["Properties"]
        if "Code" not in props or "Handler" not in props:
            raise TemplateError(f"{logical_id}: only zip functions with a Handler run locally")
        layers = []
        for layer in props.get("Layers", []):
            if isinstance(layer, dict) and layer.get("Ref") in layer_ids:
                content = layer_ids[layer["Ref"]]["Properties"]["Content"]
                layers.append(_local_path(content, root, f"{logical_id} layer"))
            # Layers given as ARNs (e.g. Powertools' public layer) are satisfied by the venv.
        variables = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
        name = resolver.physical_id(logical_id)
        invoke = invoke_configs.get(name) or {}
        on_failure = resolver.resolve(
            ((invoke.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        )
        functions[logical_id] = Function(
            logical_id=logical_id,
            name=name,
            code_uri=_local_path(props["Code"], root, logical_id),
            handler=props["Handler"],
            environment={key: _env_string(value) for key, value in variables.items()},
            layers=tuple(layers),
            timeout=int(resolver.resolve(props.get("Timeout", 3))),
            memory_size=int(resolver.resolve(props.get("MemorySize", 128))),
            reserved_concurrency=_optional_int(resolver.resolve(props.get("ReservedConcurrentExecutions"))),
            event_invoke=EventInvokeConfig(
                maximum_retry_attempts=int(resolver.resolve(invoke.get("MaximumRetryAttempts", 2))),
                maximum_event_age_seconds=int(
                    resolver.resolve(invoke.get("MaximumEventAgeInSeconds", 21600))
                ),
                on_failure_queue=on_failure.rsplit(":", 1)[-1]
                if isinstance(on_failure, str) and on_failure.startswith("arn:aws:sqs:")
                else None,
            ),
        )
    return functions


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(item) for item in value)


def _apis(cfn: Mapping[str, Any], resolver: Resolver, functions: Mapping[str, Function]) -> list[HttpApi]:
    stages: dict[str, str] = {}
    for resource in _of_type(cfn, "AWS::ApiGatewayV2::Stage").values():
        api = resource["Properties"].get("ApiId", {})
        if isinstance(api, dict) and "Ref" in api:
            stages[api["Ref"]] = resource["Properties"].get("StageName", "$default")
    apis = []
    for logical_id, resource in _of_type(cfn, "AWS::ApiGatewayV2::Api").items():
        body = resolver.resolve(resource["Properties"].get("Body"))
        if body is None:
            raise TemplateError(f"{logical_id}: only HTTP APIs defined inline (Body) run locally")
        schemes = (body.get("components") or {}).get("securitySchemes") or {}
        authorizers = {}
        for name, scheme in schemes.items():
            config = scheme.get("x-amazon-apigateway-authorizer")
            if not config:
                continue
            if config.get("type") != "request":
                raise TemplateError(
                    f"{logical_id}: authorizer {name} of type {config.get('type')} is not supported"
                )
            authorizers[name] = Authorizer(
                name=name,
                function=_logical_id_from_arn(config["authorizerUri"], functions),
                identity_sources=_as_tuple(config.get("identitySource")),
                simple_responses=bool(config.get("enableSimpleResponses", False)),
                payload_version=str(config.get("authorizerPayloadFormatVersion", "2.0")),
                ttl_seconds=int(config.get("authorizerResultTtlInSeconds", 0) or 0),
            )
        default_security = body.get("security")
        routes = []
        for path, operations in (body.get("paths") or {}).items():
            for method, operation in operations.items():
                integration = (
                    operation.get("x-amazon-apigateway-integration") if isinstance(operation, dict) else None
                )
                if not integration:
                    continue
                security = operation.get("security", default_security) or []
                names = [name for requirement in security for name in requirement if name in authorizers]
                routes.append(
                    Route(
                        method="ANY" if method == "x-amazon-apigateway-any-method" else method.upper(),
                        path=path,
                        function=_logical_id_from_arn(integration["uri"], functions),
                        payload_version=str(integration.get("payloadFormatVersion", "2.0")),
                        authorizer=names[0] if names else None,
                    )
                )
        cors_config = body.get("x-amazon-apigateway-cors")
        cors = None
        if cors_config:
            cors = Cors(
                allow_origins=_as_tuple(cors_config.get("allowOrigins")),
                allow_methods=tuple(m.upper() for m in _as_tuple(cors_config.get("allowMethods"))),
                allow_headers=_as_tuple(cors_config.get("allowHeaders")),
                expose_headers=_as_tuple(cors_config.get("exposeHeaders")),
                max_age=int(cors_config["maxAge"]) if cors_config.get("maxAge") is not None else None,
                allow_credentials=bool(cors_config.get("allowCredentials", False)),
            )
        apis.append(
            HttpApi(
                logical_id=logical_id,
                api_id=resolver.physical_id(logical_id),
                routes=tuple(routes),
                authorizers=authorizers,
                cors=cors,
                stage=stages.get(logical_id, "$default"),
            )
        )
    return apis


def _buckets(
    cfn: Mapping[str, Any], resolver: Resolver, functions: Mapping[str, Function]
) -> dict[str, Bucket]:
    buckets = {}
    for logical_id, resource in _of_type(cfn, "AWS::S3::Bucket").items():
        props = resolver.resolve(
            {
                key: value
                for key, value in (resource.get("Properties") or {}).items()
                if key in ("VersioningConfiguration", "CorsConfiguration")
            }
        )
        notification = resource.get("Properties", {}).get("NotificationConfiguration") or {}
        triggers = []
        for config in notification.get("LambdaConfigurations", []):
            config = resolver.resolve(config)
            rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            triggers.append(
                BucketTrigger(
                    function=_logical_id_from_arn(config["Function"], functions),
                    event=config["Event"],
                    filter_rules=tuple((rule["Name"], rule["Value"]) for rule in rules),
                )
            )
        buckets[logical_id] = Bucket(
            logical_id=logical_id,
            name=resolver.physical_id(logical_id),
            versioned=(props.get("VersioningConfiguration") or {}).get("Status") == "Enabled",
            cors_rules=tuple((props.get("CorsConfiguration") or {}).get("CorsRules") or ()),
            triggers=tuple(triggers),
        )
    return buckets


def _queues(cfn: Mapping[str, Any], resolver: Resolver) -> dict[str, Queue]:
    queues = {}
    for logical_id, resource in _of_type(cfn, "AWS::SQS::Queue").items():
        props = resolver.resolve(resource.get("Properties") or {})
        attributes = {
            key: str(props[key])
            for key in ("MessageRetentionPeriod", "VisibilityTimeout", "DelaySeconds")
            if key in props
        }
        queues[logical_id] = Queue(
            logical_id=logical_id,
            name=resolver.physical_id(logical_id).rsplit("/", 1)[-1],
            attributes=attributes,
        )
    return queues


def _cdn(cfn: Mapping[str, Any], resolver: Resolver) -> CdnConfig | None:
    distributions = _of_type(cfn, "AWS::CloudFront::Distribution")
    if not distributions:
        return None
    _logical_id, distribution = next(iter(distributions.items()))
    config = resolver.resolve(distribution["Properties"]["DistributionConfig"])
    behaviour = config["DefaultCacheBehavior"]
    origin = next(o for o in config["Origins"] if o["Id"] == behaviour["TargetOriginId"])
    bucket = re.sub(r"\.s3[.-].*$", "", origin["DomainName"])
    policy_ref = (
        distribution["Properties"]["DistributionConfig"]["DefaultCacheBehavior"].get(
            "ResponseHeadersPolicyId"
        )
        or {}
    )
    cors = None
    headers: dict[str, str] = {}
    if isinstance(policy_ref, dict) and policy_ref.get("Ref") in cfn["Resources"]:
        policy = resolver.resolve(cfn["Resources"][policy_ref["Ref"]]["Properties"])[
            "ResponseHeadersPolicyConfig"
        ]
        cors_config = policy.get("CorsConfig")
        if cors_config:
            cors = Cors(
                allow_origins=_as_tuple(cors_config["AccessControlAllowOrigins"]["Items"]),
                allow_methods=_as_tuple(cors_config["AccessControlAllowMethods"]["Items"]),
                allow_headers=_as_tuple(cors_config["AccessControlAllowHeaders"]["Items"]),
                expose_headers=_as_tuple((cors_config.get("AccessControlExposeHeaders") or {}).get("Items")),
                max_age=cors_config.get("AccessControlMaxAgeSec"),
                allow_credentials=bool(cors_config.get("AccessControlAllowCredentials", False)),
            )
        headers = _security_headers(policy.get("SecurityHeadersConfig") or {})
        for item in (policy.get("CustomHeadersConfig") or {}).get("Items", []):
            headers[item["Header"]] = str(item["Value"])
    return CdnConfig(bucket=bucket, cors=cors, headers=headers)


def _security_headers(config: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    if "ContentTypeOptions" in config:
        headers["X-Content-Type-Options"] = "nosniff"
    if "FrameOptions" in config:
        headers["X-Frame-Options"] = config["FrameOptions"]["FrameOption"]
    if "ReferrerPolicy" in config:
        headers["Referrer-Policy"] = config["ReferrerPolicy"]["ReferrerPolicy"]
    if "ContentSecurityPolicy" in config:
        headers["Content-Security-Policy"] = config["ContentSecurityPolicy"]["ContentSecurityPolicy"]
    if "StrictTransportSecurity" in config:
        hsts = config["StrictTransportSecurity"]
        value = f"max-age={hsts['AccessControlMaxAgeSec']}"
        if hsts.get("IncludeSubdomains"):
            value += "; includeSubDomains"
        if hsts.get("Preload"):
            value += "; preload"
        headers["Strict-Transport-Security"] = value
    if "XSSProtection" in config:
        xss = config["XSSProtection"]
        value = "1" if xss.get("Protection") else "0"
        if xss.get("ModeBlock"):
            value += "; mode=block"
        headers["X-XSS-Protection"] = value
    return headers
