// The voice page: one button starts a WebRTC call with the agent (the microphone goes up,
// the agent's voice comes down); a data channel brings what was heard, what the agent says,
// its tool use and each turn's latency.
//
// Safety rule: text from the server (transcripts, replies, tool results) is only ever put
// into the page with textContent, never as HTML.

import { $, api, el, errorMessage, signIn } from "./common.js";

const GATHER_LIMIT_MS = 3000;   // the offer goes with the candidates found by then (no trickle)

const state = { pc: null, stream: null, sessionId: "", turns: new Map() };

// --- small helpers ------------------------------------------------------------------

function setStatus(name, text) {
  $("status").dataset.state = name;
  $("status").textContent = text;
  const busy = name !== "idle";
  $("talk").textContent = busy ? "Hang up" : "Start talking";
  $("talk").setAttribute("aria-pressed", String(busy));
}

// --- the call -----------------------------------------------------------------------

async function start() {
  $("call-error").textContent = "";
  setStatus("connecting", "Connecting…");
  try {
    const config = await api("/v1/voice/config");
    if (!config.ok) throw new Error(await errorMessage(config));
    const { ice_servers: iceServers } = await config.json();
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const pc = state.pc = new RTCPeerConnection({ iceServers });
    for (const track of state.stream.getAudioTracks()) pc.addTrack(track, state.stream);
    const channel = pc.createDataChannel("events");
    channel.onmessage = (message) => onEvent(JSON.parse(message.data));
    pc.ontrack = (event) => { $("remote").srcObject = event.streams[0] || new MediaStream([event.track]); };
    pc.onconnectionstatechange = () => onConnection(pc);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await api("/v1/voice/offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const answer = await response.json();
    state.sessionId = answer.session_id;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
  } catch (error) {
    stop();
    $("call-error").textContent = error.name === "NotAllowedError"
      ? "The microphone is blocked: allow it for this page and try again."
      : `Could not start the call: ${error.message}`;
  }
}

// The answer side does not trickle, so neither do we: wait for our candidates (bounded).
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_LIMIT_MS);
  });
}

function onConnection(pc) {
  if (pc !== state.pc) return;
  const s = pc.connectionState;
  if (s === "connected") setStatus("live", "Connected: speak whenever you like.");
  else if (s === "failed") { stop(); $("call-error").textContent = "The connection failed (network or firewall)."; }
  else if (s === "disconnected") $("status").textContent = "Connection interrupted: reconnecting…";
}

function stop() {
  const { pc, stream, sessionId } = state;
  state.pc = state.stream = null;
  state.sessionId = "";
  if (sessionId) api(`/v1/voice/${encodeURIComponent(sessionId)}`, { method: "DELETE", keepalive: true }).catch(() => {});
  if (pc) pc.close();
  if (stream) for (const track of stream.getTracks()) track.stop();
  $("remote").srcObject = null;
  $("partial").textContent = "";
  setStatus("idle", "Call ended. Press the button to talk again.");
}

// --- what the pipeline says ---------------------------------------------------------

const HANDLERS = {
  Partial: (e) => { $("partial").textContent = e.text; },
  SpeechStarted: () => {},
  TurnDiscarded: () => { $("partial").textContent = ""; },
  UserTurn: (e) => { $("partial").textContent = ""; turn(e.turn).user.textContent = e.text; },
  Interrupt: () => {},
  AgentSentence: (e) => { turn(e.turn).agent.append(el("span", "sentence", (e.index ? " " : "") + e.text)); },
  ToolActivity: (e) => showTool(turn(e.turn), e),
  AgentTurnDone: (e) => {
    const t = turn(e.turn);
    if (!t.agent.textContent && e.text) t.agent.textContent = e.text;
    for (const [name, ms] of Object.entries(e.timings || {})) t.figures.set(name, ms);
    if (e.interrupted) t.row.classList.add("interrupted");
    showFigures(t);
  },
  Latency: (e) => { const t = turn(e.turn); t.figures.set("first audio", e.time_to_first_audio_ms); showFigures(t); },
  BargeIn: (e) => { const t = turn(e.turn); t.figures.set("barge-in stop", e.onset_to_stop_ms); showFigures(t); },
  Playback: (e) => {
    if (e.state === "flushed" && state.turns.has(e.turn)) turn(e.turn).row.classList.add("interrupted");
    if (state.pc && state.pc.connectionState === "connected") {
      $("status").textContent = e.state === "started" || e.state === "resumed"
        ? "The agent is speaking…" : "Connected: speak whenever you like.";
    }
  },
  Closed: (e) => { stop(); $("status").textContent = `Call ended: ${e.reason}`; },
};

function onEvent(event) {
  const handle = HANDLERS[event.kind];
  if (handle) handle(event);
}

function turn(n) {
  let t = state.turns.get(n);
  if (!t) {
    const row = el("li", "turn");
    row.dataset.turn = String(n);
    t = { row, user: el("p", "user"), agent: el("p", "agent"), tools: el("ul", "tools"),
      latency: el("p", "latency"), figures: new Map() };
    row.append(t.user, t.tools, t.agent, t.latency);
    $("turns").append(row);
    state.turns.set(n, t);
  }
  return t;
}

function showTool(t, e) {
  let item = t.tools.querySelector(`li[data-name="${CSS.escape(e.name)}"]`);
  if (!item) {
    item = el("li", "tool");
    item.dataset.name = e.name;
    t.tools.append(item);
  }
  item.dataset.state = e.state;
  item.textContent = `🔧 ${e.name}: ${e.state}${e.result ? ` → ${e.result}` : ""}`;
}

function showFigures(t) {
  t.latency.textContent = [...t.figures].map(([name, ms]) => `${name} ${Math.round(ms)} ms`).join(" · ");
}

// --- wiring -------------------------------------------------------------------------

$("talk").addEventListener("click", () => ($("status").dataset.state === "idle" ? start() : stop()));
window.addEventListener("pagehide", () => { if (state.pc) stop(); });
signIn("Anonymous: this server has no sign-in.");
