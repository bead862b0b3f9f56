// imgpipe demo page: sign in with Cognito, upload through a presigned POST, wait for the
// processor's manifest, show the avatar from the CDN. No framework, no build step.
"use strict";

const POLL_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 15_000;
const UPLOAD_TIMEOUT_MS = 120_000;

// ------------------------------------------------------------------ config
// The one place that knows config.json's shape. The local stack writes it; for a deployed
// stack, write one from the CloudFormation outputs (ApiUrl, CdnUrl, UserPoolId,
// UserPoolClientId) — the Cognito endpoint then follows from the region.
async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const raw = await response.json();
  const userPoolId = raw.userPoolId || raw.UserPoolId || "";
  const region = raw.region || raw.Region || userPoolId.split("_")[0];
  const config = {
    apiUrl: trimSlash(raw.apiUrl || raw.ApiUrl),
    cdnUrl: trimSlash(raw.cdnUrl || raw.CdnUrl),
    cognitoEndpoint: raw.cognitoEndpoint || `https://cognito-idp.${region}.amazonaws.com/`,
    userPoolId,
    clientId: raw.clientId || raw.UserPoolClientId,
    region,
    demoUser: raw.demoUser || null,
  };
  for (const key of ["apiUrl", "cdnUrl", "clientId", "region"]) {
    if (!config[key]) throw new Error(`config.json has no ${key}`);
  }
  return config;
}

function trimSlash(url) {
  return (url || "").replace(/\/+$/, "");
}

// ------------------------------------------------------------------ errors
// Every failure becomes a UserError whose message is fit to show as is.
class UserError extends Error {}

async function fetchWithTimeout(url, options, what) {
  let response;
  try {
    response = await fetch(url, { ...options, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (error) {
    if (error.name === "TimeoutError") throw new UserError(`${what} timed out. Check your connection and try again.`);
    throw new UserError(`${what} failed: the network request did not complete (${error.message}).`);
  }
  return response;
}

// One full stop at the end, whether or not the service's own message brought one.
function sentence(text) {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.message || body.error || body.__type || JSON.stringify(body);
  } catch {
    return response.statusText;
  }
}

// ------------------------------------------------------------------ Cognito
async function signIn(config, username, password) {
  const response = await fetchWithTimeout(config.cognitoEndpoint, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
    },
    body: JSON.stringify({
      AuthFlow: "USER_PASSWORD_AUTH",
      ClientId: config.clientId,
      AuthParameters: { USERNAME: username, PASSWORD: password },
    }),
  }, "Sign-in");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new UserError(sentence(`Sign-in refused: ${body.message || body.__type || response.status}`));
  }
  if (!body.AuthenticationResult) {
    throw new UserError(`Sign-in needs a further step (${body.ChallengeName || "unknown challenge"}), which this demo does not support.`);
  }
  return body.AuthenticationResult;
}

// Display only: the API verifies the token itself and never trusts this decoding.
function tokenClaims(token) {
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload));
}

