// aisle kiosk screen: plain JavaScript over the kiosk's own API (same origin, no
// network beyond it). The service does all the work: it identifies products, lays
// out and steadies the cards (the same rules as `aisle ar`), transcribes, answers and
// formats every number; this page draws what it is sent.
"use strict";

const $ = (id) => document.getElementById(id);
const el = {
  app: $("app"), status: $("status"), video: $("video"), cards: $("cards"),
  cameraNote: $("camera-note"), notice: $("privacy-notice"), consent: $("consent-accept"),
  start: $("start"), transcript: $("transcript"), answer: $("answer"),
  answerText: $("answer-text"), answerProducts: $("answer-products"), form: $("ask-form"),
  input: $("ask-input"), mic: $("mic-button"), micLabel: $("mic-label"),
  staff: $("call-staff"), startOver: $("start-over"), banner: $("banner"),
  mute: $("mute"),
};

// What a card tap asks (the same words as a tap in `aisle ar`).
const TAP_QUESTION = "How much is this, do you have it in stock, and where is it?";
const IDLE_ANSWER = el.answerText.textContent;

const state = {
  kiosk: null,          // GET /v1/kiosk
  session: null,        // the conversation, from the last answer
  stream: newId(),      // this screen's camera stream
  started: false,       // past the attract screen (consent given when asked)
  cameraOn: false,
  cards: [],            // the cards now shown: [{sku, ...}]
  down: false,          // the service answered 503 or not at all
  voice: null,          // the question being heard (from start until the answer)
  run: null,            // the service's voice run (until run-end, spoken answer included)
  heldMic: null,        // the microphone kept open while the answer is spoken (barge-in)
  muted: false,         // spoken answers off (the "Sound" toggle)
  idleTimer: null,
};

// Figures for tests and `aisle bench ui` (Performance API marks and these).
window.aisle = { state, metrics: { voice: [], camera: [] } };

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// ---------- service health and errors ----------

function banner(text, kind) {
  if (!text) { el.banner.hidden = true; el.banner.textContent = ""; return; }
  el.banner.textContent = text;
  el.banner.className = "banner" + (kind ? " " + kind : "");
  el.banner.hidden = false;
}

function serviceDown(why) {
  if (!state.down) {
    state.down = true;
    banner(why || "The assistant is restarting. It will be back in a moment.");
    waitForService();
  }
}

