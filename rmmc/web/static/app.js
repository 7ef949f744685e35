// rmmc playground: the page's behaviour. Everything shown comes from the server's JSON API
// (a thin layer over the rmmc library); this file only sends requests and draws answers.
// Text from the server is always inserted as text (textContent), never as HTML.
"use strict";

const DEBOUNCE_MS = 300;
const KIND_NAMES = { kql: "KQL query", "sentinel-yaml": "Sentinel YAML", hunt: "hunt document",
                     markdown: "Markdown", sigma: "Sigma" };

const $ = (id) => document.getElementById(id);
const source = $("source");
let options = null;          // /api/options
let lastTranslation = null;  // the answer the translation pane shows
let downloadUrls = [];
let sequence = 0;            // answers to older requests are dropped
let inFlight = null;         // AbortController of the translation request under way
let timer = null;
let explainedText = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// ------------------------------------------------------------------ requests

function request() {
  const [target, form] = $("target").value.split("+");
  const body = { text: source.value, target, package: form === "package",
                 loose: $("loose").checked, apply_exclusions: $("apply-exclusions").checked,
                 allow_lossy: $("allow-lossy").checked,
                 allow_unknown_fields: $("allow-unknown-fields").checked };
  const environment = $("environment").value;
  if (environment && !$("environment").disabled) body.environment = environment;
  return body;
}

