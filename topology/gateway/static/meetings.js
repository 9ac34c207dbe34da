// The meeting page: upload a recording, watch each stage of the pipeline, then read the
// transcript (a colour per speaker, timestamps that play the recording from there) beside
// the summary, and download the minutes.
//
// Safety rule: text from the server (what was said, titles, names, reasons) is only ever
// put into the page with textContent, never as HTML, so a recording cannot run script.

import { $, api, el, errorMessage, readEvents, signIn } from "./common.js";

const STAGES = ["decode", "vad", "asr", "diarize", "cleanup", "summarize", "archive", "index"];
const ROW_OF = { chunk: "index", embed: "index" };   // indexing is three operators, one bar
const DOWNLOADS = [["md", "Minutes (Markdown)", "md"], ["srt", "Subtitles (SRT)", "srt"],
  ["vtt", "Subtitles (WebVTT)", "vtt"], ["rttm", "Speakers (RTTM)", "rttm"],
  ["json", "Everything (JSON)", "json"]];
const SUMMARY_LISTS = [["key_points", "key-points"], ["decisions", "decisions"],
  ["action_items", "action-items"], ["open_questions", "open-questions"]];
const SPEAKER_COLOURS = 8;   // .speaker-0 … .speaker-7 in meetings.css

const state = { rows: new Map() };

// --- small helpers ------------------------------------------------------------------

async function getJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

// mm:ss, or h:mm:ss from an hour on (as the Markdown minutes write it).
function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

// --- uploading ------------------------------------------------------------------------

async function upload(event) {
  event.preventDefault();
  $("upload-error").textContent = "";
  const form = new FormData();
  const file = $("recording").files[0];
  if (!file) return;
  form.append("file", file, file.name);
  for (const field of ["title", "participants", "agenda"]) {
    const value = $(field).value.trim();
    if (value) form.append(field, value);
  }
  $("upload").disabled = true;
  try {
    const response = await api("/v1/meetings", { method: "POST", body: form });
    if (!response.ok) {
      $("upload-error").textContent = await errorMessage(response);
      return;
    }
    followJob(await response.json());
  } catch (error) {
    $("upload-error").textContent = `The upload failed: ${error.message}`;
  } finally {
    $("upload").disabled = false;
  }
}

// --- progress ---------------------------------------------------------------------------

function stageRows() {
  state.rows.clear();
  const rows = STAGES.map((stage) => {
    const row = el("li", "stage-row");
    row.dataset.stage = stage;
    row.dataset.state = "waiting";
    const bar = el("progress");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-label", `${stage} progress`);
    row.append(el("span", "name", stage), bar, el("span", "state", "waiting"));
    state.rows.set(stage, row);
    return row;
  });
  $("stages").replaceChildren(...rows);
}

async function followJob(job) {
  stageRows();
  $("job-error").textContent = "";
  $("result").hidden = true;
  $("job").hidden = false;
  $("job").dataset.jobId = job.job_id;
  try {
    const response = await api(job.events);
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (name, data) => {
      if (name === "progress") onProgress(job, data);
      else if (name === "error") showFailure("", data.error.message);
    });
  } catch (error) {
    showFailure("", `Lost the job's progress: ${error.message}`);
  }
}

function onProgress(job, event) {
  if (event.stage === "done") {
    finishStages();
    showMinutes(job).catch((error) => {
      showFailure("", `The minutes could not be loaded: ${error.message}`);
    });
  } else if (event.stage === "failed") {
    showFailure(event.operator, event.note || "failed");
  } else {
    const row = state.rows.get(ROW_OF[event.stage] || event.stage);
    if (row) showStage(row, event, Boolean(ROW_OF[event.stage]));
  }
}

function showStage(row, event, partial) {
  // chunk and embed finishing is not the index bar finishing: they are its first steps.
  const done = event.state === "done" && !partial;
  const bar = row.querySelector("progress");
  if (event.total > 0) bar.value = Math.min(event.done / event.total, 1);
  if (done) bar.value = 1;
  row.dataset.state = done ? "done" : event.state === "retrying" ? "retrying" : "running";
  const counted = event.total > 0 && !done ? ` ${Math.round(100 * bar.value)} %` : "";
  const label = partial ? `${event.stage}…` : row.dataset.state;
  const note = event.state === "retrying" && event.note ? `: ${event.note}` : "";
  row.querySelector(".state").textContent = `${label}${counted}${note}`;
}