async function waitForService() {
  for (;;) {
    await sleep(1000);
    try {
      const r = await fetch("/health", { cache: "no-store" });
      if (r.ok) break;
    } catch (_) { /* still down */ }
  }
  state.down = false;
  banner("");
  status("Ready.");
  if (state.started && !state.cameraOn) startCamera();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function status(text) { el.status.textContent = text; }

// A failed API call, said plainly; 503 and network failures start the recovery.
async function apiError(r) {
  let msg = `The assistant could not answer (${r.status}).`;
  try {
    const j = await r.json();
    if (j && j.error && j.error.message) msg = j.error.message;
  } catch (_) { /* not JSON */ }
  if (r.status === 503) serviceDown("The assistant is busy or restarting. It will be back in a moment.");
  return msg;
}

async function api(path, opts) {
  let r;
  try {
    r = await fetch(path, opts);
  } catch (_) {
    serviceDown("The assistant cannot be reached. It will be back in a moment.");
    throw new Error("The assistant cannot be reached right now.");
  }
  if (!r.ok) throw Object.assign(new Error(await apiError(r)), { status: r.status });
  return r.status === 204 ? null : r.json();
}

// ---------- attract screen, consent, inactivity ----------

async function loadKiosk() {
  for (;;) {
    try {
      state.kiosk = await api("/v1/kiosk");
      break;
    } catch (_) { await sleep(1000); }
  }
  el.notice.replaceChildren(...state.kiosk.privacy.notice.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
  if (state.kiosk.privacy.consent_prompt) {
    el.consent.hidden = false;
  } else {
    el.start.hidden = false;
    begin(); // no consent asked: the camera opens at once
  }
  status(state.kiosk.ready ? "Ready." : "Starting up…");
  performance.mark("interactive");
}

function begin() {
  if (state.started) return;
  state.started = true;
  el.app.dataset.phase = "active";
  startCamera();
  touch();
}

// Any use postpones the reset; the reset erases the conversation.
function touch() {
  clearTimeout(state.idleTimer);
  const s = (state.kiosk && state.kiosk.session_timeout_s) || 120;
  state.idleTimer = setTimeout(() => startOver(true), s * 1000);
}

async function startOver(idle) {
  const old = state.session;
  state.session = null;
  hush();
  stopVoice();
  el.transcript.textContent = "";
  el.answerText.textContent = IDLE_ANSWER;
  el.answerProducts.replaceChildren();
  el.input.value = "";
  if (old) { try { await api(`/v1/sessions/${encodeURIComponent(old)}`, { method: "DELETE" }); } catch (_) { /* expired */ } }
  status(idle ? "Started over after a pause." : "Started over.");
  if (idle && state.kiosk && state.kiosk.privacy.consent_prompt) {
    // Back to the attract screen: the next shopper consents again.
    state.started = false;
    stopCamera();
    el.app.dataset.phase = "attract";
  } else {
    touch();
  }
}

// ---------- asking and answering ----------

function productInView() {
  return state.cards.length ? state.cards[0].sku : null;
}

async function ask(text, sku) {
  text = text.trim();
  if (!text) return;
  touch();
  // A typed or touched question ends the spoken answer and listening over it.
  hush();
  const f = state.voice;
  if (f && f.mode === "follow" && !f.heard) stopVoice();
  status("Thinking…");
  try {
    const body = { text };
    if (state.session) body.session = state.session;
    const s = sku || productInView();
    if (s) body.sku = s;
    const a = await api("/v1/ask", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    await showAnswer(a);
    status("Ready.");
  } catch (e) {
    showProblem(e.message);
  }
}

function showProblem(text) {
  el.answerText.textContent = text;
  el.answerProducts.replaceChildren();
  status("");
}

// The answer card: the answer's words, then each product it is about as the service
// formats it (name, price, stock, aisle, offer).
async function showAnswer(a) {
  state.session = a.session || state.session;
  el.answerText.textContent = a.answer;
  const skus = (a.products || []).slice(0, 3);
  const infos = await Promise.all(skus.map((s) =>
    api(`/v1/products/${encodeURIComponent(s)}`).catch(() => null)));
  el.answerProducts.replaceChildren(...infos.filter((i) => i && i.display).map(factCard));
  if (a.staff_requested) status("A member of staff is on the way.");
  await painted();
}

function factCard(info) {
  const d = info.display;
  const li = document.createElement("li");
  li.className = "fact-card";
  li.dataset.sku = d.sku;
  const name = span("name", d.name);
  const price = span("price", d.price);
  const stock = span("stock-badge " + d.stock.level, stockText(d.stock));
  li.append(name, price, stock);
  if (d.aisle) li.append(span("where", d.aisle));
  if (d.promotion) li.append(span("promo", d.promotion));
  return li;
}

function stockText(s) {
  if (s.level === "in_stock") return `In stock (${s.count})`;
  if (s.level === "low") return `Only ${s.count} left`;
  return "Out of stock";
}

function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

// Resolves after the next frame is painted.
const painted = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));

el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const q = el.input.value;
  el.input.value = "";
  el.transcript.textContent = "";
  begin();
  ask(q);
});

el.consent.addEventListener("click", begin);
el.start.addEventListener("click", begin);
el.startOver.addEventListener("click", () => startOver(false));
el.staff.addEventListener("click", async () => {
  touch();
  try {
    await api("/v1/call-staff", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(state.session ? { session: state.session } : {}) });
    status("A member of staff is on the way.");
    el.answerText.textContent = "A member of staff has been called and is on the way.";
    el.answerProducts.replaceChildren();
  } catch (e) { showProblem(e.message); }
});
document.addEventListener("pointerdown", touch, { passive: true });
document.addEventListener("keydown", touch, { passive: true });

