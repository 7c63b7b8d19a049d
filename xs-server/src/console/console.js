// xs console: a login that turns the token into a session cookie, then the live stream
// (SSE, with a topic filter), frame detail and content preview, topics, processors and a
// chart of appends per second — all through this server's read-only /api/, for the daemon's
// store or, picked in the header, one of the stores it mounted (/api/stores/NAME/).
"use strict";

const $ = (sel) => document.querySelector(sel);
const MAX_ROWS = 500;
const HISTORY = 200;
const PREVIEW_BYTES = 1 << 20;
const HEX_BYTES = 4096;
const RATE_SECONDS = 60;

let api = "/api";       // the store shown: "/api" or "/api/stores/NAME"
let stream = null;      // EventSource of the frame list
let rateSource = null;  // EventSource counting every append
let lastId = null;
let rows = 0;
let selected = null;
let timers = [];
const rate = new Array(RATE_SECONDS).fill(0);
let rateSecond = Math.floor(Date.now() / 1000);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// --- login -------------------------------------------------------------------------------

async function login(token) {
  const r = await fetch("/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token }),
  });
  if (r.status === 204) return true;
  let msg = `login failed (${r.status})`;
  try { msg = (await r.json()).error || msg; } catch (_) {}
  $("#login-error").textContent = msg;
  return false;
}

function showLogin() {
  stop();
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#token").focus();
}

async function boot() {
  // A token in the fragment (never sent to the server): /#token=...
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", location.pathname);
    if (await login(decodeURIComponent(m[1]))) return start();
  }
  const r = await fetch("/api/version");
  if (r.ok) return start((await r.json()).version);
  showLogin();
}

$("#login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const token = $("#token").value.trim();
  $("#token").value = "";
  if (token && (await login(token))) start();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST" });
  showLogin();
});

// --- the app -----------------------------------------------------------------------------

async function start(version) {
  $("#login").hidden = true;
  $("#login-error").textContent = "";
  $("#app").hidden = false;
  if (!version) {
    const r = await fetch("/api/version");
    if (r.status === 401) return showLogin();
    version = (await r.json()).version;
  }
  $("#version").textContent = `xs ${version}`;
  openStream();
  openRate();
  refresh();
  drawRate();
  timers.push(setInterval(refresh, 2000), setInterval(drawRate, 1000));
}

function stop() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (stream) stream.close();
  if (rateSource) rateSource.close();
  stream = rateSource = null;
}

function setStatus(text, cls) {
  const s = $("#status");
  s.textContent = text;
  s.className = `status ${cls || ""}`;
}

async function refresh() {
  await Promise.all([refreshTopics(), refreshPs(), refreshStores()]).catch(() => {});
}

// --- stores ------------------------------------------------------------------------------

// The stores the daemon mounted (`xs store add`): a picker shown once there is one.
async function refreshStores() {
  const list = await ndjson("/api/stores");
  const names = list.filter((s) => s.state === "active").map((s) => s.name);
  const pick = $("#store");
  const shown = [...pick.options].map((o) => o.value).slice(1);
  if (names.join("\n") !== shown.join("\n")) {
    const current = pick.value;
    pick.replaceChildren(el("option", { value: "" }, "this store"),
      ...names.map((n) => el("option", { value: n }, n)));
    pick.value = names.includes(current) ? current : "";
    if (pick.value !== current) storeChanged();
  }
  pick.hidden = names.length === 0;
}

function storeChanged() {
  const name = $("#store").value;
  api = name ? `/api/stores/${encodeURIComponent(name)}` : "/api";
  clearRows();
  rate.fill(0);
  openStream();
  openRate();
  refreshTopics().catch(() => {});
  refreshPs().catch(() => {});
}
$("#store").addEventListener("change", storeChanged);

// Runs `f` once within 300 ms however often it is asked for (a burst of frames: one refresh).
const pending = new Set();
function soon(f) {
  if (pending.has(f)) return;
  pending.add(f);
  setTimeout(() => { pending.delete(f); f().catch(() => {}); }, 300);
}

