"""The security properties of template.yaml, read from what CloudFormation will deploy.

The template is run through the SAM translator (the same translation the local stack uses) with
parameter values shaped as CloudFormation passes them, and intrinsics are resolved to concrete
ARNs, so these tests see the implicit roles, permissions, notification and OpenAPI body SAM
generates — not just the YAML we wrote. Each test fails if someone weakens what it guards.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import subprocess
from graphlib import CycleError, TopologicalSorter
from typing import Any

import pytest

from imgpipe import invalidation, jwt_verify, keys, settings
from imgpipe_local.cfn import Resolver, TemplateError, load_yaml, parameter_values, translate
from imgpipe_local.template import local_resolver
from tests.conftest import ROOT

STACK = "imgpipe-test"
ACCOUNT = "111122223333"
REGION = "eu-west-1"
ORIGINS = ["https://app.example.com", "https://admin.example.com"]
UPLOADS = f"{STACK}-uploads-{ACCOUNT}-{REGION}"
ASSETS = f"{STACK}-assets-{ACCOUNT}-{REGION}"
LOGS = f"{STACK}-logs-{ACCOUNT}-{REGION}"
# CommaDelimitedList parameters reach the transform as lists when CloudFormation deploys.
PARAMETERS = {
    "AWS::StackName": STACK,
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "UserPoolId": "eu-west-1_AbCdEf123",
    "UserPoolClientId": "1example23456789",
    "AllowedOrigins": ORIGINS,
}
MANAGED_POLICIES_ALLOWED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}

SAM = load_yaml(ROOT / "template.yaml")


def _build(overrides: dict[str, Any]) -> tuple[dict[str, Any], Resolver]:
    values = parameter_values(SAM, {**PARAMETERS, **overrides})
    cfn = translate(SAM, values)
    return cfn, local_resolver(cfn, values)


CFN, RESOLVER = _build({})
RES = CFN["Resources"]


def resolved(value: Any) -> Any:
    return RESOLVER.resolve(value)


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RES.items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- IAM, evaluated


def role_of(function: str) -> dict[str, Any]:
    role_ref = RES[function]["Properties"]["Role"]
    return RES[role_ref["Fn::GetAtt"][0]]["Properties"]


def allow_statements(function: str) -> list[dict[str, Any]]:
    statements = []
    for policy in role_of(function).get("Policies", []):
        for statement in as_list(resolved(policy["PolicyDocument"])["Statement"]):
            assert statement["Effect"] == "Allow", statement
            statements.append(statement)
    return statements


def allows(function: str, action: str, resource: str) -> bool:
    """Whether the function's inline policies allow `action` on `resource`.

    Conditions are ignored, which can only over-report access: a "cannot" test stays sound.
    """
    for statement in allow_statements(function):
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources
        ):
            return True
    return False


def s3(bucket: str, key: str = "") -> str:
    return f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"


USER = keys.user_key("0d2f5e0c-6a7b-4c3d-9e8f-1a2b3c4d5e6f")
UPLOAD_KEY = keys.upload_key(USER)
ASSET_KEYS = [
    keys.manifest_key(USER),
    keys.stable_key(USER, "512x512.jpg"),
    keys.versioned_key(USER, "ab", "x.webp"),
]
FUNCTIONS = sorted(of_type("AWS::Lambda::Function"))


def test_bucket_names_resolve_as_the_functions_expect():
    assert resolved({"Ref": "UploadsBucket"}) == UPLOADS
    assert resolved({"Ref": "AssetsBucket"}) == ASSETS
    for function in ("ProcessImageFunction", "DeleteAvatarFunction", "PresignUploadFunction"):
        env = resolved(RES[function]["Properties"]["Environment"]["Variables"])
        assert env["UPLOADS_BUCKET"] == UPLOADS, function
        assert env.get("ASSETS_BUCKET", ASSETS) == ASSETS, function


def test_processor_cannot_create_objects_in_the_uploads_bucket():
    # A write into the bucket that triggers it would be a recursive invocation loop.
    for action in ("s3:PutObject", "s3:CopyObject", "s3:RestoreObject", "s3:CompleteMultipartUpload"):
        for key in (UPLOAD_KEY, "avatars/x/y", "anything"):
            assert not allows("ProcessImageFunction", action, s3(UPLOADS, key)), (action, key)
    assert not allows("ProcessImageFunction", "s3:DeleteObject", s3(UPLOADS, UPLOAD_KEY))
    # What it needs: read the original (by version), tag a rejected one, write renditions + manifest.
    assert allows("ProcessImageFunction", "s3:GetObjectVersion", s3(UPLOADS, UPLOAD_KEY))
    assert allows("ProcessImageFunction", "s3:PutObjectVersionTagging", s3(UPLOADS, UPLOAD_KEY))
    for key in ASSET_KEYS:
        assert allows("ProcessImageFunction", "s3:PutObject", s3(ASSETS, key))
    assert not allows("ProcessImageFunction", "s3:PutObject", s3(ASSETS, "index.html"))


def test_processor_deletes_only_in_the_assets_bucket():
    # Expiring replaced renditions and taking back an erased avatar's writes: deletes (conditional
    # ones need GetObject too) and a listing of the versioned renditions, in the assets bucket.
    for key in ASSET_KEYS:
        assert allows("ProcessImageFunction", "s3:DeleteObject", s3(ASSETS, key))
        assert allows("ProcessImageFunction", "s3:GetObject", s3(ASSETS, key))
    assert allows("ProcessImageFunction", "s3:ListBucket", s3(ASSETS))
    assert not allows("ProcessImageFunction", "s3:DeleteObject", s3(ASSETS, "index.html"))
    for key in (UPLOAD_KEY, f"avatars/{USER}/other"):
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
            assert not allows("ProcessImageFunction", action, s3(UPLOADS, key)), (action, key)


def test_processor_reads_a_missing_object_as_404_not_403():
    # S3 says 404 only to a caller allowed to list the bucket; a 403 would read as a transient error.
    for bucket in (UPLOADS, ASSETS):
        statements = allow_statements("ProcessImageFunction")
        [statement] = [s for s in statements if s3(bucket) in as_list(s["Resource"])]
        assert as_list(statement["Action"]) == ["s3:ListBucket"]
        assert "Condition" not in statement


def test_presign_role_can_only_put_originals():
    # The presigned POST carries the role's authority: whatever the role may do, a leaked form may.
    assert allows("PresignUploadFunction", "s3:PutObject", s3(UPLOADS, UPLOAD_KEY))
    assert not allows("PresignUploadFunction", "s3:PutObject", s3(UPLOADS, f"avatars/{USER}/other"))
    assert not allows("PresignUploadFunction", "s3:PutObject", s3(UPLOADS, "original"))
    for key in ASSET_KEYS:
        assert not allows("PresignUploadFunction", "s3:PutObject", s3(ASSETS, key))
    actions = {
        a for statement in allow_statements("PresignUploadFunction") for a in as_list(statement["Action"])
    }
    assert actions == {"s3:PutObject"}


def test_authorizer_has_no_aws_permissions_beyond_logs():
    assert allow_statements("AuthorizerFunction") == []
    assert role_of("AuthorizerFunction")["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]


def test_authorizer_timeout_is_never_what_ends_a_jwks_fetch():
    # One verification fetches at most one JWKS, bounded by one deadline; the rest is CPU.
    timeout = int(resolved(RES["AuthorizerFunction"]["Properties"]["Timeout"]))
    assert timeout >= 3 * jwt_verify.DEFAULT_FETCH_TIMEOUT_SECONDS


def test_replica_regions_reach_the_authorizer_checked_by_the_parameter_pattern():
    pattern = re.compile(SAM["Parameters"]["UserPoolReplicaRegions"]["AllowedPattern"])
    for good in ("", "us-east-1", "us-east-1,eu-west-2,ap-southeast-2", "us-gov-west-1"):
        assert pattern.fullmatch(good), good
    for bad in ("us-east-1,", " us-east-1", "us-east-1, eu-west-1", "evil.example.com", "US-EAST-1"):
        assert not pattern.fullmatch(bad), bad
    cfn, resolver = _build({"UserPoolReplicaRegions": "eu-west-2,us-west-2"})
    variables = resolver.resolve(cfn["Resources"]["AuthorizerFunction"]["Properties"]["Environment"])
    assert variables["Variables"]["USER_POOL_REPLICA_REGIONS"] == "eu-west-2,us-west-2"


def test_delete_can_erase_a_users_objects_but_create_nothing():
    # Originals are versioned: erased version by version.
    assert allows("DeleteAvatarFunction", "s3:ListBucketVersions", s3(UPLOADS))
    assert allows("DeleteAvatarFunction", "s3:DeleteObjectVersion", s3(UPLOADS, UPLOAD_KEY))
    # Assets are not versioned: no version permission there at all.
    assert allows("DeleteAvatarFunction", "s3:ListBucket", s3(ASSETS))
    for key in ASSET_KEYS:
        assert allows("DeleteAvatarFunction", "s3:DeleteObject", s3(ASSETS, key))
        assert not allows("DeleteAvatarFunction", "s3:DeleteObjectVersion", s3(ASSETS, key))
    assert not allows("DeleteAvatarFunction", "s3:ListBucketVersions", s3(ASSETS))
    for bucket, key in [(UPLOADS, UPLOAD_KEY)] + [(ASSETS, k) for k in ASSET_KEYS]:
        assert not allows("DeleteAvatarFunction", "s3:PutObject", s3(bucket, key))
    assert not allows("DeleteAvatarFunction", "s3:DeleteObjectVersion", s3(UPLOADS, "elsewhere/x"))
    assert not allows("DeleteAvatarFunction", "s3:DeleteObject", s3(ASSETS, "elsewhere/x"))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_wildcard_grants(function):
    for statement in allow_statements(function):
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{function}: {action}"
        for resource in as_list(statement["Resource"]):
            assert resource != "*", function
            assert not resource.endswith(":::*"), f"{function}: {resource}"
    assert set(role_of(function).get("ManagedPolicyArns", [])) <= MANAGED_POLICIES_ALLOWED


# ---------------------------------------------------------------- buckets


@pytest.mark.parametrize("bucket", ["UploadsBucket", "AssetsBucket"])
def test_bucket_is_private_and_encrypted(bucket):
    props = RES[bucket]["Properties"]
    block = props["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}


def bucket_policy(bucket: str) -> list[dict[str, Any]]:
    [policy] = [
        p for p in of_type("AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    return as_list(resolved(policy["Properties"]["PolicyDocument"])["Statement"])


@pytest.mark.parametrize(
    ("bucket", "name"), [("UploadsBucket", UPLOADS), ("AssetsBucket", ASSETS), ("AccessLogsBucket", LOGS)]
)
def test_bucket_refuses_plain_http(bucket, name):
    deny = [
        s
        for s in bucket_policy(bucket)
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert deny, f"{bucket}: no TLS-only statement"
    [statement] = deny
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert set(as_list(statement["Resource"])) == {s3(name), s3(name, "*")}
    conditions = [s.get("Condition", {}).get("NumericLessThan", {}) for s in bucket_policy(bucket)]
    old_tls = [s for s, c in zip(bucket_policy(bucket), conditions, strict=True) if "s3:TlsVersion" in c]
    assert [s["Effect"] for s in old_tls] == ["Deny"]


def test_uploads_bucket_policy_grants_nothing():
    assert [s for s in bucket_policy("UploadsBucket") if s["Effect"] == "Allow"] == []


def test_only_this_distribution_reads_assets_and_only_avatars():
    allowed = [s for s in bucket_policy("AssetsBucket") if s["Effect"] == "Allow"]
    [statement] = allowed
    assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert as_list(statement["Action"]) == ["s3:GetObject"]
    assert as_list(statement["Resource"]) == [s3(ASSETS, "avatars/*")]
    source = RES["AssetsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [raw] = [s for s in source if s["Effect"] == "Allow"]
    assert "${Distribution}" in raw["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]


def test_uploads_bucket_keeps_originals_and_cleans_up():
    props = RES["UploadsBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any("AbortIncompleteMultipartUpload" in r for r in rules)
    [cors] = resolved(props["CorsConfiguration"]["CorsRules"])
    assert cors["AllowedOrigins"] == ORIGINS
    assert cors["AllowedMethods"] == ["POST"]


# ---------------------------------------------------------------- the upload trigger


def test_processor_fires_on_new_originals_only():
    [config] = RES["UploadsBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Function"] == {"Fn::GetAtt": ["ProcessImageFunction", "Arn"]}
    rules = {r["Name"]: r["Value"] for r in config["Filter"]["S3Key"]["Rules"]}
    # The filter matches exactly the keys the presign function hands out.
    assert UPLOAD_KEY.startswith(rules["prefix"])
    assert UPLOAD_KEY.endswith(rules["suffix"])
    assert "NotificationConfiguration" not in RES["AssetsBucket"]["Properties"]
    [permission] = [
        p["Properties"]
        for p in of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "s3.amazonaws.com"
    ]
    assert permission["FunctionName"] == {"Ref": "ProcessImageFunction"}
    assert resolved(permission["SourceAccount"]) == ACCOUNT
    # Only this bucket may invoke the processor (a SourceArn written from the name, not a !Ref).
    assert resolved(permission["SourceArn"]) == s3(UPLOADS)
    assert resolved(RES["UploadsBucket"]["Properties"]["BucketName"]) == UPLOADS


def test_failed_processing_is_retried_a_little_then_parked_with_an_alarm():
    [config] = of_type("AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    assert props["FunctionName"] == {"Ref": "ProcessImageFunction"}
    assert 0 < props["MaximumRetryAttempts"] <= 2
    assert props["MaximumEventAgeInSeconds"] <= 6 * 3600
    destination = props["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["ProcessingDeadLetterQueue", "Arn"]}
    dlq_arn = resolved(destination)
    assert allows("ProcessImageFunction", "sqs:SendMessage", dlq_arn)
    alarms = [a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()]
    watched = {
        (a["MetricName"], str(resolved(a["Dimensions"][0]["Value"]))) for a in alarms if a.get("Dimensions")
    }
    assert ("ApproximateNumberOfMessagesVisible", dlq_arn.rsplit(":", 1)[1]) in watched
    assert ("Errors", resolved({"Ref": "ProcessImageFunction"})) in watched


# ---------------------------------------------------------------- the HTTP API


API_BODY = RES["HttpApi"]["Properties"]["Body"]


def test_cors_preflight_is_answered_by_api_gateway_for_the_app_origins():
    cors = resolved(API_BODY["x-amazon-apigateway-cors"])
    assert cors["allowOrigins"] == ORIGINS
    assert {"POST", "DELETE"} <= set(cors["allowMethods"])
    assert {"authorization", "content-type"} <= {h.lower() for h in cors["allowHeaders"]}
    # No OPTIONS route: a route would send preflights through the authorizer.
    assert all("options" not in methods for methods in API_BODY["paths"].values())


def test_every_route_is_behind_the_lambda_authorizer():
    routes = {(m.upper(), p) for p, methods in API_BODY["paths"].items() for m in methods}
    assert routes == {("POST", "/avatars/key_upload"), ("DELETE", "/avatars")}
    for methods in API_BODY["paths"].values():
        for operation in methods.values():
            assert operation["security"] == [{"JwtLambdaAuthorizer": []}]
            assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"


def test_authorizer_is_a_cached_request_authorizer_with_simple_responses():
    scheme = API_BODY["components"]["securitySchemes"]["JwtLambdaAuthorizer"]
    authorizer = resolved(scheme["x-amazon-apigateway-authorizer"])
    assert authorizer["type"] == "request"
    assert authorizer["identitySource"] == ["$request.header.Authorization"]
    assert authorizer["authorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["enableSimpleResponses"] is True
    assert (
        int(authorizer["authorizerResultTtlInSeconds"])
        == SAM["Parameters"]["AuthorizerCacheTtlSeconds"]["Default"]
    )
    assert f"function:{resolved({'Ref': 'AuthorizerFunction'})}/" in authorizer["authorizerUri"]
    [permission] = [
        p["Properties"]
        for p in of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    ]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert re.fullmatch(
        r"arn:aws:execute-api:eu-west-1:\d+:[^/]+/authorizers/\*", resolved(permission["SourceArn"])
    )


def test_routes_are_throttled():
    [stage] = of_type("AWS::ApiGatewayV2::Stage").values()
    settings = resolved(stage["Properties"]["DefaultRouteSettings"])
    assert 0 < int(settings["ThrottlingRateLimit"]) <= 100
    assert 0 < int(settings["ThrottlingBurstLimit"]) <= 200


# ---------------------------------------------------------------- CDN


def test_cdn_reads_the_private_bucket_through_origin_access_control():
    config = RES["Distribution"]["Properties"]["DistributionConfig"]
    [origin] = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["AssetsBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["OriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    oac = RES["OriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["SigningBehavior"], oac["SigningProtocol"]) == ("always", "sigv4")
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] in {"redirect-to-https", "https-only"}
    assert set(behaviour["AllowedMethods"]) <= {"GET", "HEAD", "OPTIONS"}
    # MinTTL 0 lets the manifest's no-cache and the stable copies' short max-age take effect.
    cache = RES["AssetsCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert cache["MinTTL"] == 0
    headers = resolved(RES["AssetsResponseHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"])
    assert headers["CorsConfig"]["AccessControlAllowOrigins"]["Items"] == ORIGINS
    assert headers["SecurityHeadersConfig"]["ContentTypeOptions"]["Override"] is True


def test_custom_domain_sets_alias_and_modern_tls():
    arn = "arn:aws:acm:us-east-1:111122223333:certificate/0a1b2c3d-1111-2222-3333-444455556666"
    cfn, resolver = _build({"CdnDomainName": "img.example.com", "CdnCertificateArn": arn})
    config = resolver.resolve(cfn["Resources"]["Distribution"]["Properties"]["DistributionConfig"])
    assert config["Aliases"] == ["img.example.com"]
    assert config["ViewerCertificate"]["AcmCertificateArn"] == arn
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] >= "TLSv1.2"
    assert resolver.resolve(cfn["Outputs"]["CdnUrl"]["Value"]) == "https://img.example.com"
    env = resolver.resolve(
        cfn["Resources"]["PresignUploadFunction"]["Properties"]["Environment"]["Variables"]
    )
    assert env["ASSETS_BASE_URL"] == "https://img.example.com"


# ---------------------------------------------------------------- functions and the stack as a whole


CONTRACT_ENV = {
    "AuthorizerFunction": {
        "USER_POOL_ID",
        "USER_POOL_REPLICA_REGIONS",
        "USER_POOL_CLIENT_ID",
        "JWT_ISSUER",
        "JWKS_URL",
        "TOKEN_USE",
    },
    "PresignUploadFunction": {
        "UPLOADS_BUCKET",
        "MAX_UPLOAD_BYTES",
        "UPLOAD_URL_TTL_SECONDS",
        "ASSETS_BASE_URL",
        "RENDITIONS",
    },
    "DeleteAvatarFunction": {"UPLOADS_BUCKET", "ASSETS_BUCKET", "DISTRIBUTION_ID", "INVALIDATION_QUEUE_URL"},
    "InvalidateCdnFunction": {"DISTRIBUTION_ID"},
    "ProcessImageFunction": {
        "UPLOADS_BUCKET",
        "ASSETS_BUCKET",
        "MAX_UPLOAD_BYTES",
        "MAX_IMAGE_PIXELS",
        "RENDITIONS",
        "OUTPUT_FORMATS",
        "JPEG_QUALITY",
        "WEBP_QUALITY",
    },
}
# The backfill renders what the processor renders, from the same variables.
CONTRACT_ENV["BackfillFunction"] = CONTRACT_ENV["ProcessImageFunction"]
IMAGE_FUNCTIONS = {"ProcessImageFunction", "BackfillFunction"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_runtime_logging_and_environment(function):
    props = RES[function]["Properties"]
    assert props["Runtime"] == "python3.13"
    assert resolved(props["Architectures"]) == ["arm64"]
    # The authorizer imports no X-Ray SDK (cold start), so its tracing is off (as is its X-Ray permission).
    traced = None if function == "AuthorizerFunction" else {"Mode": "Active"}
    assert resolved(props.get("TracingConfig")) == traced
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = RES[props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert int(resolved(log_group["Properties"]["RetentionInDays"])) > 0
    assert CONTRACT_ENV[function] <= set(props["Environment"]["Variables"])
    layers = [layer["Ref"] for layer in props["Layers"]]
    layer_names = [resolved(RES[layer]["Properties"]["LayerName"]) for layer in layers]
    assert f"{STACK}-shared" in layer_names


def test_only_the_image_functions_carry_pillow():
    for function in FUNCTIONS:
        layer_names = [
            resolved(RES[layer["Ref"]]["Properties"]["LayerName"])
            for layer in RES[function]["Properties"]["Layers"]
        ]
        assert any("pillow" in name for name in layer_names) == (function in IMAGE_FUNCTIONS)


def references(value: Any) -> set[str]:
    """Logical ids a property value depends on (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add((arg if isinstance(arg, list) else arg.split("."))[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
                if isinstance(arg, list):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def test_no_circular_dependency_between_resources():
    graph = {}
    for name, resource in RES.items():
        depends = set(as_list(resource.get("DependsOn", [])))
        graph[name] = (references(resource.get("Properties", {})) | depends) & RES.keys()
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        pytest.fail(f"circular dependency: {cycle.args[1]}")


def test_every_checkov_suppression_says_why():
    for name, resource in SAM["Resources"].items():
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
            assert len(skip.get("comment", "")) >= 20, f"{name} {skip['id']}: no reason given"


def test_outputs_give_clients_and_e2e_tests_what_they_need():
    outputs = {name: resolved(o["Value"]) for name, o in CFN["Outputs"].items()}
    for name in (
        "ApiUrl",
        "CdnUrl",
        "UserPoolId",
        "UserPoolClientId",
        "UploadsBucketName",
        "AssetsBucketName",
    ):
        assert outputs.get(name), name
    assert outputs["UploadsBucketName"] == UPLOADS
    assert outputs["UserPoolId"] == PARAMETERS["UserPoolId"]


def rules_hold(overrides: dict[str, Any]) -> bool:
    """CloudFormation's Rules section, evaluated as CloudFormation does before creating anything."""
    cfn, resolver = _build(overrides)
    for rule in cfn["Rules"].values():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        if not all(resolver.resolve(a["Assert"]) for a in rule["Assertions"]):
            return False
    return True


def test_rules_refuse_a_stack_that_trusts_no_issuer_or_half_a_custom_domain():
    assert rules_hold({})
    assert rules_hold({"UserPoolId": "", "JwtIssuer": "https://issuer.example.com"})
    assert not rules_hold({"UserPoolId": "", "JwtIssuer": ""})
    assert not rules_hold({"CdnDomainName": "img.example.com"})
    arn = "arn:aws:acm:us-east-1:111122223333:certificate/0a1b2c3d-1111-2222-3333-444455556666"
    assert not rules_hold({"CdnCertificateArn": arn})
    assert rules_hold({"CdnDomainName": "img.example.com", "CdnCertificateArn": arn})


@pytest.mark.parametrize(("value", "reserved"), [("20", 20), ("0", None)])
def test_processor_concurrency_is_reserved_unless_set_to_0(value, reserved):
    cfn, resolver = _build({"ProcessorReservedConcurrency": value})
    props = resolver.resolve(cfn["Resources"]["ProcessImageFunction"]["Properties"])
    got = props.get("ReservedConcurrentExecutions")
    assert (int(got) if got is not None else None) == reserved


# ---------------------------------------------------------------- the first deploy


def test_a_deploy_with_defaults_reserves_no_concurrency() -> None:
    # Lambda keeps 100 executions unreserved; new accounts often have a quota of 10 or 50, so any
    # default reservation makes the first `sam deploy --guided` fail and roll back.
    assert SAM["Parameters"]["ProcessorReservedConcurrency"]["Default"] == 0
    for function in FUNCTIONS:
        assert "ReservedConcurrentExecutions" not in resolved(RES[function]["Properties"]), function


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_layers_declare_and_are_built_for_the_functions_architecture(architecture: str) -> None:
    cfn, resolver = _build({"Architecture": architecture})
    for name, layer in cfn["Resources"].items():
        if layer["Type"] != "AWS::Lambda::LayerVersion":
            continue
        assert resolver.resolve(layer["Properties"]["CompatibleArchitectures"]) == [architecture], name
    for name, layer in SAM["Resources"].items():
        if layer["Type"] == "AWS::Serverless::LayerVersion":
            # sam build resolves the metadata with the same parameters (tests/build checks the ELF).
            assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}, name
            # sam passes layers/Makefile no architecture: it runs in a folder named after it, whose
            # platform.mk picks the wheels (tests/build builds both and reads their ELF headers).
            platform = ROOT / resolver.resolve(layer["Metadata"]["WorkingDirectory"]) / "platform.mk"
            wheel_arch = {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
            assert re.search(rf"^WHEEL_ARCH := {wheel_arch}$", platform.read_text(), re.M), name
    for function in FUNCTIONS:
        assert resolver.resolve(cfn["Resources"][function]["Properties"]["Architectures"]) == [architecture]


@pytest.mark.parametrize("tracing", ["Active", "Disabled"])
def test_tracing_is_one_parameter_for_lambda_iam_and_powertools(tracing: str) -> None:
    cfn, resolver = _build({"Tracing": tracing})
    for function in FUNCTIONS:
        props = cfn["Resources"][function]["Properties"]
        role = cfn["Resources"][props["Role"]["Fn::GetAtt"][0]]["Properties"]
        traced = tracing == "Active" and function != "AuthorizerFunction"
        # Lambda traces the function, and may send X-Ray its segments, exactly when it is traced,
        mode = resolver.resolve(props.get("TracingConfig"))
        assert mode == ({"Mode": "Active"} if traced else None), function
        xray = [arn for arn in role.get("ManagedPolicyArns", []) if "Xray" in str(arn)]
        assert bool(xray) == traced, function
        # and Powertools, which traces in Lambda unless told not to, is told when it is not.
        environment = resolver.resolve(props["Environment"]["Variables"])
        told = environment.get("POWERTOOLS_TRACE_DISABLED")
        assert told == (None if tracing == "Active" else "true"), function


def test_api_functions_time_out_before_the_http_api_gives_up_on_them() -> None:
    # HTTP API ends an integration after 30 s at most and answers 503 while the function runs on.
    for path, methods in API_BODY["paths"].items():
        for method, operation in methods.items():
            integration = operation["x-amazon-apigateway-integration"]
            api_timeout_ms = int(integration.get("timeoutInMillis", 30_000))
            assert api_timeout_ms <= 30_000
            [function] = re.findall(r"functions/\$\{(\w+)\.Arn\}", integration["uri"]["Fn::Sub"])
            timeout_s = int(resolved(RES[function]["Properties"]["Timeout"]))
            assert timeout_s * 1000 < api_timeout_ms, f"{method.upper()} {path}: {function} {timeout_s} s"


def test_allowed_origins_has_no_localhost_default_and_only_takes_origins() -> None:
    # No default: `sam deploy --guided` asks for it, a deploy without it fails before creating anything.
    declared = SAM["Parameters"]["AllowedOrigins"]
    assert "Default" not in declared
    with pytest.raises(TemplateError, match="AllowedOrigins"):
        parameter_values(SAM, {k: v for k, v in PARAMETERS.items() if k != "AllowedOrigins"})
    # CloudFormation matches AllowedPattern against each item of a CommaDelimitedList.
    pattern = re.compile(declared["AllowedPattern"])
    local = ["http://127.0.0.1:8000", "http://localhost:8000", "http://127.0.0.1:43117"]
    for origin in [*ORIGINS, *local, "https://img.example.co.uk:8443"]:
        assert pattern.fullmatch(origin), origin
    # Browsers send no trailing slash or path, so such an entry would never match: refuse it.
    for origin in [
        "https://app.example.com/",
        "https://app.example.com/app",
        "*",
        "app.example.com",
        " https://app.example.com",
        "https://App.example.com",
        "ftp://app.example.com",
    ]:
        assert not pattern.fullmatch(origin), origin


@pytest.mark.parametrize("bucket", ["UploadsBucket", "AssetsBucket", "AccessLogsBucket"])
def test_stack_deletion_keeps_the_buckets_instead_of_failing_on_them(bucket: str) -> None:
    # CloudFormation cannot delete a bucket that holds objects (the uploads bucket: every version
    # of every original), so `sam delete` would fail; the README says how to empty and delete them.
    assert SAM["Resources"][bucket]["DeletionPolicy"] == "Retain"
    assert SAM["Resources"][bucket]["UpdateReplacePolicy"] == "Retain"
    assert RES[bucket]["DeletionPolicy"] == "Retain"


# ---------------------------------------------------------------- logs


LAMBDA_LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}


@pytest.mark.parametrize("level", SAM["Parameters"]["LogLevel"]["AllowedValues"])
def test_lambda_filters_logs_at_the_log_level_parameter(level: str) -> None:
    # Without ApplicationLogLevel, Lambda drops JSON logs below INFO whatever Powertools emits,
    # so LogLevel=DEBUG would show nothing.
    assert level in LAMBDA_LOG_LEVELS
    cfn, resolver = _build({"LogLevel": level})
    for function in FUNCTIONS:
        props = resolver.resolve(cfn["Resources"][function]["Properties"])
        assert props["LoggingConfig"]["ApplicationLogLevel"] == level, function
        assert props["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == level, function
    # and the authorizer, which sets its own (stdlib) logger's level from it, starts with it.
    environ = resolver.resolve(
        cfn["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    )
    authorizer = settings.load(jwt_verify.AuthorizerSettings, {**environ, "AWS_REGION": REGION})
    assert logging.getLevelName(authorizer.log_level.upper()) == getattr(
        logging, level.replace("WARN", "WARNING")
    )


def test_every_function_logs_to_one_group_with_retention() -> None:
    groups = {RES[f]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in FUNCTIONS}
    assert len(groups) == 1
    [group] = groups
    assert int(resolved(RES[group]["Properties"]["RetentionInDays"])) > 0


# ---------------------------------------------------------------- names


# Names that must be unique across a whole account (S3: across every account), per resource type.
ACCOUNT_GLOBAL_NAMES = {
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::CloudFront::OriginAccessControl": ("OriginAccessControlConfig", "Name"),
    "AWS::CloudFront::CachePolicy": ("CachePolicyConfig", "Name"),
    "AWS::CloudFront::ResponseHeadersPolicy": ("ResponseHeadersPolicyConfig", "Name"),
    "AWS::CloudFront::Function": ("Name",),
    "AWS::CloudFront::OriginRequestPolicy": ("OriginRequestPolicyConfig", "Name"),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName",),
    "AWS::IAM::User": ("UserName",),
}
NAME_LIMITS = {"AWS::S3::Bucket": 63, "AWS::CloudFront::OriginAccessControl": 64}
# ap-southeast-1 … -7, ap-northeast-1 … -3 and cn-northwest-1 are 14 characters, the longest codes.
LONGEST_REGION = "ap-southeast-7"


def global_names(overrides: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Logical id -> (type, name) of every explicitly named account-global resource."""
    cfn, resolver = _build(overrides)
    names = {}
    for name, resource in cfn["Resources"].items():
        path = ACCOUNT_GLOBAL_NAMES.get(resource["Type"])
        value: Any = resource.get("Properties") or {}
        for key in path or ("",):
            value = value.get(key) if isinstance(value, dict) else None
        if path and value is not None:
            names[name] = (resource["Type"], str(resolver.resolve(value)))
    return names


def test_the_same_stack_name_in_two_regions_of_one_account_collides_nowhere() -> None:
    in_ireland = global_names({"AWS::Region": "eu-west-1"})
    in_virginia = global_names({"AWS::Region": "us-east-1"})

    # (IAM roles are left for CloudFormation to name, which makes them unique.)
    assert {"UploadsBucket", "AssetsBucket", "OriginAccessControl", "AssetsCachePolicy"} <= set(in_ireland)
    assert {n for _, n in in_ireland.values()}.isdisjoint(n for _, n in in_virginia.values())


def makefile_stack_name_max() -> int:
    [limit] = re.findall(r"^STACK_NAME_MAX := (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    return int(limit)


def test_the_stack_name_limit_is_the_longest_that_fits_every_name_in_every_region() -> None:
    limit = makefile_stack_name_max()

    def too_long(stack: str) -> list[str]:
        names = global_names({"AWS::StackName": stack, "AWS::Region": LONGEST_REGION})
        return [n for kind, n in names.values() if len(n) > NAME_LIMITS.get(kind, 128)]

    assert too_long("a" * limit) == []
    assert too_long("a" * (limit + 1)), "the limit could be longer"
    readme = (ROOT / "README.md").read_text()
    assert f"at most {limit} characters" in readme


@pytest.mark.parametrize(
    ("stack", "accepted"),
    [
        ("imgpipe", True),
        ("imgpipe-prod", True),
        ("a" * 27, True),
        ("a" * 28, False),
        ("Imgpipe", False),  # S3 bucket names are lowercase
        ("1imgpipe", False),  # CloudFormation stack names start with a letter
        ("imgpipe-", False),  # bucket name parts end with a letter or digit
        ("img_pipe", False),
    ],
)
def test_make_deploy_refuses_a_stack_name_the_buckets_cannot_carry(stack: str, accepted: bool) -> None:
    assert len("a" * 27) == makefile_stack_name_max()
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "check-stack-name", f"STACK={stack}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode == 0) == accepted, done.stderr
    if not accepted:
        assert "at most 27 characters" in done.stderr


# ---------------------------------------------------------------- access logs


def deployed(cfn: dict[str, Any], resolver: Resolver) -> dict[str, dict[str, Any]]:
    """The resources CloudFormation creates: conditions evaluated, intrinsics resolved."""
    return {
        name: {**resource, "Properties": resolver.resolve(resource.get("Properties") or {})}
        for name, resource in cfn["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }


def test_buckets_and_cdn_log_every_request_into_one_expiring_log_bucket() -> None:
    cfn, resolver = _build({})
    res = deployed(cfn, resolver)
    logs = res["AccessLogsBucket"]["Properties"]
    log_bucket = logs["BucketName"]

    # Both buckets write server access logs there, each under its own prefix below s3/
    targets = {
        bucket: res[bucket]["Properties"]["LoggingConfiguration"]
        for bucket in ("UploadsBucket", "AssetsBucket")
    }
    assert {t["DestinationBucketName"] for t in targets.values()} == {log_bucket}
    prefixes = [t["LogFilePrefix"] for t in targets.values()]
    assert len(set(prefixes)) == 2
    assert all(p.startswith("s3/") for p in prefixes)
    # which S3's logging service may write, from this account only, and nothing else may
    [grant] = [s for s in bucket_policy("AccessLogsBucket") if s["Effect"] == "Allow"]
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert as_list(grant["Action"]) == ["s3:PutObject"]
    assert as_list(grant["Resource"]) == [s3(log_bucket, "s3/*")]
    assert grant["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    # CloudFront writes its standard logs under cdn/ (with an ACL, so ACLs stay enabled there)
    cdn = res["Distribution"]["Properties"]["DistributionConfig"]["Logging"]
    assert cdn["Bucket"] == f"{log_bucket}.s3.amazonaws.com"
    assert cdn["Prefix"] == "cdn/"
    assert logs["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerPreferred"}]
    # Private, TLS-only, SSE-S3 (the only encryption server access logs accept), expiring
    assert all(logs["PublicAccessBlockConfiguration"].values())
    [rule] = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [expiry] = [r for r in logs["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert int(expiry["ExpirationInDays"]) == SAM["Parameters"]["AccessLogRetentionDays"]["Default"] > 0
    assert "Prefix" not in expiry
    assert "Filter" not in expiry
    assert "LoggingConfiguration" not in logs


def test_access_logs_off_means_no_log_bucket_and_nothing_pointing_at_one() -> None:
    cfn, resolver = _build({"AccessLogRetentionDays": "0"})
    res = deployed(cfn, resolver)

    assert "AccessLogsBucket" not in res
    assert "AccessLogsBucketPolicy" not in res
    assert "LoggingConfiguration" not in res["UploadsBucket"]["Properties"]
    assert "LoggingConfiguration" not in res["AssetsBucket"]["Properties"]
    assert "Logging" not in res["Distribution"]["Properties"]["DistributionConfig"]


# ---------------------------------------------------------------- alarms


def alarms_on(
    resources: dict[str, dict[str, Any]], resolver: Resolver
) -> dict[tuple[str, str], dict[str, Any]]:
    """(metric, watched resource) -> resolved alarm properties."""
    found = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            props = resolver.resolve(resource["Properties"])
            found[props["MetricName"], str(props["Dimensions"][0]["Value"])] = props
    return found


def test_processor_throttles_and_runs_near_its_timeout_raise_alarms() -> None:
    processor = resolved({"Ref": "ProcessImageFunction"})
    alarms = alarms_on(RES, RESOLVER)
    throttles = alarms["Throttles", processor]
    assert (throttles["Statistic"], throttles["ComparisonOperator"], throttles["Threshold"]) == (
        "Sum",
        "GreaterThanThreshold",
        0,
    )
    duration = alarms["Duration", processor]
    timeout_ms = int(resolved(RES["ProcessImageFunction"]["Properties"]["Timeout"])) * 1000
    assert duration["Statistic"] == "Maximum"
    assert duration["Threshold"] == 0.8 * timeout_ms
    assert duration["ComparisonOperator"] == "GreaterThanThreshold"
    assert ("Errors", processor) in alarms


def test_every_alarm_notifies_the_topic_or_an_output_says_no_one_is_notified() -> None:
    topic = "arn:aws:sns:eu-west-1:111122223333:imgpipe-alarms"
    cfn, resolver = _build({"AlarmTopicArn": topic})
    alarms = alarms_on(cfn["Resources"], resolver)
    assert len(alarms) >= 4
    assert all(a["AlarmActions"] == [topic] for a in alarms.values())
    assert resolver.resolve(cfn["Outputs"]["AlarmNotifications"]["Value"]) == topic

    assert all("AlarmActions" not in a for a in alarms_on(RES, RESOLVER).values())
    assert "notify no one" in resolved(CFN["Outputs"]["AlarmNotifications"]["Value"])


# ---------------------------------------------------------------- erasure and the CDN


def arn_of(logical_id: str) -> str:
    return str(resolved({"Fn::GetAtt": [logical_id, "Arn"]}))


DISTRIBUTION_ARN = f"arn:aws:cloudfront::{ACCOUNT}:distribution/{resolved({'Ref': 'Distribution'})}"


def test_delete_queues_the_invalidation_and_only_the_invalidator_talks_to_cloudfront() -> None:
    queue = arn_of("InvalidationQueue")
    assert allows("DeleteAvatarFunction", "sqs:SendMessage", queue)
    assert not allows("DeleteAvatarFunction", "sqs:SendMessage", arn_of("ProcessingDeadLetterQueue"))
    assert not allows("DeleteAvatarFunction", "cloudfront:CreateInvalidation", DISTRIBUTION_ARN)
    env = resolved(RES["DeleteAvatarFunction"]["Properties"]["Environment"]["Variables"])
    assert env["INVALIDATION_QUEUE_URL"] == resolved({"Ref": "InvalidationQueue"})

    assert allows("InvalidateCdnFunction", "cloudfront:CreateInvalidation", DISTRIBUTION_ARN)
    assert not allows("InvalidateCdnFunction", "cloudfront:CreateInvalidation", f"{DISTRIBUTION_ARN}x")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert allows("InvalidateCdnFunction", action, queue)
        assert not allows("InvalidateCdnFunction", action, arn_of("ProcessingDeadLetterQueue"))
    assert not any(
        allows("InvalidateCdnFunction", a, s3(b, "avatars/x/y"))
        for a in ("s3:GetObject", "s3:DeleteObject")
        for b in (UPLOADS, ASSETS)
    )


def test_the_invalidator_takes_batches_cloudfront_can_take_and_reports_failures_one_by_one() -> None:
    [mapping] = of_type("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["InvalidationQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "InvalidateCdnFunction"}
    # One batch is one invalidation: at most CloudFront's 15 wildcard paths in progress.
    assert props["BatchSize"] == invalidation.MAX_WILDCARD_PATHS == 15
    # Lambda refuses a batch above 10 SQS messages without a batching window.
    assert props["BatchSize"] <= 10 or props["MaximumBatchingWindowInSeconds"] >= 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= props["ScalingConfig"]["MaximumConcurrency"] <= 5


def test_refused_invalidations_wait_minutes_between_tries_then_land_in_a_watched_dead_letter_queue() -> None:
    queue = resolved(RES["InvalidationQueue"]["Properties"])
    timeout = int(resolved(RES["InvalidateCdnFunction"]["Properties"]["Timeout"]))
    visibility = int(queue["VisibilityTimeout"])
    # Lambda asks for 6 x the function timeout; CloudFront needs minutes to complete invalidations.
    assert visibility >= max(6 * timeout, 120)
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == arn_of("InvalidationDeadLetterQueue")
    tries = int(redrive["maxReceiveCount"])
    assert tries * visibility >= 6 * 3600, "gives up on a busy CloudFront in under 6 hours"
    assert int(queue["MessageRetentionPeriod"]) > tries * visibility, "messages would expire, not be parked"
    alarms = alarms_on(RES, RESOLVER)
    dead_letters = resolved({"Fn::GetAtt": ["InvalidationDeadLetterQueue", "QueueName"]})
    assert ("ApproximateNumberOfMessagesVisible", dead_letters) in alarms
    backlog = alarms[
        "ApproximateAgeOfOldestMessage", resolved({"Fn::GetAtt": ["InvalidationQueue", "QueueName"]})
    ]
    assert backlog["Threshold"] <= 3600


@pytest.mark.parametrize(
    "queue", ["ProcessingDeadLetterQueue", "InvalidationQueue", "InvalidationDeadLetterQueue"]
)
def test_queues_are_encrypted_and_refuse_plain_http(queue: str) -> None:
    assert RES[queue]["Properties"]["SqsManagedSseEnabled"] is True
    [policy] = [
        p["Properties"]
        for p in of_type("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    [statement] = resolved(policy["PolicyDocument"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Resource"] == arn_of(queue)
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
