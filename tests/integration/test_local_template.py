"""template.yaml -> the local stack's wiring, through the SAM translator, with no second copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imgpipe_local import template
from imgpipe_local.cfn import Resolver, TemplateError
from tests.conftest import ROOT

LOCAL = {
    "UserPoolId": "us-east-1_Local123",
    "UserPoolClientId": "client123",
    "JwksUrl": "http://127.0.0.1:5100/us-east-1_Local123/.well-known/jwks.json",
    "AllowedOrigins": "http://127.0.0.1:8000,http://localhost:8000",
}
URLS = {
    "api_url": "http://127.0.0.1:3000",
    "cdn_url": "http://127.0.0.1:3100",
    "queue_url_base": "http://moto:5100",
}


@pytest.fixture(scope="module")
def project() -> template.LocalTemplate:
    return template.load(ROOT / "template.yaml", LOCAL, **URLS)


def copy_with(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = (ROOT / "template.yaml").read_text()
    for old, new in replacements:
        assert old in text, f"template.yaml no longer contains {old!r}"
        text = text.replace(old, new)
    (tmp_path / "template.yaml").write_text(text)
    return tmp_path / "template.yaml"


def test_functions_come_with_code_layers_and_resolved_environment(project: template.LocalTemplate) -> None:
    presign = project.functions["PresignUploadFunction"]
    processor = project.functions["ProcessImageFunction"]
    authorizer = project.functions["AuthorizerFunction"]

    assert presign.code_uri == ROOT / "functions" / "presign_upload"
    assert presign.handler == "app.lambda_handler"
    assert presign.layers == (ROOT / "layers" / "shared",)
    assert processor.layers == (ROOT / "layers" / "shared", ROOT / "layers" / "pillow")
    assert presign.environment["UPLOADS_BUCKET"] == "imgpipe-uploads-123456789012-us-east-1"
    # The CloudFront domain of the template points at the local CDN.
    assert presign.environment["ASSETS_BASE_URL"] == "http://127.0.0.1:3100"
    assert presign.environment["MAX_UPLOAD_BYTES"] == "26214400"
    assert authorizer.environment["USER_POOL_ID"] == "us-east-1_Local123"
    assert authorizer.environment["JWKS_URL"] == LOCAL["JwksUrl"]
    assert authorizer.environment["POWERTOOLS_SERVICE_NAME"] == "imgpipe"  # from Globals
    # No distribution locally: the delete function skips the invalidation.
    assert project.functions["DeleteAvatarFunction"].environment["DISTRIBUTION_ID"] == ""


def test_processor_retries_and_dead_letter_queue_come_from_event_invoke_config(
    project: template.LocalTemplate,
) -> None:
    config = project.functions["ProcessImageFunction"].event_invoke

    assert config.maximum_retry_attempts == 2
    assert config.maximum_event_age_seconds == 3600
    assert config.on_failure_queue == project.queues["ProcessingDeadLetterQueue"].name


def test_http_api_routes_authorizer_and_cors(project: template.LocalTemplate) -> None:
    (api,) = project.apis
    routes = {route.route_key: route for route in api.routes}

    assert routes["POST /avatars/key_upload"].function == "PresignUploadFunction"
    assert routes["DELETE /avatars"].function == "DeleteAvatarFunction"
    assert {route.authorizer for route in api.routes} == {"JwtLambdaAuthorizer"}
    authorizer = api.authorizers["JwtLambdaAuthorizer"]
    assert authorizer.function == "AuthorizerFunction"
    assert authorizer.identity_sources == ("$request.header.Authorization",)
    assert authorizer.simple_responses is True
    assert authorizer.payload_version == "2.0"
    assert authorizer.ttl_seconds == 300
    assert api.cors is not None
    assert api.cors.allow_origins == ("http://127.0.0.1:8000", "http://localhost:8000")
    assert "authorization" in api.cors.allow_headers


def test_buckets_keep_versioning_cors_and_the_processor_trigger(project: template.LocalTemplate) -> None:
    uploads = project.buckets["UploadsBucket"]

    assert uploads.versioned is True
    assert uploads.cors_rules[0]["AllowedOrigins"] == ["http://127.0.0.1:8000", "http://localhost:8000"]
    (trigger,) = uploads.triggers
    assert trigger.function == "ProcessImageFunction"
    assert trigger.event == "s3:ObjectCreated:*"
    assert trigger.filter_rules == (("prefix", "avatars/"), ("suffix", "/original"))
    assert project.buckets["AssetsBucket"].triggers == ()


def test_cdn_serves_the_assets_bucket_with_the_response_headers_policy(
    project: template.LocalTemplate,
) -> None:
    cdn = project.cdn

    assert cdn is not None
    assert cdn.bucket == project.buckets["AssetsBucket"].name
    assert cdn.cors is not None
    assert cdn.cors.allow_origins == ("http://127.0.0.1:8000", "http://localhost:8000")
    assert cdn.cors.allow_methods == ("GET", "HEAD")
    assert cdn.headers["X-Frame-Options"] == "DENY"
    assert cdn.headers["X-Content-Type-Options"] == "nosniff"
    assert cdn.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"


def test_outputs_name_the_local_endpoints(project: template.LocalTemplate) -> None:
    assert project.outputs["ApiUrl"] == "http://127.0.0.1:3000"
    assert project.outputs["KeyUploadUrl"] == "http://127.0.0.1:3000/avatars/key_upload"
    assert project.outputs["CdnUrl"] == "http://127.0.0.1:3100"
    assert project.outputs["UploadsBucketName"] == "imgpipe-uploads-123456789012-us-east-1"
    assert project.outputs["ProcessingDeadLetterQueueUrl"] == (
        "http://moto:5100/123456789012/imgpipe-ProcessingDeadLetterQueue"
    )
    assert project.outputs["UserPoolClientId"] == "client123"


# ---------------------------------------------------------------- the local stack follows the template


def test_a_moved_route_moves_locally(tmp_path: Path) -> None:
    path = copy_with(tmp_path, ("Path: /avatars/key_upload", "Path: /v2/uploads"))

    (api,) = template.load(path, LOCAL, **URLS).apis

    assert {route.route_key for route in api.routes} == {"POST /v2/uploads", "DELETE /avatars"}


def test_a_changed_filter_prefix_changes_the_trigger(tmp_path: Path) -> None:
    path = copy_with(tmp_path, ("Value: avatars/\n", "Value: pictures/\n"))

    (trigger,) = template.load(path, LOCAL, **URLS).buckets["UploadsBucket"].triggers

    assert trigger.filter_rules == (("prefix", "pictures/"), ("suffix", "/original"))


def test_cors_changes_reach_the_api_and_the_buckets(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path,
        ("AllowMethods: [POST, DELETE, OPTIONS]", "AllowMethods: [POST, OPTIONS]"),
        ("AllowedMethods: [POST]", "AllowedMethods: [POST, PUT]"),
    )

    loaded = template.load(path, {**LOCAL, "AllowedOrigins": "https://app.example"}, **URLS)

    assert loaded.apis[0].cors is not None
    assert loaded.apis[0].cors.allow_methods == ("POST", "OPTIONS")
    assert loaded.apis[0].cors.allow_origins == ("https://app.example",)
    assert loaded.buckets["UploadsBucket"].cors_rules[0]["AllowedMethods"] == ["POST", "PUT"]
    assert loaded.buckets["UploadsBucket"].cors_rules[0]["AllowedOrigins"] == ["https://app.example"]


def test_a_parameter_default_reaches_the_environment(tmp_path: Path) -> None:
    path = copy_with(tmp_path, ('Default: "jpeg,webp"', 'Default: "jpeg,webp,avif"'))

    loaded = template.load(path, LOCAL, **URLS)

    assert loaded.functions["ProcessImageFunction"].environment["OUTPUT_FORMATS"] == "jpeg,webp,avif"


def test_getatt_api_endpoint_is_the_local_api(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path,
        ("\nOutputs:\n", "\nOutputs:\n  Endpoint:\n    Value: !GetAtt HttpApi.ApiEndpoint\n"),
    )

    assert template.load(path, LOCAL, **URLS).outputs["Endpoint"] == "http://127.0.0.1:3000"


def test_missing_required_parameters_are_named(tmp_path: Path) -> None:
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")

    with pytest.raises(TemplateError, match="UserPoolClientId"):
        template.load(tmp_path / "template.yaml", {})


def test_an_unknown_getatt_attribute_is_a_clear_error(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path,
        ("          RENDITIONS: !Ref Renditions\n", "          RENDITIONS: !GetAtt AssetsBucket.Nope\n"),
    )

    with pytest.raises(TemplateError, match=r"Fn::GetAtt AssetsBucket\.Nope: the local stack has no value"):
        template.load(path, LOCAL, **URLS)


def test_a_ref_to_nothing_in_the_template_is_a_clear_error(tmp_path: Path) -> None:
    path = copy_with(
        tmp_path, ("          RENDITIONS: !Ref Renditions\n", "          RENDITIONS: !Ref Nowhere\n")
    )

    with pytest.raises(TemplateError, match="Ref Nowhere: no such parameter or resource"):
        template.load(path, LOCAL, **URLS)


def test_an_output_without_a_local_value_is_left_out(tmp_path: Path) -> None:
    path = copy_with(tmp_path, ("\nOutputs:\n", "\nOutputs:\n  Odd:\n    Value: !GetAtt AssetsBucket.Nope\n"))

    outputs = template.load(path, LOCAL, **URLS).outputs

    assert "Odd" not in outputs
    assert outputs["ApiUrl"] == "http://127.0.0.1:3000"


# ---------------------------------------------------------------- intrinsics


def resolver(parameters: dict[str, object] | None = None) -> Resolver:
    document = {
        "Parameters": {"Names": {"Type": "CommaDelimitedList"}, "Env": {"Type": "String"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}, "Queue": {"Type": "AWS::SQS::Queue"}},
    }
    values = {"Names": "a,b,c", "Env": "dev", "AWS::StackName": "imgpipe", **(parameters or {})}
    refs = {"Bucket": "my-bucket", "Queue": "http://moto/123456789012/imgpipe-Queue"}

    def get_att(logical_id: str, attribute: str) -> str:
        return f"arn:{logical_id}:{attribute}"

    return Resolver(document, values, ref=refs.__getitem__, get_att=get_att)


def test_sub_join_select_split_and_getatt() -> None:
    r = resolver()

    assert r.resolve({"Fn::Sub": "${AWS::StackName}-${Bucket}-${!Literal}"}) == "imgpipe-my-bucket-${Literal}"
    assert r.resolve({"Fn::Sub": ["${X}/${Bucket.Arn}", {"X": {"Ref": "Env"}}]}) == "dev/arn:Bucket:Arn"
    assert r.resolve({"Fn::Join": ["-", {"Ref": "Names"}]}) == "a-b-c"
    assert r.resolve({"Fn::Select": [1, {"Ref": "Names"}]}) == "b"
    assert r.resolve({"Fn::Split": ["/", "x/y"]}) == ["x", "y"]
    assert r.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "arn:Queue:Arn"
    assert r.resolve({"Ref": "Queue"}) == "http://moto/123456789012/imgpipe-Queue"


def test_conditions_and_no_value() -> None:
    value = {
        "Tags": {"Fn::If": ["IsProd", ["prod"], {"Ref": "AWS::NoValue"}]},
        "List": ["a", {"Fn::If": ["IsProd", "b", {"Ref": "AWS::NoValue"}]}],
    }

    assert resolver().resolve(value) == {"List": ["a"]}
    assert resolver({"Env": "prod"}).resolve(value) == {"Tags": ["prod"], "List": ["a", "b"]}
    assert resolver().resolve({"Fn::Not": [{"Condition": "IsProd"}]}) is True


def test_unsupported_intrinsics_and_unknown_names_fail_clearly() -> None:
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        resolver().resolve({"Fn::ImportValue": "shared-vpc"})
    with pytest.raises(TemplateError, match=r"Fn::GetAtt Elsewhere\.Arn: no such resource"):
        resolver().resolve({"Fn::Sub": "${Elsewhere.Arn}"})
    with pytest.raises(TemplateError, match="unknown condition IsTest"):
        resolver().resolve({"Fn::If": ["IsTest", "a", "b"]})