function finishStages() {
  for (const row of state.rows.values()) {
    if (row.dataset.state === "done") continue;
    const ran = row.dataset.state !== "waiting";
    row.dataset.state = ran ? "done" : "skipped";
    row.querySelector(".state").textContent = ran ? "done" : "skipped";
    if (ran) row.querySelector("progress").value = 1;
  }
}

function showFailure(operator, reason) {
  const row = state.rows.get(ROW_OF[operator] || operator);
  if (row) {
    row.classList.add("failed");
    row.dataset.state = "failed";
    row.querySelector(".state").textContent = "failed";
  }
  $("job-error").textContent = operator ? `Failed in ${operator}: ${reason}` : reason;
}

// --- the minutes ------------------------------------------------------------------------

async function showMinutes(job) {
  const base = `/v1/meetings/${encodeURIComponent(job.job_id)}`;
  const [minutes, link] = await Promise.all([getJson(base), getJson(`${base}/link`)]);
  $("result-heading").textContent = minutes.info.title || "Minutes";
  showAudio(minutes.audio ? `${base}/audio?${link.query}` : "");
  showDownloads(base, link.query, minutes);
  $("warnings").replaceChildren(...minutes.warnings.map((w) => el("li", "", w)));
  showTranscript(minutes.transcript, minutes.info.speakers || {});
  showSummary(minutes.summary);
  $("result").hidden = false;
}

function showAudio(url) {
  $("player").hidden = !url;
  $("no-audio").hidden = Boolean(url);
  if (url) $("player").src = url;
  else $("player").removeAttribute("src");
}

function showDownloads(base, query, minutes) {
  const links = DOWNLOADS.map(([format, label, extension]) => {
    const link = el("a", "", label);
    link.href = `${base}?format=${format}&${query}`;
    link.download = `meeting-${minutes.job_id}.${extension}`;
    return link;
  });
  $("downloads").replaceChildren(...links);
}

function showTranscript(transcript, names) {
  const colours = new Map();   // speaker label → colour index, in order of first words
  const items = transcript.segments.filter((s) => s.text.trim()).map((segment) => {
    const label = segment.speaker || "";
    if (!colours.has(label)) colours.set(label, colours.size % SPEAKER_COLOURS);
    const item = el("li", `segment speaker-${colours.get(label)}`);
    item.dataset.speaker = label;
    const name = names[label] || label || "Speaker";
    item.append(timeButton(segment.start), el("span", "speaker", name),
      el("p", "text", segment.text.trim()));
    return item;
  });
  $("segments").replaceChildren(...items);
}

function showSummary(summary) {
  $("no-summary").hidden = Boolean(summary);
  $("no-summary").textContent = summary ? "" : "This meeting was filed without a summary.";
  for (const [field, id] of SUMMARY_LISTS) {
    const items = summary ? summary[field] : [];
    $(id).replaceChildren(...items.map(summaryItem));
  }
}

function summaryItem(item) {
  const li = el("li");
  li.append(timeButton(item.span.start_s), document.createTextNode(item.text));
  const who = [item.owner && `owner: ${item.owner}`, item.due && `due: ${item.due}`]
    .filter(Boolean);
  if (who.length) li.append(el("span", "who", ` (${who.join(", ")})`));
  return li;
}

// A timestamp that plays the recording from that moment.
function timeButton(seconds) {
  const button = el("button", "time", clock(seconds));
  button.type = "button";
  button.dataset.seconds = String(seconds);
  button.setAttribute("aria-label", `Play from ${clock(seconds)}`);
  button.addEventListener("click", () => {
    const player = $("player");
    player.currentTime = seconds;
    player.play().catch(() => {});   // a browser may refuse to play; the seek still stands
  });
  return button;
}

// --- wiring -------------------------------------------------------------------------------

$("meeting-form").addEventListener("submit", upload);
signIn("Anonymous: this server has no sign-in; anyone here can read the meetings you upload.");
