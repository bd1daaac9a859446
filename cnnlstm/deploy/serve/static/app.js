// cnnlstm serve: pick or drop a video, POST it to /predict, show the answer over the playing video.
// Plain JS, no build step, nothing external. Untrusted strings only ever go through textContent.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
let info = { labels: [] }; // GET /models: model, task, output, labels (class names; none for captions), frames, size
let objectUrl = null;
let current = null; // the last prediction row

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function colorOf(label) {
  const i = info.labels.indexOf(label);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function loadInfo() {
  try {
    const res = await fetch("/models");
    if (!res.ok) throw new Error(`GET /models: HTTP ${res.status}`);
    info = await res.json();
    const labels = info.labels || [];
    const classes = labels.length ? ` · ${labels.length} labels` : "";
    $("model").textContent = `${info.model} · ${info.task}${classes} · ${info.frames} frames at ${info.size} px`;
  } catch (err) {
    $("model").textContent = "";
    showError(`Cannot reach the server: ${err.message}`);
  }
}

function resetResult() {
  current = null;
  for (const id of ["topk", "segments", "legend", "facts", "label", "caption"]) $(id).replaceChildren();
  $("caption").hidden = true;
  $("result").hidden = true;
  $("timeline").querySelectorAll(".cell").forEach((c) => c.remove());
}

async function predict(file) {
  resetResult();
  showError("");
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = URL.createObjectURL(file);
  $("video").src = objectUrl;
  $("player").hidden = false;

  setStatus(`Uploading ${file.name} (${(file.size / 2 ** 20).toFixed(1)} MiB)…`);
  $("progress").removeAttribute("value"); // indeterminate while the server works
  $("progress").hidden = false;
  const form = new FormData();
  form.append("file", file, file.name);
  const started = performance.now();
  try {
    const res = await fetch("/predict", { method: "POST", body: form });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON: reported below */ }
    if (!res.ok || !body || body.error) {
      const what = body && body.error ? `${body.error}: ${body.detail || ""}` : `HTTP ${res.status}`;
      setStatus(`${file.name}: rejected (HTTP ${res.status})`);
      showError(what);
      return;
    }
    current = body;
    setStatus(`${body.filename}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    render(body);
  } catch (err) {
    setStatus(`${file.name}: failed`);
    showError(`Upload failed: ${err.message}`);
  } finally {
    $("progress").hidden = true;
  }
}

function render(row) {
  $("result").hidden = false;
  const score = typeof row.score === "number" ? ` (${(row.score * 100).toFixed(1)}%)` : "";
  // a multi-label run sends `labels` (every class at or above `threshold`): show them all
  const multi = Array.isArray(row.labels);
  $("label").textContent = row.caption !== undefined ? "Caption" : multi ? labelsText(row) : `${row.label}${score}`;
  if (row.caption !== undefined) renderCaption(row);
  if (row.topk) renderTopk(row.topk, multi ? row.threshold : null);
  if (row.segments) renderSegments(row.segments);
  $("facts").textContent = `${row.frames} frames · ${Number(row.fps).toFixed(2)} fps · ${Number(row.duration).toFixed(2)} s · `
    + `${row.frame_indices.length} sampled`;
  renderTimeline(row, cellColors(row));
}

function cellColors(row) {
  const n = row.frame_times.length;
  if (row.frame_labels) {
    const present = [...new Set(row.frame_labels)];
    $("legend").replaceChildren(...present.map((label) =>
      el("span", {}, [el("span", { className: "swatch", style: `background:${colorOf(label)}` }), label])));
    return row.frame_labels.map((label, i) => ({
      color: colorOf(label),
      alpha: 0.35 + 0.65 * (row.frame_scores ? row.frame_scores[i] : 1),
      title: `${label}${row.frame_scores ? ` ${(row.frame_scores[i] * 100).toFixed(0)}%` : ""}`,
    }));
  }
  let weights = row.attention;
  if (!weights && row.word_attention && row.word_attention.length) {
    weights = row.frame_times.map((_, i) => row.word_attention.reduce((s, w) => s + w[i], 0) / row.word_attention.length);
  }
  if (weights) {
    $("legend").replaceChildren(el("span", {}, [el("span", { className: "swatch", style: "background:rgb(var(--accent))" }),
      row.attention ? "attention weight per sampled frame (darker: more)" : "mean word attention per sampled frame"]));
    return attentionColors(weights);
  }
  $("legend").replaceChildren(el("span", {}, ["sampled frames"]));
  return Array.from({ length: n }, () => ({ color: "rgb(var(--accent))", alpha: 0.35, title: "" }));
}

function attentionColors(weights) {
  const max = Math.max(...weights, 1e-9);
  return weights.map((w) => ({ color: "rgb(var(--accent))", alpha: 0.1 + 0.9 * (w / max), title: `attention ${w.toFixed(3)}` }));
}

function renderTimeline(row, colors) {
  const timeline = $("timeline");
  timeline.querySelectorAll(".cell").forEach((c) => c.remove());
  const times = row.frame_times;
  const duration = row.duration > 0 ? row.duration : (times[times.length - 1] || 1);
  times.forEach((t, i) => {
    // each sampled frame stands for the time closer to it than to its neighbours
    const start = i > 0 ? (times[i - 1] + t) / 2 : 0;
    const end = i + 1 < times.length ? (t + times[i + 1]) / 2 : duration;
    const cell = el("div", { className: "cell", title: `frame ${row.frame_indices[i]} at ${t.toFixed(2)} s ${colors[i].title}` });
    cell.dataset.index = String(i);
    cell.style.left = `${(100 * start) / duration}%`;
    cell.style.width = `${Math.max(0.3, (100 * (end - start)) / duration)}%`;
    cell.style.background = colors[i].color;
    cell.style.opacity = String(colors[i].alpha);
    cell.addEventListener("click", () => { $("video").currentTime = t; });
    timeline.append(cell);
  });
}

function labelsText(row) {
  const pct = (p) => `${(100 * p).toFixed(0)}%`;
  if (!row.labels.length) return `No label at or above ${pct(row.threshold)}`;
  return row.labels.map(([label, p]) => `${label} (${pct(p)})`).join(" · ");
}

// threshold (multi-label): bars at or above it are "on", the others dimmed, with a mark at the threshold
function renderTopk(topk, threshold = null) {
  $("topk").replaceChildren(...topk.map(([label, p]) => {
    const state = threshold === null ? "" : p >= threshold ? " on" : " off";
    const track = [el("div", { className: "fill", style: `width:${(100 * p).toFixed(1)}%` })];
    if (threshold !== null) track.push(el("div", { className: "mark", style: `left:${(100 * threshold).toFixed(1)}%` }));
    return el("div", { className: `bar${state}` }, [
      el("span", { className: "name", textContent: label, title: label }),
      el("div", { className: "track" }, track),
      el("span", { className: "value", textContent: `${(100 * p).toFixed(1)}%` }),
    ]);
  }));
}

function renderSegments(segments) {
  $("segments").replaceChildren(...segments.map((s) => {
    const item = el("li", {}, [
      el("span", { className: "swatch", style: `display:inline-block;width:0.8em;height:0.8em;margin-right:0.4em;background:${colorOf(s.label)}` }),
      `${s.label}: ${s.start.toFixed(2)}–${s.end.toFixed(2)} s (${(100 * s.score).toFixed(0)}%)`,
    ]);
    item.addEventListener("click", () => { $("video").currentTime = s.start; });
    return item;
  }));
}

function renderCaption(row) {
  const words = row.caption.split(/\s+/).filter(Boolean);
  const spans = words.map((word, i) => {
    const span = el("span", { className: "word", textContent: word });
    if (row.word_attention && row.word_attention[i]) {
      span.addEventListener("mouseenter", () => renderTimeline(row, attentionColors(row.word_attention[i])));
      span.addEventListener("mouseleave", () => renderTimeline(row, cellColors(row)));
    }
    return span;
  });
  $("caption").replaceChildren(...spans.flatMap((s, i) => (i ? [" ", s] : [s])));
  $("caption").hidden = false;
}

function followPlayhead() {
  const video = $("video");
  const duration = current && current.duration > 0 ? current.duration : video.duration;
  if (duration > 0 && Number.isFinite(duration)) {
    $("playhead").style.left = `${Math.min(100, (100 * video.currentTime) / duration)}%`;
  }
  requestAnimationFrame(followPlayhead);
}

function setup() {
  $("file").addEventListener("change", (e) => { if (e.target.files.length) predict(e.target.files[0]); });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]); });
  loadInfo();
  requestAnimationFrame(followPlayhead);
}

setup();
