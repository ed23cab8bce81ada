// The job service's pages, one document: #/jobs (the tenant's jobs), #/jobs/<id> (one job),
// #/new (the new-job form); sign-in first. Each view returns a function that stops its
// polling when the user goes elsewhere.
import { el } from "/ui/static/util.js";
import { apiKey, checkKey, signIn, signOut, whenUnauthorized } from "/ui/api.js";
import { jobsView } from "/ui/jobs.js";
import { jobView } from "/ui/job.js";
import { newJobView } from "/ui/new.js";

const main = document.getElementById("main");
let stop = () => {};
let signInMessage = null;

function signInView() {
  document.title = "Sign in · preftune";
  const input = el("input", { id: "api-key", type: "password", autocomplete: "off",
    spellcheck: "false", required: true, "aria-describedby": "key-hint key-error" });
  const error = el("p", { id: "key-error", class: "error-text", role: "alert" }, signInMessage || "");
  signInMessage = null;
  const button = el("button", { type: "submit", class: "primary" }, "Sign in");
  const form = el("form", { class: "signin panel" },
    el("div", { class: "field" }, el("label", { for: "api-key" }, "API key"), input,
      el("p", { id: "key-hint", class: "hint" },
        "A key of your organization (pt-...). It stays in this tab only, until you sign out or close it.")),
    error, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    const key = input.value.trim();
    const problem = await checkKey(key);
    button.disabled = false;
    if (problem) {
      error.textContent = problem;
      input.focus();
      return;
    }
    signIn(key);
    if (!location.hash || location.hash === "#/signin") location.hash = "#/jobs";
    else route();
  });
  main.replaceChildren(el("h1", {}, "Sign in"), form);
  input.focus();
  return () => {};
}

function showHeader(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  const who = document.getElementById("who");
  who.hidden = !signedIn;
  who.textContent = signedIn ? `key ${apiKey().slice(0, 7)}…` : "";
  for (const link of document.querySelectorAll("#nav a")) {
    const current = location.hash.startsWith(link.getAttribute("href"));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  stop();
  document.getElementById("live").textContent = "";
  const signedIn = Boolean(apiKey());
  showHeader(signedIn);
  if (!signedIn) {
    stop = signInView();
    return;
  }
  const hash = location.hash || "#/jobs";
  const job = hash.match(/^#\/jobs\/([A-Za-z0-9_-]+)$/);
  if (job) stop = jobView(main, job[1]);
  else if (hash === "#/new") stop = newJobView(main);
  else stop = jobsView(main);
}

whenUnauthorized((message) => {
  signOut();
  signInMessage = message;
  route();
});
document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  location.hash = "#/signin";
  route();
});
window.addEventListener("hashchange", route);
route();