// ---------- camera: frames to the service, cards over the video ----------

let camStream = null;

async function startCamera() {
  if (state.cameraOn) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    el.cameraNote.textContent = "This screen has no camera access: type or speak your question.";
    return;
  }
  try {
    camStream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } }, audio: false,
    });
  } catch (e) {
    el.cameraNote.textContent = cameraProblem(e);
    return;
  }
  el.video.srcObject = camStream;
  state.cameraOn = true;
  el.cameraNote.textContent = "";
  try { await el.video.play(); } catch (_) { /* autoplay of a muted stream is allowed */ }
  cameraLoop();
}

function cameraProblem(e) {
  if (e && (e.name === "NotAllowedError" || e.name === "SecurityError"))
    return "The camera is turned off for this screen. You can still type or speak your question.";
  if (e && (e.name === "NotFoundError" || e.name === "OverconstrainedError"))
    return "No camera was found. You can still type or speak your question.";
  return "The camera could not start. You can still type or speak your question.";
}

function stopCamera() {
  state.cameraOn = false;
  if (camStream) camStream.getTracks().forEach((t) => t.stop());
  camStream = null;
  el.video.srcObject = null;
  drawCards(null);
  fetch(`/v1/camera/${state.stream}`, { method: "DELETE" }).catch(() => {});
  state.stream = newId();
}

// The displayed video's box inside the stage (object-fit: contain).
function videoBox() {
  const sw = el.video.clientWidth, sh = el.video.clientHeight;
  const vw = el.video.videoWidth, vh = el.video.videoHeight;
  if (!vw || !vh || !sw || !sh) return null;
  const k = Math.min(sw / vw, sh / vh);
  const w = vw * k, h = vh * k;
  return { x: (sw - w) / 2, y: (sh - h) / 2, w, h };
}

const canvas = document.createElement("canvas");

// One frame in flight at a time: the next is sent when the last is answered, so the
// cards follow at whatever pace the kiosk keeps.
// At most this many frames a second go to the service (its follow passes are cheap,
// identification paces itself), and none while a spoken question is being heard and
// answered: the kiosk's cores go to the voice then.
const CAMERA_FPS = 8;

