// The document QA page: ask with a running conversation, watch the answer stream in,
// open citations, upload documents and follow their ingest jobs.
//
// Safety rule: text from the server (answers, passages, titles, notes) is only ever put
// into the page with textContent or text nodes, never as HTML, so a document cannot run
// script in the reader's browser.

import { $, api, el, errorMessage, readEvents, signIn } from "./common.js";

const state = {
  history: [],          // [{role, content}], sent with the next question
};

const OUTCOME_MESSAGES = {
  abstained: "The documents do not answer this question.",
  no_access: "The documents that might answer this are not visible to you.",
  rejected: "This question was not accepted.",
};
const FINAL_STAGES = new Set(["done", "unchanged", "deleted", "failed"]);

// --- asking -------------------------------------------------------------------------

function addTurn(question) {
  const item = el("li", "turn");
  item.append(el("p", "question", question));
  const answer = el("div", "answer");
  const draft = el("p", "draft");
  answer.append(draft);
  item.append(answer);
  $("conversation").append(item);
  return { item, answer, draft };
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("ask-error").textContent = "";
  $("ask").disabled = true;
  try {
    await streamAnswer(question, addTurn(question));
    $("question").value = "";
  } catch (error) {
    $("ask-error").textContent = `The answer could not be fetched: ${error.message}`;
  } finally {
    $("ask").disabled = false;
  }
}

async function streamAnswer(question, turn) {
  const response = await api("/v1/ask", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ question, history: state.history }),
  });
  if (!response.ok) {
    showTurnError(turn, await errorMessage(response));
    return;
  }
  await readEvents(response, (name, data) => {
    if (name === "delta") turn.draft.textContent += data.text;
    else if (name === "answer") finishTurn(question, turn, data);
    else if (name === "error") showTurnError(turn, data.error.message);
  });
}

function finishTurn(question, turn, answer) {
  renderAnswer(turn.answer, answer);
  state.history.push({ role: "user", content: question });
  if (answer.text) state.history.push({ role: "assistant", content: answer.text });
}

function showTurnError(turn, message) {
  turn.answer.replaceChildren(el("p", "error", message));
}

function newConversation() {
  state.history = [];
  $("conversation").replaceChildren();
  $("citation-panel").hidden = true;
}

// --- rendering an answer --------------------------------------------------------------

function renderAnswer(container, answer) {
  container.replaceChildren();
  container.dataset.outcome = answer.outcome;
  if (answer.outcome === "answered") {
    container.append(citedText(answer));
    if (answer.removed.length) container.append(removedNote(answer.removed));
  } else if (answer.outcome === "clarify") {
    container.append(el("p", "clarify", answer.text));
  } else {
    container.append(el("p", "notice", answer.text || OUTCOME_MESSAGES[answer.outcome] || ""));
    if (answer.sources.length) container.append(sourceList(answer.sources));
  }
  for (const warning of answer.warnings) container.append(el("p", "warning", warning));
  if (Object.keys(answer.timings).length) container.append(timingsFooter(answer.timings));
}

// The verified text with each [n] that has a citation turned into a button.
function citedText(answer) {
  const paragraph = el("p", "answer-text");
  const byNumber = new Map(answer.citations.map((c) => [c.n, c]));
  const parts = answer.text.split(/(\[\d+\])/);
  for (const part of parts) {
    const citation = byNumber.get(Number(part.slice(1, -1)));
    if (/^\[\d+\]$/.test(part) && citation) {
      paragraph.append(citationButton(citation, answer.sources));
    } else {
      paragraph.append(document.createTextNode(part));
    }
  }
  return paragraph;
}

function citationButton(citation, sources) {
  const button = el("button", "cite", `[${citation.n}]`);
  button.type = "button";
  const source = citation.title || citation.key.doc_id;
  button.setAttribute("aria-label", `Source ${citation.n}: ${source}`);
  button.addEventListener("click", () => showCitation(citation, sources));
  return button;
}

function removedNote(removed) {
  const n = removed.length;
  const note = el("p", "removed-note", `${n} sentence${n === 1 ? "" : "s"} removed as unsupported`);
  note.title = removed.join("\n");
  return note;
}

