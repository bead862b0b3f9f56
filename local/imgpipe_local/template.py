"""template.yaml as the local stack wires it: functions, the HTTP API, buckets, triggers, the CDN.

Everything is read from the SAM-translated CloudFormation (imgpipe_local.cfn), which holds
what AWS deploys: implicit permissions, the HTTP API's OpenAPI body, the S3 notifications, the
layers' hashed ids. The template stays the one description of routes, authorizers, CORS,
buckets and triggers. Locally, buckets keep their BucketName, queues and functions are named
`<stack>-<LogicalId>`, there is no CloudFront distribution (its Ref is "", so code that would
invalidate skips it), and the API's and distribution's URLs are the local servers'.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe_local import cfn
from imgpipe_local.cfn import ACCOUNT_ID, REGION, TemplateError
from imgpipe_local.cors import CorsRules, as_tuple

log = logging.getLogger("imgpipe_local")

# template.yaml as YAML (CloudFormation's short-form tags read as their long form), for readers
# such as the OpenAPI and spec tests that want the document itself.
load_yaml = cfn.load_yaml


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
class HttpApi:
    logical_id: str
    api_id: str
    routes: tuple[Route, ...]
    authorizers: dict[str, Authorizer]
    cors: CorsRules | None
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
    cors: CorsRules | None
    headers: dict[str, str]  # security + custom headers added to every response


@dataclass
class LocalTemplate:
    functions: dict[str, Function]
    apis: list[HttpApi]
    buckets: dict[str, Bucket]
    queues: dict[str, Queue]
    cdn: CdnConfig | None
    outputs: dict[str, Any]


_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
}


class _LocalResources:
    """What a Ref or GetAtt of each resource means in the local stack."""

    def __init__(
        self, resources: Mapping[str, Any], parameters: Mapping[str, Any], queue_url_base: str
    ) -> None:
        self.resources = resources
        self.stack = str(parameters["AWS::StackName"])
        self.region, self.account = str(parameters["AWS::Region"]), str(parameters["AWS::AccountId"])
        self.queue_url_base = queue_url_base.rstrip("/")
        self.resolver: cfn.Resolver  # set by load(): names may themselves be intrinsics

    def name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        given = (resource.get("Properties") or {}).get(_NAME_PROPERTY.get(resource["Type"], ""))
        if given is not None:
            return str(self.resolver.resolve(given))
        name = f"{self.stack}-{logical_id}"
        return name.lower() if resource["Type"] == "AWS::S3::Bucket" else name

    def ref(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        if kind == "AWS::SQS::Queue":
            return f"{self.queue_url_base}/{self.account}/{self.name(logical_id)}"
        if kind == "AWS::Lambda::LayerVersion":
            return f"arn:aws:lambda:{self.region}:{self.account}:layer:{logical_id}:1"
        if kind == "AWS::ApiGatewayV2::Api":
            return logical_id.lower()  # the API id; see api_placeholder_url
        if kind == "AWS::CloudFront::Distribution":
            return ""
        return self.name(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind, name = self.resources[logical_id]["Type"], self.name(logical_id)
        arn = f"arn:aws:{kind.split('::')[1].lower()}:{self.region}:{self.account}"
        known: dict[str, dict[str, str]] = {
            "AWS::S3::Bucket": {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            },
            "AWS::SQS::Queue": {"Arn": f"{arn}:{name}", "QueueName": name, "QueueUrl": self.ref(logical_id)},
            "AWS::Lambda::Function": {"Arn": f"{arn}:function:{name}"},
            "AWS::Logs::LogGroup": {"Arn": f"{arn}:log-group:{name}:*"},
            "AWS::IAM::Role": {"Arn": f"arn:aws:iam::{self.account}:role/{name}"},
            "AWS::CloudFront::Distribution": {"DomainName": distribution_domain(logical_id), "Id": ""},
            "AWS::CloudFront::OriginAccessControl": {"Id": name},
            "AWS::ApiGatewayV2::Api": {
                "ApiEndpoint": api_placeholder_url(logical_id, self.region),
                "ApiId": self.ref(logical_id),
            },
        }
        value = known.get(kind, {}).get(attribute)
        if value is None:
            raise TemplateError(
                f"Fn::GetAtt {logical_id}.{attribute}: the local stack has no value for it ({kind})"
            )
        return value


def distribution_domain(logical_id: str) -> str:
    """The placeholder domain a distribution gets; `https://<it>` is rewritten to the CDN's URL."""
    return f"{logical_id.lower()}.cloudfront.local"