async function cameraLoop() {
  let last = 0;
  while (state.cameraOn) {
    if (state.down || document.hidden || el.video.readyState < 2 || state.voice) { await sleep(100); continue; }
    const wait = last + 1000 / CAMERA_FPS - performance.now();
    if (wait > 0) { await sleep(wait); continue; }
    last = performance.now();
    const box = videoBox();
    if (!box) { await sleep(100); continue; }
    const vw = el.video.videoWidth, vh = el.video.videoHeight;
    const k = Math.min(1, 640 / vw);
    canvas.width = Math.round(vw * k);
    canvas.height = Math.round(vh * k);
    canvas.getContext("2d").drawImage(el.video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    if (!blob || !state.cameraOn) continue;
    const sent = performance.now();
    const url = `/v1/camera/${state.stream}?w=${box.w.toFixed(1)}&h=${box.h.toFixed(1)}`;
    let r;
    try {
      r = await fetch(url, { method: "POST", headers: { "Content-Type": "image/jpeg" }, body: blob });
    } catch (_) {
      serviceDown("The assistant cannot be reached. It will be back in a moment.");
      continue;
    }
    if (!r.ok) {
      const msg = await apiError(r);
      if (r.status === 422 || r.status === 400) el.cameraNote.textContent = "That camera picture could not be read. Hold the product still.";
      else if (r.status !== 503) el.cameraNote.textContent = msg;
      await sleep(500);
      continue;
    }
    const f = await r.json();
    if (!state.cameraOn) break;
    drawCards(f.overlay, box);
    el.cameraNote.textContent = f.overlay.message || "";
    await painted();
    const m = window.aisle.metrics.camera;
    m.push({ ms: performance.now() - sent, pass: f.pass, cards: f.overlay.cards.length });
    if (m.length > 1000) m.shift();
  }
}

// Cards as the service laid them out, in the displayed video's space. Each is a
// button: a tap asks about its product.
function drawCards(overlay, box) {
  if (!overlay) { el.cards.replaceChildren(); state.cards = []; return; }
  Object.assign(el.cards.style, { left: `${box.x}px`, top: `${box.y}px`, width: `${box.w}px`, height: `${box.h}px` });
  const keep = new Map();
  for (const n of el.cards.querySelectorAll(".card")) keep.set(n.dataset.sku, n);
  const nodes = [];
  for (const c of overlay.cards) {
    const pb = document.createElement("div");
    pb.className = "product-box";
    place(pb, c.product);
    let b = keep.get(c.sku);
    if (!b) {
      b = document.createElement("button");
      b.type = "button";
      b.className = "card";
      b.setAttribute("data-testid", "product-card");
      b.dataset.sku = c.sku;
      b.addEventListener("click", () => { begin(); ask(TAP_QUESTION, b.dataset.sku); });
    }
    place(b, c.rect);
    b.replaceChildren();
    for (const l of c.lines) {
      const s = span("line " + l.role, l.text);
      Object.assign(s.style, {
        left: `${l.x - c.rect.x}px`, top: `${l.y - c.rect.y}px`, fontSize: `${l.px}px`,
        maxWidth: `${c.rect.w - (l.x - c.rect.x) - 4}px`,
      });
      b.append(s);
    }
    const badge = span("badge " + c.stock.level, "");
    place(badge, { x: c.badge.x - c.rect.x, y: c.badge.y - c.rect.y, w: c.badge.w, h: c.badge.h });
    b.append(badge);
    const name = (c.lines.find((l) => l.role === "name") || {}).text || c.sku;
    const price = (c.lines.find((l) => l.role === "price") || {}).text || "";
    b.setAttribute("aria-label", `${name} ${price}: ask about it`);
    nodes.push(pb, b);
  }
  el.cards.replaceChildren(...nodes);
  state.cards = overlay.cards.map((c) => ({ sku: c.sku }));
}

function place(node, r) {
  Object.assign(node.style, { left: `${r.x}px`, top: `${r.y}px`, width: `${r.w}px`, height: `${r.h}px` });
}

// ---------- voice: 16 kHz PCM over the /v1/voice WebSocket ----------

let ws = null;
let wsReady = null;
let voiceEvents = Promise.resolve();

function voiceSocket() {
  if (ws && ws.readyState === WebSocket.OPEN) return Promise.resolve(ws);
  if (wsReady) return wsReady;
  wsReady = new Promise((resolve, reject) => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const s = new WebSocket(`${proto}//${location.host}/v1/voice`);
    s.binaryType = "arraybuffer";
    s.onopen = () => { ws = s; wsReady = null; resolve(s); };
    s.onerror = () => { wsReady = null; reject(new Error("The voice service cannot be reached.")); };
    s.onclose = () => {
      if (ws === s) ws = null;
      if (state.run) { state.run.close(); state.run = null; }
      if (state.voice) { voiceFailed("The assistant stopped listening: it is restarting."); serviceDown(); }
    };
    // Events are handled one after another (an answer is painted before the run ends).
    s.onmessage = (m) => {
      if (m.data instanceof ArrayBuffer) { playSpeech(m.data); return; }
      let e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      voiceEvents = voiceEvents.then(() => onVoiceEvent(e)).catch(() => {});
    };
  });
  return wsReady;
}

