"""The demo page in a real browser (Debian chromium through Playwright) against the stack."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from imgpipe_local import samples
from tests.conftest import ROOT
from tests.e2e.conftest import E2EStack
from tests.seaweedfs_support import UploadsOnSeaweed

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
PROCESSING_TIMEOUT_MS = 60_000
# The machine running the suite may be busy; a slow answer is not what these tests judge.
expect.set_options(timeout=20_000)
# The page announces each avatar state (empty, placeholder, loaded) as a DOM event; keep them in order.
RECORD_STATES = """
window.__avatarStates = [];
document.addEventListener("imgpipe:avatar", (event) => window.__avatarStates.push(event.detail));
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, stack: E2EStack) -> Iterator[Page]:
    if stack.web_url is None:
        pytest.skip("no web page to load: set IMGPIPE_E2E_WEB_URL to where the page is served")
    context = browser.new_context(viewport={"width": 720, "height": 900})
    page = context.new_page()
    page.add_init_script(RECORD_STATES)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def sign_in(page: Page, stack: E2EStack) -> None:
    page.goto(f"{stack.web_url}/")
    # The local stack's config.json prefills the demo user; a deployed one may not.
    page.get_by_label("Username").fill(stack.username)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your avatar")).to_be_visible()
    # Settled: the current avatar (if any) fetched and painted, the file input usable.
    expect(page.locator("#file")).to_be_enabled()
    expect(page.locator("#avatar")).not_to_have_attribute("data-state", "placeholder")


def test_the_page_signs_in_uploads_and_shows_the_avatar(page: Page, stack: E2EStack, tmp_path: Path) -> None:
    # Given a signed-in user on the page
    sign_in(page, stack)
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(samples.photo_jpeg(1800, 2400, orientation=6))
    page.evaluate("window.__avatarStates = []")

    # When they choose a photo
    page.locator("#file").set_input_files(photo)

    # Then the avatar renders from the CDN, the placeholder having painted first
    expect(page.locator("#avatar")).to_have_attribute("data-state", "loaded", timeout=PROCESSING_TIMEOUT_MS)
    expect(page.locator("#message")).to_have_text("Your new avatar is live.")
    img = page.locator("#avatar-img")
    assert img.evaluate("img => img.complete && img.naturalWidth") > 0
    # chromium takes the WebP source of the <picture>, from the immutable versioned URL
    current = img.evaluate("img => img.currentSrc")
    assert current.startswith(f"{stack.target.cdn_url}/avatars/")
    assert "/v/" in current
    # The <source> says the avatar is shown 256 px wide, as the <img> does: not the 512 px file.
    assert current.endswith("/256x256.webp")
    states = page.evaluate("window.__avatarStates")
    assert states[:2] == ["placeholder", "loaded"], states
    assert (
        page.locator("#avatar picture")
        .evaluate("el => el.style.backgroundImage")
        .startswith('url("data:image/')
    )

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "avatar.png", full_page=True)

    # And signing in again later shows it straight away
    sign_in(page, stack)
    expect(page.locator("#avatar")).to_have_attribute("data-state", "loaded")
    assert page.locator("#avatar-img").evaluate("img => img.currentSrc") == current

    # And "Delete my avatar" (after the confirmation) takes it away
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete my avatar").click()
    expect(page.locator("#message")).to_have_text("Your avatar and uploads were deleted.")
    expect(page.locator("#avatar")).to_have_attribute("data-state", "empty")


def test_a_text_file_named_png_is_shown_as_rejected(page: Page, stack: E2EStack, tmp_path: Path) -> None:
    # Given a signed-in user
    sign_in(page, stack)
    fake = tmp_path / "cat.png"
    fake.write_bytes(samples.not_an_image())

    # When they pick a text file that only has an image's name (the browser calls it image/png)
    page.locator("#file").set_input_files(fake)

    # Then the processor's rejection reaches them as a clear message
    message = page.get_by_role("alert")
    expect(message).to_contain_text("Your image was rejected:", timeout=PROCESSING_TIMEOUT_MS)
    assert page.locator("#avatar").get_attribute("aria-busy") == "false"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "rejected.png", full_page=True)


def test_a_file_that_is_not_an_image_is_refused_before_uploading(
    page: Page, stack: E2EStack, tmp_path: Path
) -> None:
    sign_in(page, stack)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    requests_made: list[str] = []
    page.on("request", lambda request: requests_made.append(request.url))

    page.locator("#file").set_input_files(notes)

    expect(page.get_by_role("alert")).to_contain_text("is not an image")
    assert not any("/avatars/key_upload" in url for url in requests_made)


