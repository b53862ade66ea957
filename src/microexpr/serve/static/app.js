// The page: one form, then one card per uploaded video, polled until it is done.
"use strict";

const POLL_MS = 600;
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
};
const fmt = (x, digits = 2) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));

async function loadConfig() {
  const config = await (await fetch("/api/config")).json();
  const select = document.getElementById("model");
  for (const model of config.models) {
    const text = `${model.name} (${model.kind}, ${model.runtime}: ${model.classes.join(", ")})`;
    select.append(el("option", { value: model.id }, text));
  }
  const l = config.limits;
  document.getElementById("limits").textContent =
    `Up to ${l.max_upload_mb} MB and ${l.max_duration_s} s a video; ${l.workers} at a time, ` +
    `${l.queue_size} may wait; results are deleted ${l.keep_minutes} minutes after they finish.`;
}

function statusText(a) {
  if (a.state === "queued") return `waiting: position ${a.position} in the queue`;
  if (a.state === "running") return `running: ${a.stage}`;
  if (a.state === "failed") return `failed: ${a.error}`;
  const r = a.result;
  return `done: ${r.micro} micro, ${r.macro} macro in ${fmt(r.duration_s, 1)} s ` +
    `(${r.frames} frames at ${fmt(r.fps, 1)} fps)` + (a.model ? `, labelled by ${a.model}` : "");
}

function renderResult(card, a) {
  const r = a.result;
  card.append(el("img", { class: "timeline", src: r.files.timeline, alt: `timeline of ${a.name}` }));
  const head = el("tr", {}, ...["#", "start (s)", "end (s)", "type", "label", "confidence", "score"]
    .map((h) => el("th", {}, h)));
  const body = el("tbody");
  for (const e of r.events) {
    body.append(el("tr", {},
      el("td", {}, String(e.n)), el("td", {}, fmt(e.start_s)), el("td", {}, fmt(e.end_s)),
      el("td", { class: e.type }, e.type), el("td", {}, e.label || "-"),
      el("td", {}, e.confidence === null ? "-" : fmt(e.confidence)), el("td", {}, fmt(e.score, 1))));
  }
  if (!r.events.length) {
    body.append(el("tr", {}, el("td", { colspan: "7" }, "no expression spotted")));
  }
  card.append(el("table", { class: "events" }, el("thead", {}, head), body));
  const pictures = el("div", { class: "pictures" });
  for (const e of r.events) {
    pictures.append(el("figure", {},
      el("img", { src: e.picture, alt: `event ${e.n}: apex face and flow` }),
      el("figcaption", {}, `#${e.n} ${e.type} ${fmt(e.start_s)} s ${e.label || ""}`)));
  }
  card.append(pictures);
  if (r.notes.length) card.append(el("p", { class: "notes" }, "Notes: " + r.notes.join("; ")));
  card.append(el("p", { class: "downloads" },
    el("a", { href: r.files.events_csv, download: "" }, "events.csv"),
    el("a", { href: r.files.result_json, download: "" }, "result.json")));
}

async function follow(id) {
  const card = el("article", { class: "analysis", id: `analysis-${id}`, "data-state": "queued" });
  const title = el("h2");
  const status = el("p", { class: "status" });
  const bar = el("progress", { max: "1", value: "0" });
  card.append(title, status, bar);
  document.getElementById("analyses").prepend(card);
  for (;;) {
    const response = await fetch(`/api/analyses/${id}`);
    if (!response.ok) {
      status.textContent = (await response.json()).detail;
      card.classList.add("failed");
      return;
    }
    const a = await response.json();
    title.textContent = a.name;
    status.textContent = statusText(a);
    bar.value = a.progress;
    card.dataset.state = a.state;
    card.classList.toggle("failed", a.state === "failed");
    if (a.state === "done") { bar.remove(); renderResult(card, a); return; }
    if (a.state === "failed") { bar.remove(); return; }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("message");
  const button = document.getElementById("submit");
  const files = document.getElementById("videos").files;
  if (!files.length) { message.textContent = "Choose one or more videos first."; return; }
  const form = new FormData();
  form.append("model", document.getElementById("model").value);
  for (const file of files) form.append("files", file, file.name);
  message.textContent = "";
  button.disabled = true;
  try {
    const response = await fetch("/api/analyses", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) { message.textContent = body.detail; return; }
    for (const a of body.analyses) follow(a.id);
  } catch (err) {
    message.textContent = `The upload failed: ${err}`;
  } finally {
    button.disabled = false;
  }
});

loadConfig();
