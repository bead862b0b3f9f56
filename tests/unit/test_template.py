"""The security properties of template.yaml, read from what CloudFormation will deploy.

The template is run through the SAM translator (the same translation the local stack uses) with
parameter values shaped as CloudFormation passes them, and intrinsics are resolved to concrete
ARNs, so these tests see the implicit roles, permissions, notification and OpenAPI body SAM
generates — not just the YAML we wrote. Each test fails if someone weakens what it guards.
"""

from __future__ import annotations

import fnmatch
import re
from graphlib import CycleError, TopologicalSorter
from typing import Any

import pytest

from imgpipe import jwt_verify, keys
from imgpipe_local.template import Resolver, load_yaml, parameter_values, translate
from tests.conftest import ROOT

STACK = "imgpipe-test"
ACCOUNT = "111122223333"
ORIGINS = ["https://app.example.com", "https://admin.example.com"]
UPLOADS = f"{STACK}-uploads-{ACCOUNT}"
ASSETS = f"{STACK}-assets-{ACCOUNT}"
# CommaDelimitedList parameters reach the transform as lists when CloudFormation deploys.
PARAMETERS = {
    "AWS::StackName": STACK,
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": "eu-west-1",
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
    return cfn, Resolver(cfn, values)


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
    env = resolved(RES["ProcessImageFunction"]["Properties"]["Environment"]["Variables"])
    assert (env["UPLOADS_BUCKET"], env["ASSETS_BUCKET"]) == (UPLOADS, ASSETS)


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
    for bucket, key in [(UPLOADS, UPLOAD_KEY)] + [(ASSETS, k) for k in ASSET_KEYS]:
        assert allows("DeleteAvatarFunction", "s3:DeleteObjectVersion", s3(bucket, key))
        assert not allows("DeleteAvatarFunction", "s3:PutObject", s3(bucket, key))
    assert not allows("DeleteAvatarFunction", "s3:DeleteObject", s3(UPLOADS, "elsewhere/x"))


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


@pytest.mark.parametrize(("bucket", "name"), [("UploadsBucket", UPLOADS), ("AssetsBucket", ASSETS)])
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
    "DeleteAvatarFunction": {"UPLOADS_BUCKET", "ASSETS_BUCKET", "DISTRIBUTION_ID"},
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
    assert props.get("TracingConfig") == (None if function == "AuthorizerFunction" else {"Mode": "Active"})
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
