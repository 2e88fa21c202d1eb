// earmark page: upload a file, draw the answer (top classes, log-mel spectrogram, per-segment timeline).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#e67700", "#5c940d",
  "#a61e4d", "#1864ab", "#862e9c", "#d9480f", "#087f5b", "#495057", "#364fc7", "#b02525"];
// The magma colour map, sampled at 9 points (0 = quiet, 1 = loud).
const MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100],
  [251, 135, 97], [254, 194, 135], [252, 253, 191]];

let labels = [];
let model = null;
let lastResult = null;

function setState(state) { document.body.dataset.state = state; }

function status(text, kind) {
  const el = $("status");
  el.textContent = text || "";
  el.className = "status" + (kind ? " " + kind : "");
}

function colorOf(label) {
  const i = labels.indexOf(label);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

function fmtPct(p) { return (100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1) + "%"; }
function fmtTime(s) {
  if (s >= 60) { const m = Math.floor(s / 60); return m + ":" + String(Math.round(s - 60 * m)).padStart(2, "0"); }
  return (s < 10 ? s.toFixed(s % 1 ? 1 : 0) : Math.round(s)) + " s";
}
function fmtBytes(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1e3)) + " kB"; }

// A server started with --token answers /v1/* with 401 until the page sends it: the page asks once, keeps
// the token for this tab only (sessionStorage) and sends it as a bearer token. "#token=..." in the URL works too.
function authHeaders() {
  const t = sessionStorage.getItem("earmark-token");
  return t ? { Authorization: "Bearer " + t } : {};
}
async function apiFetch(url, options = {}) {
  const hash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (hash) { sessionStorage.setItem("earmark-token", hash); history.replaceState(null, "", location.pathname); }
  let r = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (r.status === 401) {
    const t = window.prompt("This server needs an access token (earmark serve --token):");
    if (t) {
      sessionStorage.setItem("earmark-token", t.trim());
      r = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
    }
  }
  return r;
}

async function loadModel() {
  try {
    const r = await apiFetch("/v1/model");
    const m = await r.json();
    if (!r.ok) throw new Error(m.detail || m.error || r.statusText);
    model = m;
    labels = m.labels;
    $("model-info").textContent = `${m.run} · ${m.labels.length} classes · ${m.model}` +
      (m.members > 1 ? ` × ${m.members}` : "") + ` · ${m.sample_rate / 1000} kHz · ${m.segment.length_s} s segments`;
    setState("idle");
  } catch (e) {
    $("model-info").textContent = "model unavailable";
    status("Could not reach the model: " + e, "error");
    setState("error");
  }
}

async function analyse(file) {
  if (!file) return;
  setState("busy");
  status(`Analysing ${file.name} (${fmtBytes(file.size)})…`, "busy");
  const form = new FormData();
  form.append("file", file, file.name);
  let body;
  try {
    const r = await apiFetch("/v1/predict?spectrogram=true", { method: "POST", body: form });
    body = await r.json();
    if (!r.ok) throw new Error(body.detail || body.error || r.statusText);
  } catch (e) {
    $("result").hidden = true; // never leave the previous file's answer under a new file's error
    lastResult = null;
    status(String(e.message || e), "error");
    setState("error");
    return;
  }
  lastResult = body;
  const player = $("player");
  if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
  player.dataset.url = URL.createObjectURL(file);
  player.src = player.dataset.url;
  render(body);
  status(`Done in ${Math.round(body.timing_ms.total)} ms.`);
  setState("done");
}

function render(res) {
  $("result").hidden = false;
  $("r-file").textContent = res.filename;
  $("r-label").textContent = res.label;
  $("r-label").style.color = colorOf(res.label);
  $("r-confidence").textContent = fmtPct(res.confidence);
  $("r-confidence").style.color = colorOf(res.label);
  $("r-meta").textContent = `${res.duration_s.toFixed(2)} s · ${res.n_segments} segment${res.n_segments === 1 ? "" : "s"}`;
  renderFacts(res);
  renderBars(res.top.slice(0, 5));
  renderSpectrogram(res.spectrogram, res.duration_s);
  renderTimeline(res.segments || [], res.duration_s);
  renderTable(res.segments || []);
}

function renderFacts(res) {
  const facts = $("facts");
  facts.replaceChildren();
  const rows = [
    ["duration", res.duration_s.toFixed(2) + " s"],
    ["segments", `${res.n_segments} × ${model.segment.length_s} s, every ${model.segment.hop_s} s`],
    ["answer", `${model.aggregate} of segment scores` + (model.members > 1 ? `; ${model.voting} vote of ${model.members} models` : "")],
    ["time", `decode ${Math.round(res.timing_ms.decode)} ms · predict ${Math.round(res.timing_ms.predict)} ms`],
  ];
  rows.forEach(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    facts.append(dt, dd);
  });
}

function renderBars(top) {
  const bars = $("bars");
  bars.replaceChildren();
  top.forEach((t, i) => {
    const row = document.createElement("div");
    row.className = "bar-row" + (i === 0 ? " first" : "");
    const name = document.createElement("span");
    name.className = "bar-name";
    name.textContent = t.label;
    name.title = t.label;
    const track = document.createElement("div");
    track.className = "bar-track";
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    fill.style.width = Math.max(0.5, 100 * t.probability).toFixed(1) + "%";
    fill.style.background = colorOf(t.label);
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = fmtPct(t.probability);
    row.append(name, track, value);
    bars.appendChild(row);
  });
}

function magma(v) {
  const x = Math.min(1, Math.max(0, v)) * (MAGMA.length - 1);
  const i = Math.min(MAGMA.length - 2, Math.floor(x));
  const f = x - i;
  const a = MAGMA[i], b = MAGMA[i + 1];
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}