async function post(action, body, signal) {
  const response = await fetch(`/api/${action}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body), signal,
  });
  let answer;
  try {
    answer = await response.json();
  } catch (e) {
    answer = { error: `the server answered ${response.status} ${response.statusText}` };
  }
  if (!response.ok && !answer.error) answer.error = `the server answered ${response.status}`;
  return answer;
}

function busy(text) { $("busy").textContent = text; }

// ------------------------------------------------------------------ translation

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(translate, DEBOUNCE_MS);
  markStale();
}

async function translate() {
  clearTimeout(timer);
  if (inFlight) inFlight.abort();
  const mine = ++sequence;
  if (!source.value.trim()) {
    showTranslation({ rules: [], text: "" }, "");
    return;
  }
  inFlight = new AbortController();
  const text = source.value;
  busy("translating…");
  let answer;
  try {
    answer = await post("translate", request(), inFlight.signal);
  } catch (e) {
    if (e.name === "AbortError") return;
    answer = { error: `no answer from the playground server (${e.message})` };
  }
  if (mine !== sequence) return;
  inFlight = null;
  busy("");
  showTranslation(answer, text);
}

function showTranslation(answer, text) {
  lastTranslation = answer;
  const pane = $("translations");
  pane.replaceChildren();
  pane.classList.remove("stale");
  for (const url of downloadUrls) URL.revokeObjectURL(url);
  downloadUrls = [];
  const downloads = $("downloads");
  downloads.replaceChildren();
  $("copy").disabled = !answer.text;
  $("copied").textContent = "";
  if (answer.error) {
    pane.append(el("div", { class: "banner failed", role: "alert", text: answer.error }));
    showDiagnostics([], text);
    $("kind").textContent = "";
    return;
  }
  const rules = answer.rules || [];
  const kinds = [...new Set(rules.map((r) => r.kind).filter(Boolean))];
  $("kind").textContent = kinds.map((k) => KIND_NAMES[k] || k).join(", ");
  for (const rule of rules) {
    const box = el("div", { class: "rule" });
    box.append(el("h2", {}, el("span", { class: `status ${rule.status}`, text: rule.status }),
                  el("span", { text: rule.title || "(untitled rule)" })));
    const banner = statusBanner(rule);
    if (banner) box.append(banner);
    if (rule.text) box.append(el("pre", { class: "output", text: rule.text }));
    for (const file of rule.files) {
      const url = URL.createObjectURL(new Blob([file.text], { type: "text/plain;charset=utf-8" }));
      downloadUrls.push(url);
      downloads.append(el("a", { class: "download", href: url, download: file.name,
                                 title: "the file rmmc translate -o would write", text: `⤓ ${file.name}` }));
    }
    pane.append(box);
  }
  if (!rules.length) pane.append(el("p", { class: "hint", text: "The translation appears here as you type." }));
  showDiagnostics(rules.flatMap((r) => r.diagnostics), text);
}

function statusBanner(rule) {
  const pick = (severity, code) => rule.diagnostics.filter(
    (d) => d.severity === severity && (code === undefined || d.code === code));
  if (rule.status === "refused") {
    const errors = pick("error");
    return el("div", { class: "banner refused" },
              el("strong", { text: "Refused: " }),
              "rmmc cannot translate this rule exactly, so it writes nothing.",
              el("ul", {}, ...errors.map((d) => el("li", { text: where(d) + d.message }))));
  }
  if (rule.status === "lossy") {
    return el("div", { class: "banner lossy" },
              el("strong", { text: "Lossy: " }),
              "translated with a flagged approximation; the alerts can differ as follows.",
              el("ul", {}, ...pick("warning", "lossy").map((d) => el("li", { text: where(d) + d.message }))));
  }
  return null;
}

function where(d) { return d.line ? `${d.line}:${d.column}: ` : ""; }

function markStale() {
  $("translations").classList.add("stale");
  if ($("verdicts").firstChild) $("verdicts").classList.add("stale");
  if ($("explanation").firstChild) $("explanation").classList.add("stale");
}

// ------------------------------------------------------------------ diagnostics in the editor

function showDiagnostics(diagnostics, text) {
  const seen = new Set();
  const unique = diagnostics.filter((d) => {
    const key = `${d.severity}|${d.from}|${d.to}|${d.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const rank = { error: 0, warning: 1, note: 2 };
  const place = (d) => (d.from === null || d.from === undefined ? Infinity : d.from);
  unique.sort((a, b) => (rank[a.severity] - rank[b.severity]) || (place(a) - place(b)));
  const list = $("diagnostics");
  list.replaceChildren(...unique.map((d, i) => el("li", { class: d.severity },
    el("button", { class: "where", type: "button", "data-index": String(i),
                   title: d.line ? "show it in the rule" : "", text: d.line ? `${d.line}:${d.column}` : "—",
                   onclick: () => reveal(d) }),
    el("span", { class: `sev ${d.severity}`, text: d.severity }),
    el("span", { class: "message", text: d.message }))));
  for (const button of list.querySelectorAll("button.where")) {
    if (button.textContent === "—") button.disabled = true;
  }
  drawMarks(unique.filter((d) => d.from !== null && d.from !== undefined), text);
}

// The backdrop repeats the source text with one <mark> per located diagnostic (the most
// severe wins where they overlap); a point diagnostic marks the character it points at.
function drawMarks(located, text) {
  const rank = { error: 3, warning: 2, note: 1 };
  const spans = located.map((d) => {
    let from = Math.min(d.from, text.length), to = Math.min(Math.max(d.to, d.from), text.length);
    const point = to === from;
    if (point && from < text.length && text[from] !== "\n") to = from + 1;
    return { from, to, point: to === from, d };
  }).sort((a, b) => a.from - b.from || rank[b.d.severity] - rank[a.d.severity]);
  const parts = [];
  let at = 0;
  for (const span of spans) {
    if (span.from < at) continue;  // overlaps a mark already drawn
    if (span.from > at) parts.push(document.createTextNode(text.slice(at, span.from)));
    parts.push(el("mark", { class: `${span.d.severity}${span.point ? " point" : ""}`,
                            "data-line": String(span.d.line), "data-column": String(span.d.column),
                            "data-from": String(span.from), title: span.d.message,
                            text: text.slice(span.from, span.to) }));
    at = span.to;
  }
  parts.push(document.createTextNode(text.slice(at) + "\n"));
  $("highlights").replaceChildren(...parts);
  syncScroll();
}

function drawLineNumbers() {
  const lines = source.value.split("\n").length;
  const numbers = $("line-numbers");
  if (Number(numbers.dataset.lines) === lines) return;
  numbers.dataset.lines = String(lines);
  const out = [];
  for (let i = 1; i <= lines; i++) out.push(i);
  numbers.textContent = out.join("\n");
}

function syncScroll() {
  $("highlights").style.transform = `translate(${-source.scrollLeft}px, ${-source.scrollTop}px)`;
  $("line-numbers").style.transform = `translateY(${-source.scrollTop}px)`;
}

function reveal(d) {
  if (d.from === null || d.from === undefined) return;
  source.focus();
  source.setSelectionRange(d.from, Math.max(d.to, d.from));
  const lineHeight = parseFloat(getComputedStyle(source).lineHeight) || 19;
  source.scrollTop = Math.max(0, (d.line - 3) * lineHeight);
  syncScroll();
  for (const mark of $("highlights").querySelectorAll("mark.active")) mark.classList.remove("active");
  const mark = $("highlights").querySelector(`mark[data-from="${Math.min(d.from, source.value.length)}"]`);
  if (mark) mark.classList.add("active");
}

// ------------------------------------------------------------------ copy

async function copy() {
  if (!lastTranslation || !lastTranslation.text) return;
  try {
    await navigator.clipboard.writeText(lastTranslation.text);
  } catch (e) {
    const area = el("textarea", {});
    area.value = lastTranslation.text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copied").textContent = "copied";
}

// ------------------------------------------------------------------ explain and verify

async function explain() {
  const pane = $("explanation");
  const text = source.value;
  busy("explaining…");
  const answer = await post("explain", { text }).catch((e) => ({ error: e.message }));
  busy("");
  explainedText = text;
  pane.replaceChildren();
  pane.classList.remove("stale");
  if (answer.error) {
    pane.append(el("div", { class: "banner failed", role: "alert", text: answer.error }));
    return;
  }
  for (const rule of answer.rules) {
    const errors = rule.diagnostics.filter((d) => d.severity === "error");
    pane.append(el("div", { class: "rule" },
      el("h2", { text: rule.title || "(untitled rule)" }),
      rule.text ? el("pre", { class: "output", text: rule.text })
                : el("div", { class: "banner refused" }, el("strong", { text: "Not understood: " }),
                     el("ul", {}, ...errors.map((d) => el("li", { text: where(d) + d.message }))))));
  }
}

async function verify() {
  const pane = $("verdicts");
  const button = $("run-verify");
  button.disabled = true;
  busy("verifying…");
  const body = request();
  const answer = await post("verify", { text: body.text, loose: body.loose, apply_exclusions: body.apply_exclusions })
    .catch((e) => ({ error: e.message }));
  busy("");
  button.disabled = false;
  pane.replaceChildren();
  pane.classList.remove("stale");
  if (answer.error) {
    pane.append(el("div", { class: "banner failed", role: "alert", text: answer.error }));
    return;
  }
  for (const rule of answer.rules) {
    const box = el("div", { class: "rule" }, el("h2", { text: rule.title || "(untitled rule)" }));
    if (rule.error) {
      box.append(el("div", { class: "banner refused", text: `Not verified: ${rule.error}` }));
    } else {
      box.append(el("p", { class: "hint", text: `${rule.events} events generated around the rule's values` }));
      const rows = [];
      for (const t of rule.targets) {
        rows.push(el("tr", { "data-target": t.target },
          el("td", { text: t.target }),
          el("td", {}, el("span", { class: `status ${t.status}`, text: t.status })),
          el("td", { text: t.engine || "" }),
          el("td", { class: "detail", text: t.detail || "" })));
        if (t.counterexample) {
          const side = t.source_selects_it ? "the rule selects this event; the translation does not"
                                           : "the translation selects this event; the rule does not";
          rows.push(el("tr", { class: "counterexample" }, el("td", {}), el("td", { colspan: "3" },
            el("strong", { text: `Counterexample: ${side}` }),
            el("pre", { class: "event", text: JSON.stringify(t.counterexample, null, 2) }))));
        }
      }
      box.append(el("table", { class: "verdicts" },
        el("thead", {}, el("tr", {}, ...["target", "verdict", "engine", "detail"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows)));
    }
    pane.append(box);
  }
}

// ------------------------------------------------------------------ tabs and pickers

function selectTab(name) {
  for (const tab of ["translation", "explain", "verify"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
  if (name === "explain" && explainedText !== source.value && source.value.trim()) explain();
}

function fillPickers() {
  const target = $("target");
  const queries = el("optgroup", { label: "Query" });
  const packages = el("optgroup", { label: "Ready-to-import rule (--package)" });
  for (const t of options.targets) {
    queries.append(el("option", { value: t.name, text: t.label }));
    if (t.package) packages.append(el("option", { value: `${t.name}+package`, text: `${t.label}: ${t.package}` }));
  }
  target.replaceChildren(queries, packages);
  updateEnvironments();
}

function updateEnvironments() {
  const picker = $("environment");
  const name = $("target").value.split("+")[0];
  const target = options.targets.find((t) => t.name === name);
  const kept = picker.value;
  const fallback = target && target.environment_default
    ? `target default (${target.environment_default})` : "the rule's own fields";
  const serving = options.environments.filter((e) => e.targets.includes(name));
  picker.replaceChildren(el("option", { value: "", text: fallback }),
    ...serving.map((e) => el("option", { value: e.name, text: e.label })));
  picker.disabled = serving.length === 0;
  picker.title = "where the rule runs: field names, value conventions, where the data lives";
  if (serving.some((e) => e.name === kept)) picker.value = kept;
}

async function start() {
  try {
    options = await (await fetch("/api/options")).json();
  } catch (e) {
    $("translations").replaceChildren(el("div", { class: "banner failed", text: `cannot reach the playground server: ${e.message}` }));
    return;
  }
  fillPickers();
  source.addEventListener("input", () => { drawLineNumbers(); drawMarks([], source.value); schedule(); });
  source.addEventListener("scroll", syncScroll);
  $("target").addEventListener("change", () => { updateEnvironments(); translate(); });
  for (const id of ["environment", "loose", "apply-exclusions", "allow-lossy", "allow-unknown-fields"]) $(id).addEventListener("change", translate);
  $("copy").addEventListener("click", copy);
  $("run-explain").addEventListener("click", explain);
  $("run-verify").addEventListener("click", verify);
  for (const tab of ["translation", "explain", "verify"]) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  drawLineNumbers();
  document.body.dataset.ready = "true";
  if (source.value.trim()) translate();
}

start();
