// #/new: the new-job form. Upload (or pick) a training file and see its validation report,
// choose model, method, preset and hyperparameters (defaults and ranges from
// /v1/fine_tuning/options, this server's limits included), see the dry-run estimate, submit.
// An error the API names a field of (``param``) is shown under that field.
import { el, fmt } from "/ui/static/util.js";
import { api } from "/ui/api.js";

// Request fields the API may name that set one input here.
const PARAM_INPUT = { n_epochs: "epochs", learning_rate_multiplier: "learning_rate", type: "method" };

function inputId(name) { return `hp-${name}`; }

/** A form field for an option of /v1/fine_tuning/options: number, checkbox or select. */
function optionField(option) {
  const id = inputId(option.name);
  const described = [`hint-${option.name}`, `err-${option.name}`].join(" ");
  let input;
  if (option.type === "boolean") {
    input = el("input", { id, type: "checkbox", "data-name": option.name, "data-type": option.type,
      "aria-describedby": described });
  } else if (option.choices) {
    input = el("select", { id, "data-name": option.name, "data-type": "string", "aria-describedby": described },
      option.nullable ? el("option", { value: "" }, "unset") : "",
      option.choices.map((c) => el("option", { value: c }, c)));
  } else {
    const integer = option.type === "integer";
    input = el("input", { id, type: "number", inputmode: integer ? "numeric" : "decimal",
      step: integer ? "1" : "any", "data-name": option.name, "data-type": option.type,
      min: option.minimum ?? null, max: option.maximum ?? null,
      placeholder: option.nullable ? "unset" : null, "aria-describedby": described });
  }
  setValue(input, option.default);
  const range = [];
  const show = (v) => (option.type === "integer" ? Number(v).toLocaleString("en") : fmt(v));
  if (option.minimum !== null) range.push(`${option.exclusive_minimum ? ">" : "≥"} ${show(option.minimum)}`);
  if (option.maximum !== null) range.push(`${option.exclusive_maximum ? "<" : "≤"} ${show(option.maximum)}`);
  const hint = [option.description, range.length ? `(${range.join(", ")}${option.limit ? `; this server's ${option.limit}` : ""})` : ""]
    .filter(Boolean).join(" ");
  const label = option.type === "boolean"
    ? el("label", { for: id }, input, ` ${option.name}`)
    : el("label", { for: id }, option.name);
  return el("div", { class: "field" }, label, option.type === "boolean" ? "" : input,
    el("div", { class: "hint", id: `hint-${option.name}` }, hint),
    el("div", { class: "error", id: `err-${option.name}`, role: "alert" }));
}

function setValue(input, value) {
  if (input.type === "checkbox") input.checked = Boolean(value);
  else input.value = value === null || value === undefined ? "" : String(value);
}

/** The input's value as the API takes it, or undefined when left empty. */
function valueOf(input) {
  if (input.type === "checkbox") return input.checked;
  if (input.value === "") return undefined;
  if (input.dataset.type === "integer") return Number.parseInt(input.value, 10);
  if (input.dataset.type === "number") return Number(input.value);
  return input.value;
}

function table(headers, rows, attrs = {}) {
  return el("div", { class: "table-box" }, el("table", attrs,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", c.wrap ? { class: "wrap" } : {}, c.text ?? c)))))));
}

/** A file's validation report: verdict, counts, lengths, and every problem located. */
function renderReport(box, report, which) {
  const problems = report.problems.map((p) => [
    p.record ?? "—", p.line ?? "—", p.field ?? "—", { text: p.message, wrap: true }]);
  const counted = report.kind === "unpaired" ? `${report.examples} examples` : `${report.pairs} pairs`;
  box.replaceChildren(
    el("p", { class: `notice ${report.valid ? "ok" : "bad"}`, id: `${which}-verdict` },
      el("strong", {}, report.valid ? "Valid: " : `${report.problem_count} problem${report.problem_count === 1 ? "" : "s"}: `),
      `${report.filename} · ${report.format ?? "unknown format"} · ${report.records} records · ${counted}`,
      report.problem_count > report.problems_shown ? ` (the first ${report.problems_shown} are listed)` : ""),
    problems.length ? table(["record", "line", "field", "message"], problems, { id: `${which}-problems` }) : "",
    report.warnings.length ? el("details", {}, el("summary", {}, `${report.warnings.length} warnings (duplicate or identical pairs)`),
      el("ul", {}, report.warnings.map((w) => el("li", {}, w.text)))) : "",
    Object.keys(report.chars || {}).length ? el("details", {}, el("summary", {}, "Lengths in characters"),
      table(["field", "min", "mean", "median", "p95", "max"], Object.entries(report.chars)
        .map(([name, s]) => [name, fmt(s.min), fmt(s.mean), fmt(s.median), fmt(s.p95), fmt(s.max)]))) : "");
}

function count(n) { return Number(n).toLocaleString("en"); }

function renderEstimate(box, estimate) {
  const { plan } = estimate;
  const train = plan.data.train || {};
  const memory = plan.memory_estimate_mb;
  const model = plan.model;
  const share = model.parameters ? (100 * model.trainable_parameters / model.parameters) : 0;
  const perStep = Object.entries(plan.steps).find(([k]) => k.endsWith("_per_step"));
  box.replaceChildren(
    estimate.within_limits ? "" : el("p", { class: "notice bad", role: "alert" },
      el("strong", {}, "Over this server's limits: "), estimate.limit_error.message),
    el("dl", { class: "kv", id: "estimate-plan" },
      el("dt", {}, "objective"), el("dd", {}, `${plan.objective.algo} (${plan.objective.data} data${plan.objective.needs_reference ? ", with a reference model" : ""})`),
      el("dt", {}, "training data"), el("dd", {}, train.pairs !== undefined
        ? `${train.pairs} pairs; ${train.truncated_prompts} prompts and ${train.truncated_responses} responses truncated; ${train.dropped} dropped`
        : `${train.examples} examples (${train.desirable} desirable, ${train.undesirable} undesirable)`),
      el("dt", {}, "longest sequence"), el("dd", {}, `${plan.data.longest_sequence_tokens} tokens`),
      el("dt", {}, "optimizer steps"), el("dd", { id: "estimate-steps" },
        `${plan.steps.total} (${plan.steps.per_epoch} per epoch${perStep ? `, ${perStep[1]} ${perStep[0].replace("_per_step", "")} per step` : ""})`),
      el("dt", {}, "model"), el("dd", {}, `${model.architecture}: ${count(model.parameters)} parameters, ${count(model.trainable_parameters)} trained (${fmt(share)}%), ${model.layers} layers, ${model.dtype}`),
      el("dt", {}, "memory estimate"), el("dd", {}, `${fmt(memory.total)} MB: weights ${fmt(memory.weights)}, gradients and optimizer ${fmt(memory.gradients_and_optimizer)}, activations ${fmt(memory.activations)}${memory.reference_copy ? `, reference copy ${fmt(memory.reference_copy)}` : ""}`)));
}

export function newJobView(main) {
  document.title = "New job · preftune";
  main.replaceChildren(el("h1", {}, "New job"), el("p", { class: "muted" }, "Loading the options…"));
  let stopped = false;
  (async () => {
    try {
      const [options, files] = await Promise.all([api("/v1/fine_tuning/options"),
        api("/v1/files?purpose=fine-tune&limit=200")]);
      if (!stopped) build(main, options, files.data);
    } catch (e) {
      if (!stopped) main.replaceChildren(el("h1", {}, "New job"), el("p", { class: "notice bad", role: "alert" }, e.message));
    }
  })();
  return () => { stopped = true; };
}

function build(main, options, files) {
  const formError = el("div", { id: "form-error", "aria-live": "polite" });
  const fileFields = {};

  function fileField(which, label, required) {
    const param = `${which}_file`;
    const select = el("select", { id: param, required, "aria-describedby": `err-${param}` },
      el("option", { value: "" }, required ? "choose a file…" : "none"),
      files.map((f) => el("option", { value: f.id }, `${f.filename} (${f.id})`)));
    const upload = el("input", { id: `${which}-upload`, type: "file", accept: ".jsonl,.json,.parquet,.csv" });
    const status = el("span", { class: "muted small", "aria-live": "polite" });
    const report = el("div", { id: `${which}-report` });
    async function showReport() {
      report.replaceChildren();
      if (!select.value) return;
      status.textContent = "Checking the file…";
      try {
        renderReport(report, await api(`/v1/files/${select.value}/report`), which);
        status.textContent = "";
      } catch (e) {
        status.textContent = "";
        report.replaceChildren(el("p", { class: "notice bad", role: "alert" }, e.message));
      }
    }
    select.addEventListener("change", showReport);
    upload.addEventListener("change", async () => {
      if (!upload.files.length) return;
      const form = new FormData();
      form.append("purpose", "fine-tune");
      form.append("file", upload.files[0]);
      status.textContent = "Uploading…";
      try {
        const file = await api("/v1/files", { method: "POST", form });
        select.append(el("option", { value: file.id }, `${file.filename} (${file.id})`));
        select.value = file.id;
        upload.value = "";
        await showReport();
      } catch (e) {
        status.textContent = "";
        report.replaceChildren(el("p", { class: "notice bad", role: "alert" }, `Upload failed: ${e.message}`));
      }
    });
    fileFields[which] = select;
    return el("div", { class: "field" },
      el("label", { for: param }, label), select,
      el("div", { class: "row" }, el("label", { for: `${which}-upload` }, "or upload one:"), upload, status),
      el("div", { class: "error", id: `err-${param}`, role: "alert" }),
      report);
  }

  // Model: any name the server allows; the list offers tiny, allowed aliases, own fine-tuned models.
  const models = [...options.models.allowed, ...options.models.fine_tuned];
  const model = el("input", { id: "model", list: "model-list", value: models[0] || "tiny",
    autocomplete: "off", required: true, "aria-describedby": "hint-model err-model" });
  const modelHint = options.models.unrestricted
    ? "Any model name: tiny, an alias, or a hub id org/name (this server allows every model)."
    : `Allowed here: ${options.models.patterns.join(", ")}; your fine-tuned models (ft:...) too.`;

  const methods = Object.fromEntries(options.methods.map((m) => [m.type, m]));
  const method = el("select", { id: "method", "aria-describedby": "hint-method err-method" },
    options.methods.map((m) => el("option", { value: m.type }, m.type)));
  const methodHint = el("div", { class: "hint", id: "hint-method" });
  const methodBox = el("div", { class: "form-grid", id: "method-hyperparameters" });

  const presets = Object.fromEntries(options.presets.map((p) => [p.name, p]));
  const preset = el("select", { id: "preset", "aria-describedby": "hint-preset" },
    el("option", { value: "" }, "none: the defaults below"),
    options.presets.map((p) => el("option", { value: p.name }, p.default ? `${p.name} (recommended)` : p.name)));
  const presetHint = el("div", { class: "hint", id: "hint-preset" });
  const general = el("div", { class: "form-grid", id: "hyperparameters" },
    options.hyperparameters.map(optionField));
  const suffix = el("input", { id: "suffix", maxlength: "64", "aria-describedby": "err-suffix" });

  function applyPreset() {
    const chosen = presets[preset.value];
    presetHint.textContent = chosen ? `${chosen.description} Risks: ${chosen.risks}` : "The config's own defaults.";
    for (const option of options.hyperparameters) {
      const value = chosen && option.name in chosen.values ? chosen.values[option.name] : option.default;
      setValue(document.getElementById(inputId(option.name)), value);
    }
    for (const option of methods[method.value].hyperparameters) {
      const value = chosen && option.name in chosen.values ? chosen.values[option.name] : option.default;
      setValue(document.getElementById(inputId(option.name)), value);
    }
  }

  function showMethod() {
    const chosen = methods[method.value];
    methodHint.textContent = `${chosen.description}. ${chosen.paper}. Trains on ${chosen.data} data.`;
    methodBox.replaceChildren(...chosen.hyperparameters.map(optionField));
    applyPreset();
  }

  method.addEventListener("change", showMethod);
  preset.addEventListener("change", applyPreset);

  const estimateBox = el("div", { id: "estimate", "aria-live": "polite" },
    el("p", { class: "muted" }, "Estimate shows the plan (steps, model, memory) without starting the job."));
  const estimateButton = el("button", { type: "button", id: "estimate-button" }, "Estimate");
  const submitButton = el("button", { type: "submit", class: "primary", id: "submit-button" }, "Submit");
  const form = el("form", { id: "new-job", novalidate: true },
    el("fieldset", {}, el("legend", {}, "Data"),
      fileField("training", "Training file", true),
      fileField("validation", "Validation file (optional)", false)),
    el("fieldset", {}, el("legend", {}, "Model and method"),
      el("div", { class: "form-grid" },
        el("div", { class: "field" }, el("label", { for: "model" }, "Model"), model,
          el("datalist", { id: "model-list" }, models.map((m) => el("option", { value: m }))),
          el("div", { class: "hint", id: "hint-model" }, modelHint),
          el("div", { class: "error", id: "err-model", role: "alert" })),
        el("div", { class: "field" }, el("label", { for: "method" }, "Method"), method, methodHint,
          el("div", { class: "error", id: "err-method", role: "alert" })),
        el("div", { class: "field" }, el("label", { for: "preset" }, "Preset"), preset, presetHint),
        el("div", { class: "field" }, el("label", { for: "suffix" }, "Suffix (optional)"), suffix,
          el("div", { class: "hint" }, "Part of the fine-tuned model's name."),
          el("div", { class: "error", id: "err-suffix", role: "alert" })))),
    el("fieldset", {}, el("legend", {}, "Method hyperparameters"), methodBox),
    el("fieldset", {}, el("legend", {}, "Training"), general),
    formError,
    el("div", { class: "actions" }, estimateButton, submitButton),
    el("section", { "aria-labelledby": "estimate-h" }, el("h2", { id: "estimate-h" }, "Estimate"), estimateBox));
  main.replaceChildren(el("h1", {}, "New job"),
    el("p", { class: "muted" }, `Your organization may run ${options.quota.max_running_jobs} jobs at once and hold ${options.quota.max_files} files (${options.quota.usage.files} now).`),
    form);
  showMethod();

  function body() {
    const type = method.value;
    const hyperparameters = {};
    for (const input of methodBox.querySelectorAll("[data-name]")) {
      const value = valueOf(input);
      if (value !== undefined) hyperparameters[input.dataset.name] = value;
    }
    const config = {};
    for (const input of general.querySelectorAll("[data-name]")) {
      const value = valueOf(input);
      if (value !== undefined) config[input.dataset.name] = value;
    }
    if (preset.value) config.preset = preset.value;
    const request = { model: model.value.trim(), training_file: fileFields.training.value,
      method: { type, [type]: { hyperparameters } }, config };
    if (fileFields.validation.value) request.validation_file = fileFields.validation.value;
    if (suffix.value.trim()) request.suffix = suffix.value.trim();
    return request;
  }

  function clearErrors() {
    formError.replaceChildren();
    for (const node of form.querySelectorAll(".error")) node.textContent = "";
  }

  /** Show the API's error under the field its ``param`` names, else above the buttons. */
  function showError(e) {
    const leaf = (e.param || "").split(".").pop();
    const name = PARAM_INPUT[leaf] || leaf;
    const target = name && document.getElementById(`err-${name}`);
    if (target) {
      target.textContent = e.message;
      const input = document.getElementById(inputId(name)) || document.getElementById(name);
      input?.focus();
    } else {
      formError.replaceChildren(el("p", { class: "notice bad", role: "alert" }, e.message));
    }
  }

  function localCheck() {
    if (!fileFields.training.value) {
      showError({ param: "training_file", message: "choose or upload a training file first" });
      return false;
    }
    return true;
  }

  estimateButton.addEventListener("click", async () => {
    clearErrors();
    if (!localCheck()) return;
    estimateButton.disabled = true;
    estimateBox.replaceChildren(el("p", { class: "muted" }, "Estimating: the server reads the file and the model's shape…"));
    try {
      renderEstimate(estimateBox, await api("/v1/fine_tuning/jobs/estimate", { method: "POST", json: body() }));
    } catch (e) {
      estimateBox.replaceChildren();
      showError(e);
    } finally {
      estimateButton.disabled = false;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    if (!localCheck()) return;
    submitButton.disabled = true;
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", json: body() });
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      showError(e);
      submitButton.disabled = false;
    }
  });
}