def api_placeholder_url(logical_id: str, region: str = REGION) -> str:
    return f"https://{logical_id.lower()}.execute-api.{region}.amazonaws.com"


def local_resolver(
    translated: Mapping[str, Any],
    parameters: Mapping[str, Any],
    *,
    api_url: str = "",
    cdn_url: str = "",
    queue_url_base: str = "",
) -> cfn.Resolver:
    """An intrinsics resolver for `translated` that names resources as the local stack creates them."""
    rewrites: dict[str, str] = {}
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] == "AWS::ApiGatewayV2::Api" and api_url:
            rewrites[api_placeholder_url(logical_id, parameters["AWS::Region"])] = api_url.rstrip("/")
        if resource["Type"] == "AWS::CloudFront::Distribution" and cdn_url:
            rewrites[f"https://{distribution_domain(logical_id)}"] = cdn_url.rstrip("/")
            rewrites[distribution_domain(logical_id)] = cdn_url.split("://", 1)[-1].rstrip("/")

    def rewrite(text: str) -> str:
        for placeholder, local_url in rewrites.items():
            text = text.replace(placeholder, local_url)
        return text

    local = _LocalResources(translated["Resources"], parameters, queue_url_base)
    local.resolver = cfn.Resolver(
        translated, parameters, ref=local.ref, get_att=local.get_att, rewrite=rewrite
    )
    return local.resolver


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
    sam = cfn.load_yaml(template_path)
    values = cfn.parameter_values(sam, parameters)
    translated = cfn.translate(sam, values)
    resources: dict[str, Any] = translated["Resources"]
    resolver = local_resolver(
        translated, values, api_url=api_url, cdn_url=cdn_url, queue_url_base=queue_url_base
    )
    functions = _functions(resources, resolver, template_path.parent)
    outputs = {}
    for name, output in (translated.get("Outputs") or {}).items():
        try:
            if "Condition" not in output or resolver.condition(output["Condition"]):
                outputs[name] = resolver.resolve(output["Value"])
        except TemplateError as error:  # an output is for people; the stack runs without it
            log.warning("output %s has no local value: %s", name, error)
    return LocalTemplate(
        functions=functions,
        apis=_apis(resources, resolver, functions),
        buckets=_buckets(resources, resolver, functions),
        queues={
            logical_id: Queue(
                logical_id, resolver.ref(logical_id).rsplit("/", 1)[-1], _queue_attributes(resolver, resource)
            )
            for logical_id, resource in _of_type(resources, "AWS::SQS::Queue").items()
        },
        cdn=_cdn(resources, resolver),
        outputs=outputs,
    )