function renderSpectrogram(spec, duration) {
  const canvas = $("spec");
  const ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(canvas.clientWidth * dpr));
  canvas.height = Math.round(200 * dpr);
  ctx.fillStyle = "#000004";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!spec) return;
  const raw = atob(spec.data);
  const w = spec.n_frames, h = spec.n_mels;
  const img = new ImageData(w, h);
  const lut = Array.from({ length: 256 }, (_, v) => magma(v / 255));
  for (let t = 0; t < w; t++) {
    for (let m = 0; m < h; m++) {
      const c = lut[raw.charCodeAt(t * h + m)];
      const o = 4 * ((h - 1 - m) * w + t); // low bands at the bottom
      img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
    }
  }
  const off = document.createElement("canvas");
  off.width = w; off.height = h;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  // Frames cover a little past the end (the last one is padded): draw them on the same time axis.
  const covered = w * spec.seconds_per_frame;
  ctx.drawImage(off, 0, 0, w, h, 0, 0, canvas.width * covered / Math.max(duration, 1e-9), canvas.height);
  $("spec-meta").textContent = `· ${h} mel bands, ${Math.round(spec.f_min)}–${Math.round(spec.f_max)} Hz, ` +
    `${Math.round(spec.db_max - spec.db_min)} dB range`;
  renderFreqAxis(spec);
  renderTimeAxis(duration);
}

function renderFreqAxis(spec) {
  // Round frequencies, placed where they fall on the mel axis.
  const mel = (f) => 2595 * Math.log10(1 + f / 700);
  const lo = mel(spec.f_min), hi = mel(spec.f_max);
  const axis = $("freq-axis");
  axis.replaceChildren();
  const ticks = [0, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000]
    .filter((f) => f >= spec.f_min && f <= spec.f_max + 1)
    .filter((f, i, all) => i === 0 || mel(f) - mel(all[i - 1]) > 0.08 * (hi - lo));
  ticks.forEach((f) => {
    const q = (mel(f) - lo) / (hi - lo);
    const s = document.createElement("span");
    s.textContent = f >= 1000 ? f / 1000 + " kHz" : f + " Hz";
    s.style.top = Math.min(96, Math.max(4, 100 * (1 - q))) + "%";
    axis.appendChild(s);
  });
}

function renderTimeAxis(duration) {
  const axis = $("time-axis");
  axis.replaceChildren();
  const steps = [0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  const step = steps.find((s) => duration / s <= 8) || 600;
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const s = document.createElement("span");
    s.textContent = fmtTime(Math.round(t * 100) / 100);
    s.style.left = (100 * t / duration) + "%";
    if (t === 0) s.className = "start";
    else if (duration - t < step * 0.35) s.className = "end";
    axis.appendChild(s);
  }
}

function renderTimeline(segments, duration) {
  const tl = $("timeline");
  tl.replaceChildren();
  const seen = new Set();
  const spans = segments.map((s, i) => {
    // Overlapping segments: each is drawn up to where the next one starts.
    const end = i + 1 < segments.length ? Math.min(s.end, segments[i + 1].start) : s.end;
    return [s.start, Math.max(end, s.start)];
  });
  segments.forEach((s, i) => {
    const p = s.probabilities[s.label];
    const el = document.createElement("div");
    el.className = "seg";
    el.style.left = (100 * spans[i][0] / duration) + "%";
    el.style.width = Math.max(0.2, 100 * (spans[i][1] - spans[i][0]) / duration) + "%";
    el.style.background = colorOf(s.label);
    el.style.opacity = (0.35 + 0.65 * p).toFixed(2);
    el.dataset.label = s.label;
    el.title = `${s.start.toFixed(2)}–${s.end.toFixed(2)} s: ${s.label} (${fmtPct(p)})`;
    tl.appendChild(el);
    seen.add(s.label);
  });
  // One caption per run of segments with the same label, where it fits.
  const px = tl.clientWidth / Math.max(duration, 1e-9);
  for (let i = 0; i < segments.length;) {
    let j = i;
    while (j + 1 < segments.length && segments[j + 1].label === segments[i].label) j++;
    const start = spans[i][0], end = spans[j][1];
    const text = segments[i].label;
    if ((end - start) * px > 7.2 * text.length + 12) {
      const cap = document.createElement("div");
      cap.className = "seg-caption";
      cap.style.left = (100 * start / duration) + "%";
      cap.style.width = (100 * (end - start) / duration) + "%";
      cap.textContent = text;
      tl.appendChild(cap);
    }
    i = j + 1;
  }
  const legend = $("legend");
  legend.replaceChildren();
  labels.filter((l) => seen.has(l)).forEach((l) => {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = colorOf(l);
    item.append(sw, document.createTextNode(l));
    legend.appendChild(item);
  });
}

function renderTable(segments) {
  const body = $("segments").querySelector("tbody");
  body.replaceChildren();
  segments.forEach((s) => {
    const tr = document.createElement("tr");
    [s.start.toFixed(2) + " s", s.end.toFixed(2) + " s", s.label, fmtPct(s.probabilities[s.label])].forEach((v) => {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
}

function setup() {
  const drop = $("drop");
  const input = $("file");
  input.addEventListener("change", () => analyse(input.files[0]));
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => analyse(e.dataTransfer.files[0]));
  // Dropping a file anywhere else on the page must not navigate away from it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  window.addEventListener("resize", () => {
    if (lastResult) renderSpectrogram(lastResult.spectrogram, lastResult.duration_s);
  });
  loadModel();
}

setup();