def test_an_svg_is_refused_before_the_api_is_asked(page: Page, stack: E2EStack, tmp_path: Path) -> None:
    sign_in(page, stack)
    logo = tmp_path / "logo.svg"
    logo.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'
    )
    requests_made: list[str] = []
    page.on("request", lambda request: requests_made.append(request.url))

    page.locator("#file").set_input_files(logo)

    expect(page.get_by_role("alert")).to_have_text(
        "“logo.svg” is a kind of image this service does not take (image/svg+xml)."
        " Choose a JPEG, PNG, WebP, GIF or AVIF file."
    )
    assert not any("/avatars/key_upload" in url for url in requests_made)


def test_choosing_a_new_avatar_looks_disabled_while_an_upload_runs(
    page: Page, stack: E2EStack, tmp_path: Path
) -> None:
    sign_in(page, stack)
    chooser = page.locator('label[for="file"]')
    enabled_look = chooser.evaluate("el => getComputedStyle(el).opacity")
    held: list[Route] = []
    page.route("**/*", lambda route: held.append(route) if is_s3_upload(route.request) else route.fallback())

    # While the upload to S3 is held in flight
    choose_photo(page, tmp_path)
    expect(page.locator("#progress-row")).to_be_visible()
    expect(page.locator("#file")).to_be_disabled()

    # Then the button that opens the file chooser looks disabled, as the other buttons do
    expect(chooser).to_have_css("opacity", "0.5")
    expect(chooser).to_have_css("cursor", "progress")
    assert page.locator("#delete-button").evaluate("el => getComputedStyle(el).opacity") == "0.5"

    # And once the upload is over it looks enabled again
    held[0].abort()
    expect(page.get_by_role("alert")).to_contain_text("The upload failed")
    expect(chooser).to_have_css("opacity", enabled_look)


def test_a_wrong_password_is_reported(page: Page, stack: E2EStack) -> None:
    page.goto(f"{stack.web_url}/")
    page.get_by_label("Username").fill(stack.username)
    page.get_by_label("Password").fill("wrong-Passw0rd!")
    page.get_by_role("button", name="Sign in").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Sign-in refused")
    expect(page.get_by_role("heading", name="Your avatar")).to_be_hidden()
    # Cognito's own message ends with a full stop; the page adds none after it.
    assert alert.inner_text().endswith(".")
    assert not alert.inner_text().endswith("..")


def is_s3_upload(request: Request) -> bool:
    return request.method == "POST" and request.headers.get("content-type", "").startswith(
        "multipart/form-data"
    )