// ------------------------------------------------------------------ API
async function callApi(config, token, method, path, body) {
  const response = await fetchWithTimeout(`${config.apiUrl}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  }, `${method} ${path}`);
  if (response.status === 401 || response.status === 403) {
    throw new UserError(`Access denied (${response.status}): the API did not accept your sign-in. Sign in again.`);
  }
  if (!response.ok) {
    throw new UserError(`${method} ${path} failed (${response.status}): ${await errorText(response)}`);
  }
  return response.status === 204 ? null : response.json();
}

// ------------------------------------------------------------------ upload
// XMLHttpRequest rather than fetch: only XHR reports upload progress.
function postToS3(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
    form.append("file", file); // S3 ignores every field after the file
    const xhr = new XMLHttpRequest();
    xhr.open("POST", upload.url);
    xhr.timeout = UPLOAD_TIMEOUT_MS;
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      const code = /<Code>([^<]+)<\/Code>/.exec(xhr.responseText || "")?.[1];
      if (code === "EntityTooLarge") {
        return reject(new UserError(`That file is too big: the limit is ${formatBytes(upload.maxBytes)}.`));
      }
      if (code === "AccessDenied" && /expired/i.test(xhr.responseText)) {
        return reject(new UserError("The upload link expired. Please try again."));
      }
      reject(new UserError(`The storage service refused the upload (${xhr.status}${code ? ` ${code}` : ""}).`));
    };
    xhr.onerror = () => reject(new UserError("The upload failed: the network request did not complete."));
    xhr.ontimeout = () => reject(new UserError("The upload timed out. Check your connection and try again."));
    xhr.send(form);
  });
}

// ------------------------------------------------------------------ manifest
async function fetchManifest(url) {
  const response = await fetchWithTimeout(url, { cache: "no-store" }, "Checking the avatar");
  // Before the first upload the CDN answers 404 (or 403 where the bucket hides missing keys).
  if (response.status === 404 || response.status === 403) return null;
  if (!response.ok) throw new UserError(`Checking the avatar failed (${response.status}).`);
  return response.json();
}

async function waitForUpload(manifestUrl, uploadId) {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  let delay = 250;
  while (Date.now() < deadline) {
    const manifest = await fetchManifest(manifestUrl);
    if (manifest?.latest?.uploadId === uploadId) return manifest;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 1.5, 2000);
  }
  throw new UserError("Processing is taking longer than expected. Reload the page in a minute to see your avatar.");
}

// ------------------------------------------------------------------ page
const $ = (id) => document.getElementById(id);
const state = { config: null, token: null, manifestUrl: null };

function show(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  // An alert is announced at once; progress notes wait politely.
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.hidden = !text;
}

function setAvatarState(value) {
  $("avatar").dataset.state = value;
  document.dispatchEvent(new CustomEvent("imgpipe:avatar", { detail: value }));
}

function formatBytes(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

function setBusy(busy) {
  $("avatar").setAttribute("aria-busy", String(busy));
  $("file").disabled = busy;
  $("delete-button").disabled = busy;
}

function setProgress(fraction, label) {
  $("progress-row").hidden = fraction === null;
  if (fraction !== null) $("progress").value = Math.round(fraction * 100);
  if (label) $("progress-label").textContent = label;
}

function clearAvatar(caption = "No avatar yet.") {
  const img = $("avatar-img");
  img.hidden = true;
  img.removeAttribute("src");
  img.removeAttribute("srcset");
  $("avatar-webp").removeAttribute("srcset");
  $("avatar").querySelector("picture").style.backgroundImage = "";
  $("avatar-caption").textContent = caption;
  setAvatarState("empty");
}

function renditionSrcset(renditions, format) {
  return renditions
    .filter((r) => r.format === format)
    .map((r) => `${state.config.cdnUrl}/${r.url} ${r.width}w`)
    .join(", ");
}

// The tiny placeholder paints at once; the real image (immutable versioned URLs) replaces it.
function paintAvatar(avatar) {
  const img = $("avatar-img");
  $("avatar").querySelector("picture").style.backgroundImage = `url("${avatar.placeholder}")`;
  setAvatarState("placeholder");
  const jpegs = avatar.renditions.filter((r) => r.format === "jpeg");
  const largest = jpegs.reduce((a, b) => (b.width > a.width ? b : a), jpegs[0]);
  img.onload = () => {
    setAvatarState("loaded");
    $("avatar-caption").textContent =
      `${avatar.source.format} ${avatar.source.width}×${avatar.source.height} → ` +
      `${avatar.renditions.length} renditions (version ${avatar.version.slice(0, 8)}).`;
  };
  img.onerror = () => show("The avatar could not be loaded from the CDN.", "error");
  const webp = renditionSrcset(avatar.renditions, "webp");
  if (webp) $("avatar-webp").srcset = webp;
  else $("avatar-webp").removeAttribute("srcset");
  img.srcset = renditionSrcset(avatar.renditions, "jpeg");
  img.src = `${state.config.cdnUrl}/${largest.url}`;
  img.alt = "Your avatar";
  img.hidden = false;
}

async function showCurrentAvatar() {
  if (!state.manifestUrl) return;
  const manifest = await fetchManifest(state.manifestUrl);
  if (manifest?.avatar) paintAvatar(manifest.avatar);
  else clearAvatar();
}

async function onSignIn(event) {
  event.preventDefault();
  const button = $("signin-button");
  button.disabled = true;
  show("Signing in…");
  try {
    const result = await signIn(state.config, $("username").value.trim(), $("password").value);
    state.token = result.AccessToken;
    const claims = tokenClaims(state.token);
    // Cognito subs are UUIDs, which the key scheme uses as they are (imgpipe.keys.user_key);
    // knowing it lets the page show the current avatar before any upload.
    state.manifestUrl = `${state.config.cdnUrl}/avatars/${encodeURIComponent(claims.sub)}/avatar.json`;
    $("who").textContent = claims.username || $("username").value;
    $("signin").hidden = true;
    $("profile").hidden = false;
    $("profile-title").focus();
    show("");
  } catch (error) {
    show(error instanceof UserError ? error.message : `Sign-in failed: ${error.message}`, "error");
    return;
  } finally {
    button.disabled = false;
  }
  // Busy until the current avatar is known, so a new upload cannot race the old one's painting.
  setBusy(true);
  try {
    await showCurrentAvatar();
  } catch (error) {
    show(error instanceof UserError ? error.message : `Could not show your avatar: ${error.message}`, "error");
  } finally {
    setBusy(false);
  }
}

function onSignOut() {
  state.token = null;
  state.manifestUrl = null;
  clearAvatar();
  $("profile").hidden = true;
  $("signin").hidden = false;
  $("username").focus();
  show("Signed out.");
}

async function onFileChosen() {
  const input = $("file");
  const file = input.files[0];
  input.value = ""; // choosing the same file again fires change again
  if (!file) return;
  // The types the API accepts are the file input's `accept` list; refuse others before asking it.
  const accepted = input.accept.split(",");
  if (!accepted.includes(file.type)) {
    const what = file.type.startsWith("image/")
      ? `is a kind of image this service does not take (${file.type})`
      : `is not an image (${file.type || "unknown type"})`;
    show(`“${file.name}” ${what}. Choose a JPEG, PNG, WebP, GIF or AVIF file.`, "error");
    return;
  }
  setBusy(true);
  try {
    show("Preparing the upload…");
    const upload = await callApi(state.config, state.token, "POST", "/avatars/key_upload", { contentType: file.type });
    if (file.size > upload.maxBytes) {
      throw new UserError(`That file is too big (${formatBytes(file.size)}): the limit is ${formatBytes(upload.maxBytes)}.`);
    }
    state.manifestUrl = upload.manifestUrl;
    show(`Uploading ${file.name}…`);
    setProgress(0, "Uploading");
    await postToS3(upload, file, (fraction) => setProgress(fraction));
    setProgress(1, "Processing");
    show("Uploaded. Making your avatar…");
    const manifest = await waitForUpload(upload.manifestUrl, upload.uploadId);
    if (manifest.latest.state === "rejected") {
      throw new UserError(`Your image was rejected: ${manifest.latest.message}`);
    }
    paintAvatar(manifest.avatar);
    show("Your new avatar is live.", "success");
  } catch (error) {
    show(error instanceof UserError ? error.message : `Something went wrong: ${error.message}`, "error");
  } finally {
    setProgress(null);
    setBusy(false);
  }
}

async function onDelete() {
  if (!window.confirm("Delete your avatar and every uploaded original?")) return;
  setBusy(true);
  try {
    show("Deleting…");
    await callApi(state.config, state.token, "DELETE", "/avatars");
    clearAvatar("Avatar deleted.");
    show("Your avatar and uploads were deleted.", "success");
  } catch (error) {
    show(error instanceof UserError ? error.message : `Something went wrong: ${error.message}`, "error");
  } finally {
    setBusy(false);
  }
}

async function start() {
  $("signin-form").addEventListener("submit", onSignIn);
  $("signout-button").addEventListener("click", onSignOut);
  $("file").addEventListener("change", onFileChosen);
  $("delete-button").addEventListener("click", onDelete);
  try {
    state.config = await loadConfig();
  } catch (error) {
    $("config-source").textContent = "missing";
    show(sentence(`This page is not configured: ${error.message}`), "error");
    return;
  }
  $("config-source").textContent = `API ${state.config.apiUrl}, CDN ${state.config.cdnUrl}`;
  $("signin-button").disabled = false;
  if (state.config.demoUser) {
    $("username").value = state.config.demoUser.username;
    $("password").value = state.config.demoUser.password;
  }
}

start();