def _of_type(resources: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {logical_id: resource for logical_id, resource in resources.items() if resource["Type"] == kind}


def _local_path(code: Mapping[str, Any], root: Path, what: str) -> Path:
    if code.get("S3Bucket") != cfn.CODE_BUCKET:
        raise TemplateError(f"{what}: only local CodeUri/ContentUri folders can run locally, got {code}")
    return (root / str(code["S3Key"])).resolve()


def _function_by_arn(arn: str, functions: Mapping[str, Function]) -> str:
    match = re.search(r"function:([A-Za-z0-9_-]+)", arn)
    for function in functions.values():
        if match and function.name == match.group(1):
            return function.logical_id
    raise TemplateError(f"{arn} names no function of the template")


def _functions(resources: Mapping[str, Any], resolver: cfn.Resolver, root: Path) -> dict[str, Function]:
    layers = _of_type(resources, "AWS::Lambda::LayerVersion")
    invoke_configs = {
        resolver.resolve(resource["Properties"]["FunctionName"]): resource["Properties"]
        for resource in _of_type(resources, "AWS::Lambda::EventInvokeConfig").values()
    }
    functions = {}
    for logical_id, resource in _of_type(resources, "AWS::Lambda::Function").items():
        props = resource["Properties"]
        if "Code" not in props or "Handler" not in props:
            raise TemplateError(f"{logical_id}: only zip functions with a Handler run locally")
        # Layers given as ARNs (e.g. Powertools' public layer) are satisfied by the venv.
        refs = [layer.get("Ref") for layer in props.get("Layers", []) if isinstance(layer, dict)]
        variables = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
        name = resolver.ref(logical_id)
        invoke = resolver.resolve(invoke_configs.get(name) or {})
        on_failure = str(invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", ""))
        reserved = resolver.resolve(props.get("ReservedConcurrentExecutions"))
        functions[logical_id] = Function(
            logical_id=logical_id,
            name=name,
            code_uri=_local_path(props["Code"], root, logical_id),
            handler=props["Handler"],
            environment={key: _env_string(value) for key, value in variables.items()},
            layers=tuple(
                _local_path(layers[ref]["Properties"]["Content"], root, f"{logical_id} layer")
                for ref in refs
                if ref in layers
            ),
            timeout=int(resolver.resolve(props.get("Timeout", 3))),
            memory_size=int(resolver.resolve(props.get("MemorySize", 128))),
            event_invoke=EventInvokeConfig(
                maximum_retry_attempts=int(invoke.get("MaximumRetryAttempts", 2)),
                maximum_event_age_seconds=int(invoke.get("MaximumEventAgeInSeconds", 21600)),
                on_failure_queue=on_failure.rsplit(":", 1)[-1]
                if on_failure.startswith("arn:aws:sqs:")
                else None,
            ),
            reserved_concurrency=None if reserved is None else int(reserved),
        )
    return functions


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _apis(
    resources: Mapping[str, Any],
    resolver: cfn.Resolver,
    functions: Mapping[str, Function],
) -> list[HttpApi]:
    stages = {
        resource["Properties"]["ApiId"]["Ref"]: resource["Properties"].get("StageName", "$default")
        for resource in _of_type(resources, "AWS::ApiGatewayV2::Stage").values()
        if isinstance(resource["Properties"].get("ApiId"), dict) and "Ref" in resource["Properties"]["ApiId"]
    }
    apis = []
    for logical_id, resource in _of_type(resources, "AWS::ApiGatewayV2::Api").items():
        body = resolver.resolve(resource["Properties"].get("Body"))
        if body is None:
            raise TemplateError(f"{logical_id}: only HTTP APIs defined inline (Body) run locally")
        authorizers = {}
        for name, scheme in ((body.get("components") or {}).get("securitySchemes") or {}).items():
            config = scheme.get("x-amazon-apigateway-authorizer")
            if not config:
                continue
            if config.get("type") != "request":
                raise TemplateError(
                    f"{logical_id}: authorizer {name} of type {config.get('type')} is not supported"
                )
            authorizers[name] = Authorizer(
                name=name,
                function=_function_by_arn(config["authorizerUri"], functions),
                identity_sources=as_tuple(config.get("identitySource")),
                simple_responses=bool(config.get("enableSimpleResponses", False)),
                payload_version=str(config.get("authorizerPayloadFormatVersion", "2.0")),
                ttl_seconds=int(config.get("authorizerResultTtlInSeconds", 0) or 0),
            )
        routes = []
        for path, operations in (body.get("paths") or {}).items():
            for method, operation in operations.items():
                integration = isinstance(operation, dict) and operation.get("x-amazon-apigateway-integration")
                if not integration:
                    continue
                security = operation.get("security", body.get("security")) or []
                names = [name for requirement in security for name in requirement if name in authorizers]
                routes.append(
                    Route(
                        method="ANY" if method == "x-amazon-apigateway-any-method" else method.upper(),
                        path=path,
                        function=_function_by_arn(integration["uri"], functions),
                        payload_version=str(integration.get("payloadFormatVersion", "2.0")),
                        authorizer=names[0] if names else None,
                    )
                )
        cors = body.get("x-amazon-apigateway-cors")
        apis.append(
            HttpApi(
                logical_id=logical_id,
                api_id=resolver.ref(logical_id),
                routes=tuple(routes),
                authorizers=authorizers,
                cors=CorsRules.of(
                    cors.get("allowOrigins"),
                    cors.get("allowMethods"),
                    cors.get("allowHeaders"),
                    expose_headers=as_tuple(cors.get("exposeHeaders")),
                    max_age=None if cors.get("maxAge") is None else int(cors["maxAge"]),
                    allow_credentials=bool(cors.get("allowCredentials", False)),
                )
                if cors
                else None,
                stage=stages.get(logical_id, "$default"),
            )
        )
    return apis


def _buckets(
    resources: Mapping[str, Any],
    resolver: cfn.Resolver,
    functions: Mapping[str, Function],
) -> dict[str, Bucket]:
    buckets = {}
    for logical_id, resource in _of_type(resources, "AWS::S3::Bucket").items():
        props = resource.get("Properties") or {}
        notifications = resolver.resolve(props.get("NotificationConfiguration") or {})
        triggers = tuple(
            BucketTrigger(
                function=_function_by_arn(config["Function"], functions),
                event=config["Event"],
                filter_rules=tuple(
                    (rule["Name"], rule["Value"])
                    for rule in config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                ),
            )
            for config in notifications.get("LambdaConfigurations", [])
        )
        versioning = resolver.resolve(props.get("VersioningConfiguration") or {})
        buckets[logical_id] = Bucket(
            logical_id=logical_id,
            name=resolver.ref(logical_id),
            versioned=versioning.get("Status") == "Enabled",
            cors_rules=tuple(resolver.resolve(props.get("CorsConfiguration") or {}).get("CorsRules", ())),
            triggers=triggers,
        )
    return buckets


def _queue_attributes(resolver: cfn.Resolver, resource: Mapping[str, Any]) -> dict[str, str]:
    props = resolver.resolve(resource.get("Properties") or {})
    return {
        key: str(props[key])
        for key in ("MessageRetentionPeriod", "VisibilityTimeout", "DelaySeconds")
        if key in props
    }


# ResponseHeadersPolicy's SecurityHeadersConfig: header, and how its value reads from the config.
_SECURITY_HEADERS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "ContentTypeOptions": ("X-Content-Type-Options", lambda c: "nosniff"),
    "FrameOptions": ("X-Frame-Options", lambda c: c["FrameOption"]),
    "ReferrerPolicy": ("Referrer-Policy", lambda c: c["ReferrerPolicy"]),
    "ContentSecurityPolicy": ("Content-Security-Policy", lambda c: c["ContentSecurityPolicy"]),
    "StrictTransportSecurity": (
        "Strict-Transport-Security",
        lambda c: (
            f"max-age={c['AccessControlMaxAgeSec']}"
            + ("; includeSubDomains" if c.get("IncludeSubdomains") else "")
            + ("; preload" if c.get("Preload") else "")
        ),
    ),
    "XSSProtection": (
        "X-XSS-Protection",
        lambda c: ("1" if c.get("Protection") else "0") + ("; mode=block" if c.get("ModeBlock") else ""),
    ),
}


def _cdn(resources: Mapping[str, Any], resolver: cfn.Resolver) -> CdnConfig | None:
    distributions = _of_type(resources, "AWS::CloudFront::Distribution")
    if not distributions:
        return None
    raw = next(iter(distributions.values()))["Properties"]["DistributionConfig"]
    config = resolver.resolve(raw)
    behaviour = config["DefaultCacheBehavior"]
    origin = next(o for o in config["Origins"] if o["Id"] == behaviour["TargetOriginId"])
    policy_ref = raw["DefaultCacheBehavior"].get("ResponseHeadersPolicyId")
    if not (isinstance(policy_ref, dict) and policy_ref.get("Ref") in resources):
        return CdnConfig(bucket=re.sub(r"\.s3[.-].*$", "", origin["DomainName"]), cors=None, headers={})
    policy = resolver.resolve(resources[policy_ref["Ref"]]["Properties"])["ResponseHeadersPolicyConfig"]
    cors = policy.get("CorsConfig")
    security = policy.get("SecurityHeadersConfig") or {}
    headers: dict[str, str] = {
        header: str(value(security[key]))
        for key, (header, value) in _SECURITY_HEADERS.items()
        if key in security
    }
    headers.update(
        {
            item["Header"]: str(item["Value"])
            for item in (policy.get("CustomHeadersConfig") or {}).get("Items", [])
        }
    )
    return CdnConfig(
        bucket=re.sub(r"\.s3[.-].*$", "", origin["DomainName"]),
        cors=CorsRules.of(
            cors["AccessControlAllowOrigins"]["Items"],
            cors["AccessControlAllowMethods"]["Items"],
            cors["AccessControlAllowHeaders"]["Items"],
            expose_headers=as_tuple((cors.get("AccessControlExposeHeaders") or {}).get("Items")),
            max_age=cors.get("AccessControlMaxAgeSec"),
            allow_credentials=bool(cors.get("AccessControlAllowCredentials", False)),
        )
        if cors
        else None,
        headers=headers,
    )