function sourceList(sources) {
  const wrapper = el("div", "sources");
  wrapper.append(el("h3", "", "Closest sources"));
  const list = el("ul");
  for (const passage of sources) {
    const item = el("li");
    item.append(el("strong", "", passage.title || passage.key.doc_id));
    if (passage.section_path.length) {
      item.append(el("span", "meta", ` · ${passage.section_path.join(" › ")}`));
    }
    item.append(el("p", "passage", passage.text));
    list.append(item);
  }
  wrapper.append(list);
  return wrapper;
}

function timingsFooter(timings) {
  const parts = Object.entries(timings).map(([stage, ms]) => `${stage} ${Math.round(ms)} ms`);
  return el("footer", "timings", parts.join(" · "));
}

// --- the citation panel -----------------------------------------------------------------

function showCitation(citation, sources) {
  const passage = sources.find((p) => p.chunk_id === citation.chunk_id);
  $("citation-title").textContent = citation.title || citation.key.doc_id;
  $("citation-section").textContent = citation.section_path.join(" › ");
  $("citation-span").textContent =
    `characters ${citation.start}–${citation.end} of ${citation.key.doc_id}`;
  $("citation-text").replaceChildren(...highlighted(passage ? passage.text : "", citation.quote));
  $("citation-panel").hidden = false;
  $("citation-panel").focus();
}

// The passage as text nodes with the quote in a <mark>; the quote alone if it is not found.
function highlighted(text, quote) {
  const at = quote ? text.indexOf(quote) : -1;
  if (at < 0) return quote ? [el("mark", "", quote)] : [document.createTextNode(text)];
  return [
    document.createTextNode(text.slice(0, at)),
    el("mark", "", quote),
    document.createTextNode(text.slice(at + quote.length)),
  ];
}

// --- uploads and their jobs ---------------------------------------------------------------

async function upload(event) {
  event.preventDefault();
  $("upload-error").textContent = "";
  const form = new FormData();
  for (const file of $("files").files) form.append("file", file, file.name);
  for (const field of ["collection", "acl"]) {
    const value = $(field).value.trim();
    if (value) form.append(field, value);
  }
  $("upload").disabled = true;
  try {
    const response = await api("/v1/documents", { method: "POST", body: form });
    if (!response.ok) {
      $("upload-error").textContent = await errorMessage(response);
      return;
    }
    const { jobs } = await response.json();
    $("upload-form").reset();
    jobs.forEach(followJob);
  } finally {
    $("upload").disabled = false;
  }
}

function jobRow(job) {
  const item = el("li", "job");
  item.dataset.jobId = job.job_id;
  const label = el("span", "filename", job.filename || job.doc_id);
  const bar = el("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${job.filename || job.doc_id}`);
  item.append(label, bar, el("span", "stage", "queued"), el("p", "reason"));
  $("jobs").append(item);
  return item;
}

async function followJob(job) {
  const row = jobRow(job);
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(job.job_id)}/events`);
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (name, data) => {
      if (name === "progress") showProgress(row, data);
      else if (name === "error") showJobFailure(row, data.error.message);
    });
  } catch (error) {
    showJobFailure(row, error.message);
  }
}

function showProgress(row, event) {
  const bar = row.querySelector("progress");
  const counted = event.total > 0 ? ` ${event.done}/${event.total}` : "";
  row.querySelector(".stage").textContent = `${event.stage}${counted}`;
  row.dataset.stage = event.stage;
  if (event.total > 0) bar.value = Math.min(event.done / event.total, 1);
  if (FINAL_STAGES.has(event.stage) && event.stage !== "failed") bar.value = 1;
  if (event.stage === "failed") showJobFailure(row, event.note || "failed");
  else if (event.note) row.querySelector(".reason").textContent = event.note;
}

function showJobFailure(row, reason) {
  row.classList.add("failed");
  row.querySelector(".reason").textContent = reason;
}

// --- wiring -------------------------------------------------------------------------------

$("ask-form").addEventListener("submit", ask);
$("new-conversation").addEventListener("click", newConversation);
$("citation-close").addEventListener("click", () => { $("citation-panel").hidden = true; });
$("upload-form").addEventListener("submit", upload);
signIn("Anonymous: this server has no sign-in; you see the documents of the default tenant.");
