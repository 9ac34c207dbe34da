// What the three pages (document QA, meeting transcriber, voice agent) share: DOM helpers,
// the access token and fetch with it, the text of a failed response, server-sent events over
// fetch, and the sign-in header (#identity and #token-form, written in each page's markup).
// A plain ES module, served from /static like the pages' own scripts, which import it.
//
// Safety rule: text from the server is only ever put into the page with textContent or text
// nodes, never as HTML.

const TOKEN_KEY = "patchwire-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// fetch, with the reader's access token when they gave one.
export function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return fetch(path, { ...options, headers });
}

export async function errorMessage(response) {
  const body = await response.json().catch(() => null);
  if (response.status === 401) return "Your access token was not accepted.";
  return body?.error?.message || `${response.status} ${response.statusText}`;
}

// Server-sent events over fetch (EventSource cannot send an Authorization header).
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      parseEvent(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
    }
  }
}

function parseEvent(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }   // lines starting with ":" are keep-alive comments
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}

// --- who am I -----------------------------------------------------------------------

// Wires the token form and says who the server takes the reader for; `anonymousNote` is
// what the page says when the server has no sign-in.
export function signIn(anonymousNote) {
  $("token-form").addEventListener("submit", useToken);
  showIdentity(anonymousNote).catch((error) => {
    $("identity").textContent = `The server is not reachable: ${error.message}`;
  });
}

async function showIdentity(anonymousNote) {
  const health = await (await fetch("/v1/health")).json();
  if (health.auth === "anonymous") {
    $("identity").textContent = anonymousNote;
    return;
  }
  $("token-form").hidden = false;
  $("identity").textContent = token ? "Using your access token." : "Enter your access token.";
}

function useToken(event) {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("identity").textContent = "Using your access token.";
}