def choose_photo(page: Page, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(samples.photo_jpeg(400, 300, orientation=1))
    page.locator("#file").set_input_files(photo)


def test_a_file_over_the_limit_is_refused_before_uploading(
    page: Page, stack: E2EStack, tmp_path: Path
) -> None:
    sign_in(page, stack)
    uploads: list[str] = []
    page.on("request", lambda request: uploads.append(request.url) if is_s3_upload(request) else None)
    big = tmp_path / "huge.jpg"
    with big.open("wb") as out:  # larger than MaxUploadBytes may ever be set (50 MiB)
        out.truncate(50 * 1024 * 1024 + 1)

    page.locator("#file").set_input_files(big)

    expect(page.get_by_role("alert")).to_contain_text("That file is too big")
    assert uploads == []


def test_s3_refusing_an_oversized_body_is_reported_as_too_big(
    page: Page, stack: E2EStack, tmp_path: Path
) -> None:
    # moto does not enforce content-length-range, so S3's answer to an oversized POST is played back here.
    sign_in(page, stack)
    page.route(
        "**/*",
        lambda route: (
            route.fulfill(status=400, content_type="application/xml", body=ENTITY_TOO_LARGE)
            if is_s3_upload(route.request)
            else route.fallback()
        ),
    )

    choose_photo(page, tmp_path)

    expect(page.get_by_role("alert")).to_contain_text("That file is too big: the limit is")


def test_a_denied_request_is_reported(page: Page, stack: E2EStack, tmp_path: Path) -> None:
    # The API itself answers: only the token on the way is swapped for a forged one.
    sign_in(page, stack)
    page.route(
        f"{stack.target.api_url}/avatars/key_upload",
        lambda route: (
            route.continue_(headers={**route.request.headers, "authorization": "Bearer forged.token.x"})
            if route.request.method == "POST"
            else route.fallback()
        ),
    )

    choose_photo(page, tmp_path)

    expect(page.get_by_role("alert")).to_contain_text("Access denied (403)")


def test_a_network_failure_during_the_upload_is_reported(page: Page, stack: E2EStack, tmp_path: Path) -> None:
    sign_in(page, stack)
    page.route("**/*", lambda route: route.abort() if is_s3_upload(route.request) else route.fallback())

    choose_photo(page, tmp_path)

    expect(page.get_by_role("alert")).to_contain_text("The upload failed")
    expect(page.locator("#file")).to_be_enabled()


# The page's own upload function (web/app.js postToS3), called as the page calls it after asking
# the API; its outcome is "stored" or the message it would show.
POST_WITH_THE_PAGE = """
async ({upload, bytes, type}) => {
  const file = new File([new Uint8Array(bytes)], "me.jpg", {type});
  try {
    await postToS3(upload, file, () => {});
    return "stored";
  } catch (error) {
    return error.message;
  }
}
"""


def test_the_pages_upload_goes_into_an_s3_that_enforces_the_policy(
    page: Page, stack: E2EStack, seaweed_uploads: UploadsOnSeaweed
) -> None:
    # Given the uploads bucket on SeaweedFS with the template's CORS rules for the page's origin
    seaweed_uploads.provision(origins=(stack.web_url or "",))
    page.goto(f"{stack.web_url}/")
    photo = samples.photo_jpeg(320, 240, orientation=1)
    sub = f"browser-{uuid.uuid4().hex[:8]}"
    upload = seaweed_uploads.presign(sub, "image/jpeg")
    assert len(photo) <= upload["maxBytes"]

    # When the page posts a photo with its own code, cross-origin, straight to S3
    outcome = page.evaluate(
        POST_WITH_THE_PAGE, {"upload": upload, "bytes": list(photo), "type": "image/jpeg"}
    )

    # Then S3 stored it as signed
    assert outcome == "stored"
    head = seaweed_uploads.server.client().head_object(Bucket=seaweed_uploads.bucket.name, Key=upload["key"])
    assert (head["ContentType"], head["Metadata"]) == ("image/jpeg", {"upload-id": upload["uploadId"]})

    # And one byte over the limit is S3's own EntityTooLarge, which the page puts in words
    upload = seaweed_uploads.presign(sub, "image/jpeg")
    too_big = photo + b"\0" * (upload["maxBytes"] + 1 - len(photo))
    outcome = page.evaluate(
        POST_WITH_THE_PAGE, {"upload": upload, "bytes": list(too_big), "type": "image/jpeg"}
    )
    assert outcome == "That file is too big: the limit is 64 KB."
    assert len(seaweed_uploads.stored(upload["key"])) == 1  # still only the first photo


ENTITY_TOO_LARGE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>EntityTooLarge</Code>'
    "<Message>Your proposed upload exceeds the maximum allowed size</Message>"
    "<ProposedSize>10485761</ProposedSize><MaxSizeAllowed>10485760</MaxSizeAllowed></Error>"
)


def test_the_page_takes_the_stack_outputs_as_its_config(page: Page, stack: E2EStack) -> None:
    # The CloudFormation outputs as they are (what web/README.md pipes into config.json).
    outputs = {key: stack.outputs[key] for key in ("ApiUrl", "CdnUrl", "UserPoolId", "UserPoolClientId")}
    outputs["Region"] = stack.outputs.get("Region") or stack.outputs["UserPoolId"].split("_", 1)[0]
    if stack.local is not None:
        outputs["cognitoEndpoint"] = stack.target.cognito_url  # moto stands in for cognito-idp.<region>
    page.route("**/config.json", lambda route: route.fulfill(json=outputs))

    sign_in(page, stack)

    expect(page.locator("#config-source")).to_have_text(
        f"API {stack.target.api_url}, CDN {stack.target.cdn_url}"
    )


def test_without_a_config_the_page_says_so_and_cannot_sign_in(page: Page, stack: E2EStack) -> None:
    page.route("**/config.json", lambda route: route.fulfill(status=404, body="Not Found"))

    page.goto(f"{stack.web_url}/")

    expect(page.get_by_role("alert")).to_contain_text("This page is not configured: config.json: HTTP 404")
    expect(page.get_by_role("button", name="Sign in")).to_be_disabled()
