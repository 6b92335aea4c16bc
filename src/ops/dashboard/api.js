// Talking to the server: the token (asked for on a 401, kept in this tab's sessionStorage,
// sent only as `Authorization: Bearer`, never in a URL), JSON calls, and server-sent events
// read with fetch() — EventSource cannot send the header.

const TOKEN_KEY = "plugboard.token";
const CLIENT = { "X-Plugboard-Client": "dashboard" };

let askToken = null; // set by the page: () => Promise<string> showing the login prompt
let asking = null; // the prompt in progress, shared by every request that got a 401
let memory = ""; // the token when sessionStorage is refused

/** The page's login prompt, called when the server answers 401. */
export function onUnauthorized(prompt) {
  askToken = prompt;
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode): the token lives only as long as this page.
  }
  memory = value;
}

function current() {
  return token() || memory;
}

/** Ask for a token once, however many requests are waiting for it. */
async function login(refused) {
  if (!askToken) throw new Error("the server wants a token");
  asking ??= askToken(refused).finally(() => {
    asking = null;
  });
  setToken(await asking);
}

/** fetch() with the token; a 401 asks for the token and tries again. */
export async function send(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const sent = current();
    const response = await fetch(path, {
      ...init,
      headers: { ...CLIENT, ...(sent ? { Authorization: `Bearer ${sent}` } : {}), ...(init.headers || {}) },
      credentials: "omit",
      cache: "no-store",
    });
    if (response.status !== 401 || attempt > 5) return response;
    // Another request got a new token while this one was out: try that one first.
    if (current() !== sent && !asking) continue;
    await login(Boolean(sent));
  }
}

/**
 * A JSON call: `{status, ok, body, problem}`. `problem` is the RFC 9457 document when the
 * server sent one; a body that is not JSON is kept as `text`.
 */
export async function api(path, { method = "GET", body, headers } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await send(path, init);
  return read(response);
}

/** A response as `{status, ok, body, problem, text}`. */
export async function read(response) {
  const type = response.headers.get("content-type") || "";
  const text = await response.text();
  let body = null;
  if (type.includes("json")) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  const problem = type.includes("application/problem+json") ? body : null;
  return { status: response.status, ok: response.ok, body, problem, text };
}

/**
 * Server-sent events from a fetch() response body: `onEvent({event, data, id})` for each
 * event (`data` parsed as JSON when it is JSON). Resolves when the stream ends.
 */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = sseParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(value);
  }
  parser.end();
}

/** The SSE wire format (WHATWG HTML §9.2.6): fields, multi-line data, comments, CR/LF. */
export function sseParser(onEvent) {
  let buffer = "";
  let event = "";
  let data = [];
  let id = "";
  const dispatch = () => {
    if (data.length) {
      const raw = data.join("\n");
      let parsed = raw;
      try {
        parsed = JSON.parse(raw);
      } catch {
        // not JSON: the text itself
      }
      onEvent({ event: event || "message", data: parsed, id });
    }
    event = "";
    data = [];
  };
  const line = (text) => {
    if (text === "") return dispatch();
    if (text.startsWith(":")) return; // a comment (the keep-alive)
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  };
  return {
    push(chunk) {
      buffer += chunk;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buffer);
        // A lone CR at the end may be half of a CRLF: wait for the next chunk.
        if (!m || (m[0] === "\r" && m.index === buffer.length - 1)) break;
        line(buffer.slice(0, m.index));
        buffer = buffer.slice(m.index + m[0].length);
      }
    },
    end() {
      // An event the stream cut off before its blank line is not dispatched (as the spec says).
      buffer = "";
      event = "";
      data = [];
    },
  };
}