async function ndjson(path) {
  const r = await fetch(path);
  if (r.status === 401) { showLogin(); throw new Error("logged out"); }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  const text = await r.text();
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

// --- stream ------------------------------------------------------------------------------

function filterValue() {
  return $("#filter").value.trim();
}

async function openStream(after) {
  if (stream) stream.close();
  const topic = filterValue();
  const q = new URLSearchParams();
  if (topic) q.set("topic", topic);
  // Check the filter first: an EventSource cannot show why the server refused it.
  if (topic && !after) {
    const r = await fetch(`${api}/?${q}&last=1`);
    if (r.status === 400) {
      $("#filter-error").textContent = (await r.json()).error;
      setStatus("bad filter", "down");
      return;
    }
  }
  $("#filter-error").textContent = "";
  q.set("with-timestamp", "true");
  if (after) q.set("after", after); else q.set("last", HISTORY);
  q.set("follow", "true");
  setStatus(after ? "reconnecting" : "connecting");
  const es = new EventSource(`${api}/?${q}`);
  stream = es;
  let live = Boolean(after);
  es.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.topic === "xs.threshold") { live = true; setStatus("live", "live"); return; }
    if (f.topic === "xs.pulse") return;
    lastId = f.id;
    addRow(f, live);
    if (live) soon(refreshTopics);
  };
  es.onerror = () => {
    if (stream !== es) return;
    es.close();
    setStatus("offline", "down");
    // Resume after the last frame seen, so nothing is lost or shown twice.
    setTimeout(() => { if (stream === es) openStream(lastId || undefined); }, 1000);
  };
}

function clearRows() {
  $("#frames tbody").replaceChildren();
  rows = 0;
  lastId = null;
  $("#count").textContent = "";
}

let filterTimer = null;
let filterShown = "";
function filterChanged() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    if (filterValue() === filterShown) return;
    filterShown = filterValue();
    clearRows();
    openStream();
  }, 250);
}
$("#filter").addEventListener("input", filterChanged);
$("#filter").addEventListener("change", filterChanged);

function time(f) {
  const t = f.timestamp ? new Date(f.timestamp) : null;
  return t ? t.toLocaleTimeString([], { hour12: false }) + "." + String(t.getMilliseconds()).padStart(3, "0") : "";
}

function addRow(f, fresh) {
  const tr = el("tr", { "data-id": f.id, "data-topic": f.topic, class: fresh ? "fresh" : "" },
    el("td", {}, time(f)),
    el("td", { title: f.topic }, f.topic),
    el("td", { title: f.id }, f.id),
    el("td", { title: f.meta ? JSON.stringify(f.meta) : "" }, f.meta ? JSON.stringify(f.meta) : ""));
  tr.addEventListener("click", () => showFrame(f, tr));
  const body = $("#frames tbody");
  body.prepend(tr);
  rows++;
  while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  $("#count").textContent = `${rows} frame${rows === 1 ? "" : "s"}`;
}

// --- frame detail and content preview ----------------------------------------------------

async function showFrame(f, tr) {
  if (selected) selected.classList.remove("selected");
  selected = tr;
  tr.classList.add("selected");
  $("#detail-empty").hidden = true;
  $("#frame-json").textContent = JSON.stringify(f, null, 2);
  $("#preview").replaceChildren();
  $("#content-title").hidden = !f.hash;
  $("#content-kind").textContent = "";
  const r = await fetch(`${api}/${encodeURIComponent(f.id)}?with-timestamp`);
  if (r.ok) $("#frame-json").textContent = JSON.stringify(await r.json(), null, 2);
  else if (r.status === 404) $("#frame-json").textContent += "\n\n(not stored: ephemeral, expired or removed)";
  if (f.hash) preview(f.hash).catch((e) => { $("#preview").textContent = `cannot load the content: ${e}`; });
}

async function readUpTo(resp, max) {
  const reader = resp.body.getReader();
  const chunks = [];
  let n = 0, truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
    if (n >= max) { truncated = true; reader.cancel(); break; }
  }
  const out = new Uint8Array(Math.min(n, max));
  let off = 0;
  for (const c of chunks) {
    const part = c.subarray(0, out.length - off);
    out.set(part, off);
    off += part.length;
    if (off >= out.length) break;
  }
  return { bytes: out, truncated };
}

