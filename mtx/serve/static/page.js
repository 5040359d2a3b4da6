"use strict";
const $ = (id) => document.getElementById(id);
const state = { languages: [], names: {}, settings: {}, seq: 0, timer: null };
const display = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "language" }) : null;
const nameOf = (code) => state.names[code] || (display && display.of(code)) || code;

function setError(text) { $("error").textContent = text || ""; }

async function api(path, body) {
  const key = $("api-key").value.trim();
  const init = body === undefined ? {} : body instanceof FormData
    ? { method: "POST", body }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  if (key && body !== undefined) {
    if (body instanceof FormData) body.append("api_key", key); else init.body = JSON.stringify({ ...body, api_key: key });
  }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function fillTargets() {
  const src = $("source").value, keep = $("target").value;
  const targets = new Set();
  for (const l of state.languages) if (src === "auto" || l.code === src) l.targets.forEach((t) => targets.add(t));
  $("target").replaceChildren(...[...targets].map((t) => new Option(nameOf(t), t)));
  if (targets.has(keep)) $("target").value = keep;
}

// The translation, its sentences of low confidence marked (their confidence on hover), and the legend when any is.
function showTranslation(text, sentences) {
  const below = state.settings.confidenceBelow ?? 0.5, parts = [];
  let at = 0, marked = 0;
  for (const s of sentences || []) {
    const i = s.text ? text.indexOf(s.text, at) : -1;
    if (i < 0 || s.confidence >= below) continue;
    const m = document.createElement("mark");
    m.className = "unsure"; m.textContent = s.text; m.title = `confidence ${s.confidence.toFixed(2)}`;
    parts.push(text.slice(at, i), m); at = i + s.text.length; marked++;
  }
  parts.push(text.slice(at));
  $("output").replaceChildren(...parts);
  $("legend").textContent = marked
    ? `Marked: ${marked === 1 ? "a sentence" : `${marked} sentences`} the model is unsure of (confidence below ${below}); check ${marked === 1 ? "it" : "them"}.`
    : "";
}

function showAlternatives(list) {
  $("alternatives").replaceChildren(...list.map((text) => {
    const li = document.createElement("li"), b = document.createElement("button");
    b.type = "button"; b.textContent = text;
    b.addEventListener("click", () => showTranslation(text, []));
    li.append(b); return li;
  }));
  $("more").setAttribute("aria-expanded", list.length ? "true" : "false");
}

async function translate(alternatives = 0) {
  const q = $("text").value;
  const seq = ++state.seq;
  if (!q.trim()) { showTranslation("", []); $("detected").textContent = ""; showAlternatives([]); return; }
  const body = { q, source: $("source").value, target: $("target").value, format: "text", sentences: true };
  if (alternatives) body.alternatives = alternatives;
  $("status").textContent = "Translating…";
  try {
    const out = await api("/translate", body);
    if (seq !== state.seq) return;  // a newer request has been sent
    setError("");
    showTranslation(out.translatedText, out.sentences);
    showAlternatives(out.alternatives || []);
    const d = out.detectedLanguage;
    $("detected").textContent = d ? `Detected: ${nameOf(d.language)} (${d.confidence}%)` : "";
    $("status").textContent = "";
  } catch (e) {
    if (seq !== state.seq) return;
    setError(e.message); $("status").textContent = "";
  }
}

function soon() {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => translate(), state.settings.frontendTimeout || 500);
}

async function sendFile(file) {
  const form = new FormData();
  form.append("file", file);
  form.append("source", $("source").value);
  form.append("target", $("target").value);
  $("file-result").textContent = `Translating ${file.name}…`;
  try {
    const out = await api("/translate_file", form);
    const a = document.createElement("a");
    a.href = out.translatedFileUrl; a.textContent = `Download the translated ${file.name}`;
    $("file-result").replaceChildren(a);
    setError("");
  } catch (e) { $("file-result").textContent = ""; setError(e.message); }
}

async function start() {
  try {
    state.settings = await api("/frontend/settings");
    state.languages = await api("/languages");
  } catch (e) { setError(e.message); return; }
  if (state.settings.keyRequired) $("key-bar").classList.add("shown");
  for (const l of state.languages) state.names[l.code] = l.name;
  for (const l of state.languages) $("source").append(new Option(l.name, l.code));
  fillTargets();
  $("text").maxLength = state.settings.charLimit || 5000;
}

$("text").addEventListener("input", soon);
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); clearTimeout(state.timer); translate(); }
});
$("source").addEventListener("change", () => { fillTargets(); translate(); });
$("target").addEventListener("change", () => translate());
$("api-key").addEventListener("change", () => translate());
$("swap").addEventListener("click", () => {
  const src = $("source").value, tgt = $("target").value;
  if (src === "auto" || ![...$("source").options].some((o) => o.value === tgt)) return;
  $("source").value = tgt; fillTargets();
  if ([...$("target").options].some((o) => o.value === src)) $("target").value = src;
  $("text").value = $("output").textContent; translate();
});
$("more").addEventListener("click", () => translate(3));
$("copy").addEventListener("click", async () => {
  const text = $("output").textContent;
  try { await navigator.clipboard.writeText(text); $("status").textContent = "Copied"; }
  catch { const r = document.createRange(); r.selectNodeContents($("output"));
          const s = getSelection(); s.removeAllRanges(); s.addRange(r); $("status").textContent = "Selected: Ctrl+C"; }
});
const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) sendFile(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", () => { if ($("file").files.length) sendFile($("file").files[0]); });
start();