// A tap listens hands-free (the service's VAD ends the question); pressing and
// holding is push-to-talk (the release ends it).
let pressTimer = null, held = false;
el.mic.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  held = false;
  // The button keeps the pointer until it is released, wherever the finger slides
  // (and however its label reflows), so the release always ends the question.
  try { el.mic.setPointerCapture(e.pointerId); } catch (_) { /* not capturable */ }
  // Pressing the button while the answer is spoken stops it at once (barge-in).
  hush();
  pressTimer = setTimeout(() => {
    held = true;
    if (!listening()) startVoice("push");
  }, 350);
});
const release = () => {
  clearTimeout(pressTimer);
  if (held && state.voice) endVoice();
};
el.mic.addEventListener("pointerup", release);
el.mic.addEventListener("pointercancel", release);
el.mic.addEventListener("click", () => {
  if (held) { held = false; return; }
  const f = state.voice;
  // Listening over the answer for a barge-in: a tap makes it a question like any other.
  if (f && f.mode === "follow" && !f.heard && !f.ended) {
    f.mode = "tap";
    clearInterval(f.followTimer);
    setMic(true, "Listening… tap to stop");
    touch();
    return;
  }
  if (listening()) endVoice();
  else startVoice("tap");
});

// A question is being heard (not yet answered).
function listening() { return !!state.voice && !state.voice.ended; }

async function startVoice(mode) {
  begin();
  // Listening over the answer is not the shopper's doing: it does not postpone the reset.
  if (mode !== "follow") touch();
  if (state.down) return;
  let closed;
  const v = { mode, origin: mode, ended: false, t0: performance.now(), marks: {}, closed: new Promise((r) => { closed = r; }) };
  v.close = closed;
  state.voice = v;
  setMic(true, mode === "push" ? "Listening: release to send" : mode === "follow" ? "Speak to interrupt" : "Listening… tap to stop");
  if (mode !== "follow") el.transcript.textContent = "";
  let mic;
  try {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw Object.assign(new Error(), { name: "NotFoundError" });
    // The microphone kept open over the spoken answer, else a new one.
    mic = takeHeldMic();
    if (!mic) {
      mic = await navigator.mediaDevices.getUserMedia({
        // Whisper hears better without the browser's noise suppression and gain
        // control; the echo canceller stays on, so that listening over the
        // kiosk's own voice does not hear the answer.
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
        video: false,
      });
    }
  } catch (e) {
    if (mode === "follow") { stopVoice(); return; }
    voiceFailed(micProblem(e));
    return;
  }
  v.mic = mic;
  // Released (push-to-talk) or cancelled before anything was sent: nothing to hear.
  const gone = () => {
    if (state.voice === v && !v.ended) return false;
    releaseMic(v);
    if (state.voice === v) { state.voice = null; setMic(false, "Tap to speak"); status("Hold the button while you speak, or tap it once."); }
    return true;
  };
  try {
    const sock = await voiceSocket();
    const { ctx, node } = await audioGraph();
    // The last run is still speaking its answer: it was hushed; wait for its end.
    if (state.run && state.run !== v) await Promise.race([state.run.closed, sleep(3000)]);
    if (gone()) return;
    const src = ctx.createMediaStreamSource(mic);
    v.src = src;
    state.run = v;
    v.speak = !state.muted;
    const start = { type: "start", sample_rate: ctx.sampleRate, speak: v.speak };
    if (state.session) start.session = state.session;
    const sku = productInView();
    if (sku) start.sku = sku;
    sock.send(JSON.stringify(start));
    node.port.onmessage = (m) => {
      if (state.voice !== v || v.ended) return;
      const now = performance.now();
      // The last chunk with voice in it (peak above about -30 dBFS): where the
      // shopper stopped speaking, as the page heard it.
      const pcm = new Int16Array(m.data);
      let peak = 0;
      for (let i = 0; i < pcm.length; i++) { const x = Math.abs(pcm[i]); if (x > peak) peak = x; }
      if (peak > 1000) v.marks.lastVoice = now;
      sock.send(m.data);
    };
    src.connect(node);
    if (ctx.state !== "running") await ctx.resume();
    if (mode === "follow") {
      // Heard nothing by FOLLOW_MS after the answer went quiet: stop listening.
      let quiet = null;
      v.followTimer = setInterval(() => {
        if (state.voice !== v || v.heard || v.mode !== "follow") { clearInterval(v.followTimer); return; }
        if (speaking()) { quiet = null; return; }
        quiet = quiet || performance.now();
        if (performance.now() - quiet > FOLLOW_MS) { clearInterval(v.followTimer); stopVoice(); status("Ready."); }
      }, 100);
    }
  } catch (e) {
    voiceFailed(e.message || "The microphone could not start.");
  }
}