function imageType(b) {
  const starts = (...sig) => sig.every((x, i) => b[i] === x);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
  if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
  if (starts(0x47, 0x49, 0x46, 0x38)) return "image/gif";
  if (starts(0x52, 0x49, 0x46, 0x46) && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return "image/webp";
  return null;
}

function asText(b) {
  try {
    const s = new TextDecoder("utf-8", { fatal: true }).decode(b);
    return /[\x00-\x08\x0e-\x1f]/.test(s) ? null : s;
  } catch (_) {
    return null;
  }
}

function hexDump(b) {
  const lines = [];
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = Array.from(row, (x) => x.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(row, (x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n");
}

async function preview(hash) {
  const r = await fetch(`${api}/cas/${encodeURIComponent(hash)}`);
  if (!r.ok) {
    $("#preview").textContent = `content unavailable (${r.status})`;
    return;
  }
  const { bytes, truncated } = await readUpTo(r, PREVIEW_BYTES);
  const size = `${bytes.length}${truncated ? "+" : ""} bytes`;
  const kind = (k) => { $("#content-kind").textContent = `${k}, ${size}${truncated ? " (first MiB)" : ""}`; };
  const img = imageType(bytes);
  if (img && !truncated) {
    kind(img);
    const url = URL.createObjectURL(new Blob([bytes], { type: img }));
    const image = el("img", { src: url, alt: hash });
    image.onload = () => URL.revokeObjectURL(url);
    $("#preview").replaceChildren(image);
    return;
  }
  const text = asText(bytes);
  if (text !== null) {
    let shown = text, k = "text";
    try {
      if (!truncated && text.trim()) { shown = JSON.stringify(JSON.parse(text), null, 2); k = "JSON"; }
    } catch (_) {}
    kind(k);
    $("#preview").replaceChildren(el("pre", { id: "content-text" }, shown));
    return;
  }
  kind("binary");
  const dump = hexDump(bytes.subarray(0, HEX_BYTES)) + (bytes.length > HEX_BYTES ? "\n…" : "");
  $("#preview").replaceChildren(el("pre", { id: "content-hex" }, dump));
}

// --- topics ------------------------------------------------------------------------------

async function refreshTopics() {
  const list = await ndjson(`${api}/topics`);
  const root = { children: new Map(), count: 0 };
  let total = 0;
  for (const t of list) {
    total += t.count;
    let node = root;
    const parts = t.topic.split(".");
    parts.forEach((p, i) => {
      if (!node.children.has(p)) node.children.set(p, { children: new Map(), count: 0, own: 0, path: parts.slice(0, i + 1).join(".") });
      node = node.children.get(p);
      node.count += t.count;
    });
    node.own += t.count;
  }
  const render = (node) => {
    const ul = el("ul");
    for (const [name, child] of [...node.children.entries()].sort()) {
      const label = el("span", { "data-topic": child.path, title: child.children.size ? `${child.path}, ${child.path}.*` : child.path }, name);
      label.addEventListener("click", () => {
        $("#filter").value = child.children.size ? (child.own ? `${child.path},${child.path}.*` : `${child.path}.*`) : child.path;
        filterShown = filterValue();
        clearRows();
        openStream();
      });
      const li = el("li", {}, label, el("span", { class: "count" }, String(child.count)));
      if (child.children.size) li.append(render(child));
      ul.append(li);
    }
    return ul;
  };
  const tree = render(root);
  tree.id = "topics";
  tree.className = "tree";
  $("#topics").replaceWith(tree);
  $("#topic-total").textContent = `${total} frames`;
}

// --- processors --------------------------------------------------------------------------

async function refreshPs() {
  const list = await ndjson(`${api}/ps`);
  const body = $("#ps tbody");
  body.replaceChildren(...list.map((p) =>
    el("tr", { title: p.last_error || "" },
      el("td", {}, p.kind),
      el("td", {}, p.name),
      el("td", { class: `state-${p.state}` }, p.state),
      el("td", {}, p.since ? String(p.since).slice(0, 19).replace("T", " ") : ""))));
  $("#ps-empty").hidden = list.length > 0;
}

// --- appends per second ------------------------------------------------------------------

function tickRate() {
  const now = Math.floor(Date.now() / 1000);
  while (rateSecond < now) {
    rate.shift();
    rate.push(0);
    rateSecond++;
  }
}

function openRate() {
  if (rateSource) rateSource.close();
  const es = new EventSource(`${api}/?new=true&follow=true`);
  rateSource = es;
  es.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.topic === "xs.pulse" || f.topic === "xs.threshold") return;
    tickRate();
    rate[RATE_SECONDS - 1]++;
  };
  es.onerror = () => {
    if (rateSource !== es) return;
    es.close();
    setTimeout(() => { if (rateSource === es) openRate(); }, 1000);
  };
}

function drawRate() {
  tickRate();
  const c = $("#rate");
  const ctx = c.getContext("2d");
  const w = c.width, h = c.height, pad = 16;
  const max = Math.max(1, ...rate);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#6a6f75";
  ctx.font = "10px sans-serif";
  ctx.fillText(`${max}/s`, 2, 10);
  ctx.fillText(`-${RATE_SECONDS}s`, 2, h - 3);
  ctx.fillText("now", w - 22, h - 3);
  const bw = (w - 4) / RATE_SECONDS;
  ctx.fillStyle = "#2764c5";
  rate.forEach((v, i) => {
    const bh = (v / max) * (h - 2 * pad);
    ctx.fillRect(2 + i * bw, h - pad - bh, Math.max(1, bw - 1), bh);
  });
  ctx.strokeStyle = "#dde0e3";
  ctx.beginPath();
  ctx.moveTo(0, h - pad + 0.5);
  ctx.lineTo(w, h - pad + 0.5);
  ctx.stroke();
  // The second just finished (the current one is still counting).
  $("#rate-now").textContent = `${rate[RATE_SECONDS - 2]}/s`;
  c.dataset.total = String(rate.reduce((a, b) => a + b, 0));
}

boot();
