// The /v1 API as the signed-in tenant: its key lives in sessionStorage (this tab only) and
// goes with every call as a Bearer token. A call answered 401 signs the tab out.
import { getJSON } from "/ui/static/util.js";

const KEY = "preftune-api-key";

export function apiKey() { return sessionStorage.getItem(KEY); }
export function signIn(key) { sessionStorage.setItem(KEY, key); }
export function signOut() { sessionStorage.removeItem(KEY); }

let onUnauthorized = () => {};
/** What to do when the key stops working (revoked meanwhile): the app shows sign-in. */
export function whenUnauthorized(fn) { onUnauthorized = fn; }

function headers(extra = {}) {
  return { Authorization: `Bearer ${apiKey()}`, ...extra };
}

/** ``api("/v1/...", {method, json, form})``: the answer's JSON; throws the server's error
 * (message, status, param). */
export async function api(path, { method = "GET", json, form } = {}) {
  const options = { method, headers: headers() };
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (form !== undefined) {
    options.body = form;
  }
  try {
    return await getJSON(path, options);
  } catch (e) {
    if (e.status === 401) onUnauthorized(e.message);
    throw e;
  }
}

/** Check ``key`` without keeping it: null when it works, else the server's message. */
export async function checkKey(key) {
  try {
    await getJSON("/v1/fine_tuning/jobs?limit=1", { headers: { Authorization: `Bearer ${key}` } });
    return null;
  } catch (e) {
    return e.message;
  }
}

/** Download what ``path`` answers (a model's .tar.gz) as ``filename``: fetched with the key,
 * since a plain link cannot send it, then saved from a blob. */
export async function download(path, filename) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