// One audio context and PCM node for the page's life (loading a worklet module per
// question is slow and can fail); each question connects its microphone to them.
let audio = null;
async function audioGraph() {
  if (audio) return audio;
  let ctx;
  try { ctx = new AudioContext({ sampleRate: 16000 }); } catch (_) { ctx = new AudioContext(); }
  await ctx.audioWorklet.addModule("/ui/pcm-worklet.js");
  const node = new AudioWorkletNode(ctx, "pcm16", { numberOfInputs: 1, numberOfOutputs: 0 });
  audio = { ctx, node };
  return audio;
}

function micProblem(e) {
  if (e && (e.name === "NotAllowedError" || e.name === "SecurityError"))
    return "The microphone is turned off for this screen. Please type your question instead.";
  if (e && e.name === "NotFoundError")
    return "No microphone was found. Please type your question instead.";
  return "The microphone could not start. Please type your question instead.";
}

function endVoice() {
  const v = state.voice;
  if (!v || v.ended) return;
  v.ended = true;
  releaseMic(v, v.speak);
  setMic(false, "Tap to speak");
  status("Thinking…");
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
}

function stopVoice() {
  dropHeldMic();
  const v = state.voice;
  if (!v) return;
  clearInterval(v.followTimer);
  if (!v.ended && state.run === v && ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "cancel" }));
  releaseMic(v);
  state.voice = null;
  setMic(false, "Tap to speak");
}

function voiceFailed(text) {
  stopVoice();
  showProblem(text);
}

// The microphone is open only while a question is being heard and while its answer
// is spoken (to hear the shopper speak over it); `keep` holds it for that.
function releaseMic(v, keep) {
  if (v.src) v.src.disconnect();
  if (v.mic) {
    if (keep) { dropHeldMic(); state.heldMic = v.mic; } else v.mic.getTracks().forEach((t) => t.stop());
  }
  v.src = v.mic = null;
  // Nothing flows while no question is heard: the context sleeps.
  if (audio) audio.ctx.suspend().catch(() => {});
}

function takeHeldMic() {
  const m = state.heldMic;
  state.heldMic = null;
  if (m && m.getAudioTracks().some((t) => t.readyState === "live")) return m;
  if (m) m.getTracks().forEach((t) => t.stop());
  return null;
}

function dropHeldMic() {
  if (state.heldMic) state.heldMic.getTracks().forEach((t) => t.stop());
  state.heldMic = null;
}

function setMic(on, label) {
  el.mic.setAttribute("aria-pressed", on ? "true" : "false");
  el.micLabel.textContent = label;
}

