// Chat with a run's final model or a checkpoint, side by side with its base model. Each side
// keeps its own conversation (its own replies), and both get the same user messages.
import { el, getJSON } from "/static/util.js";

const params = new URLSearchParams(location.search);
const runSelect = document.getElementById("run");
const checkpointSelect = document.getElementById("checkpoint");
const withBase = document.getElementById("with-base");
const message = document.getElementById("message");
const statusLine = document.getElementById("chat-status");
const sendButton = document.getElementById("send-button");
let conversations = { tuned: [], base: [] };

function show(side) {
  const box = document.getElementById(side);
  box.replaceChildren(...conversations[side].map((m) =>
    el("div", { class: `msg ${m.role}`, "data-role": m.role },
      el("span", { class: "visually-hidden" }, `${m.role}: `), m.content)));
  box.scrollTop = box.scrollHeight;
}

function reset() {
  conversations = { tuned: [], base: [] };
  show("tuned");
  show("base");
}

async function loadRuns() {
  const { runs } = await getJSON("/api/runs");
  runSelect.replaceChildren(...runs.map((r) => el("option", { value: r.id }, `${r.id} (${r.status})`)));
  if (params.get("id")) runSelect.value = params.get("id");
  await loadCheckpoints();
}

async function loadCheckpoints() {
  if (!runSelect.value) return;
  const run = await getJSON(`/api/run?id=${encodeURIComponent(runSelect.value)}`);
  const options = [];
  if (run.has_final) options.push(el("option", { value: "" }, "final model"));
  for (const c of [...run.checkpoints].reverse()) {
    options.push(el("option", { value: c.name }, `checkpoint ${c.name} (step ${c.step})`));
  }
  if (!options.length) options.push(el("option", { value: "", disabled: true }, "no model saved yet"));
  checkpointSelect.replaceChildren(...options);
  const wanted = params.get("checkpoint");
  if (wanted && wanted !== "final") checkpointSelect.value = wanted;
  document.getElementById("base-h").textContent = `Base model: ${run.model ?? "?"}`;
  document.getElementById("tuned-h").textContent = `Run: ${run.name}`;
  reset();
}

async function ask(side, base) {
  const body = {
    id: runSelect.value, checkpoint: checkpointSelect.value || null, base,
    messages: conversations[side],
    temperature: Number(document.getElementById("temperature").value),
    max_tokens: Number(document.getElementById("max-tokens").value),
  };
  try {
    const out = await getJSON("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    conversations[side].push({ role: "assistant", content: out.text });
  } catch (e) {
    conversations[side].push({ role: "assistant", content: `[error] ${e.message}` });
  }
  show(side);
}

document.getElementById("send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = message.value.trim();
  if (!text) return;
  message.value = "";
  sendButton.disabled = true;
  const sides = withBase.checked ? ["tuned", "base"] : ["tuned"];
  for (const side of sides) {
    conversations[side].push({ role: "user", content: text });
    show(side);
  }
  statusLine.textContent = "generating…";
  for (const side of sides) await ask(side, side === "base");
  statusLine.textContent = "";
  sendButton.disabled = false;
  message.focus();
});
message.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) document.getElementById("send").requestSubmit();
});
document.getElementById("clear").addEventListener("click", reset);
runSelect.addEventListener("change", loadCheckpoints);
checkpointSelect.addEventListener("change", reset);
withBase.addEventListener("change", () => {
  document.getElementById("base-panel").hidden = !withBase.checked;
});
loadRuns().catch((e) => { statusLine.textContent = e.message; });