async function onVoiceEvent(e) {
  const v = state.run;
  if (!v) return;
  const now = performance.now();
  switch (e.type) {
    case "run-start": v.started = true; break;
    case "vad-start":
      v.heard = true;
      // Barge-in: the shopper speaks over the answer; it stops, and what they
      // say is the next question.
      if (speaking()) { v.marks.bargeIn = now; hush(); }
      if (v.mode === "follow") { v.mode = "tap"; touch(); setMic(true, "Listening… tap to stop"); el.transcript.textContent = ""; }
      status("Listening…");
      break;
    case "stt-partial": el.transcript.textContent = e.text; break;
    case "vad-end":
      v.marks.vadEnd = now;
      if (!v.ended) { v.ended = true; releaseMic(v, v.speak); setMic(false, "Tap to speak"); }
      status("Thinking…");
      break;
    case "stt-end": el.transcript.textContent = e.text; break;
    case "intent-end":
      await showAnswer(e.answer);
      v.marks.answerPainted = performance.now();
      status("Ready.");
      break;
    case "tts-start":
      speech.rate = e.sample_rate;
      break;
    case "tts-end":
      v.marks.spoken = { sentences: e.sentences, interrupted: e.interrupted };
      break;
    case "run-end":
      window.aisle.metrics.voice.push({ t0: v.t0, origin: v.origin, ...v.marks, server: e.timings_ms });
      state.run = null;
      v.close();
      if (state.voice === v) { state.voice = null; setMic(false, "Tap to speak"); }
      // The answer is still being spoken: listen over it, so the shopper can
      // interrupt by speaking (and ask on without touching the screen).
      if (!state.voice && !state.muted && !v.hushed && speaking() && !state.down) startVoice("follow");
      else if (!state.voice) dropHeldMic();
      break;
    case "error":
      // Refused before it began (the service is busy): no run-end will come.
      if (!v.started) { state.run = null; v.close(); }
      // Listening over the answer is the kiosk's idea: its failures stay quiet.
      if (state.voice === v && v.mode === "follow") { stopVoice(); break; }
      if (state.voice === v) voiceFailed(e.message || "The question could not be heard.");
      break;
    default: break;
  }
}

// ---------- spoken answers: 16-bit PCM sentences from the voice run, played in order ----------

const speech = { ctx: null, rate: 22050, next: 0, playing: [] };
// How long the microphone stays open for a follow-up after the answer has been spoken.
const FOLLOW_MS = 3000;

function playSpeech(buf) {
  const v = state.run;
  if (!v || state.muted || v.hushed) return;
  if (!speech.ctx) {
    try { speech.ctx = new AudioContext(); } catch (_) { return; }
  }
  const ctx = speech.ctx;
  if (ctx.state !== "running") ctx.resume().catch(() => {});
  const pcm = new Int16Array(buf);
  if (!pcm.length) return;
  const b = ctx.createBuffer(1, pcm.length, speech.rate);
  const ch = b.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = b;
  src.connect(ctx.destination);
  // Sentences queue one after another; the first starts at once.
  const at = Math.max(ctx.currentTime + 0.02, speech.next);
  src.start(at);
  speech.next = at + b.duration;
  speech.playing.push(src);
  src.onended = () => { speech.playing = speech.playing.filter((x) => x !== src); };
  if (!v.marks.firstAudio) v.marks.firstAudio = performance.now();
  window.aisle.metrics.spoken = (window.aisle.metrics.spoken || 0) + b.duration;
}

// Barge-in: the spoken answer stops now, and the service stops making the rest.
function hush() {
  for (const src of speech.playing) { try { src.stop(); } catch (_) { /* ended */ } }
  speech.playing = [];
  speech.next = 0;
  const v = state.run;
  if (v && v.ended && !v.hushed) {
    v.hushed = true;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "cancel" }));
  }
}

function speaking() { return speech.playing.length > 0; }
window.aisle.speaking = speaking;

el.mute.addEventListener("click", () => {
  state.muted = !state.muted;
  if (state.muted) {
    hush();
    const f = state.voice;
    if (f && f.mode === "follow" && !f.heard) stopVoice();
  }
  el.mute.setAttribute("aria-pressed", state.muted ? "true" : "false");
  el.mute.textContent = state.muted ? "Sound off" : "Sound on";
});

window.addEventListener("pagehide", () => {
  // Leaving the page ends the conversation and the camera stream.
  if (state.session) fetch(`/v1/sessions/${encodeURIComponent(state.session)}`, { method: "DELETE", keepalive: true }).catch(() => {});
  fetch(`/v1/camera/${state.stream}`, { method: "DELETE", keepalive: true }).catch(() => {});
});

loadKiosk();
