// The live call log: `GET /api/v1/events` read with fetch() (the token goes in a header,
// which EventSource cannot send), parsed as server-sent events, reconnected with back-off
// when the stream drops. Calls from every face show here; events carry no arguments.

import { readEvents, send } from "./api.js";
import { clock, fill, h, ms } from "./util.js";

const KEEP = 200; // rows shown; older ones are dropped
const BACKOFF_MS = [500, 1000, 2000, 5000, 10000, 30000];

/**
 * Start following the events. `on[type](data)` is called for each event (`call_finished`,
 * `plugin_status`, `list_changed`, …), `on.reconnected()` when the stream is back after a
 * drop; `status(text, live)` says how the stream is doing.
 */
export function start(section, on, status) {
  const body = section.querySelector(".body");
  const inflight = h("span", { id: "inflight" }, "0");
  const rows = h("tbody", {});
  const empty = h("p", { class: "note", id: "log-empty" }, "No calls yet. Calls from every face (MCP clients, REST, this page) appear here as they happen.");
  const clear = h("button", { type: "button", class: "small quiet", onclick: () => { rows.replaceChildren(); pending.clear(); } }, "Clear");
  fill(
    body,
    h("p", { class: "sub" }, "In flight: ", inflight, " ", clear),
    empty,
    h(
      "div",
      { class: "log-wrap", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Calls as they happen" },
      h(
        "table",
        { class: "log stack" },
        h("thead", {}, h("tr", {}, ["Time", "Tool", "Face", "Outcome", "Duration"].map((t) => h("th", { scope: "col" }, t)))),
        rows,
      ),
    ),
  );
  // Rows of calls that started and have not finished, by tool and face (events carry no id:
  // the oldest running row of the same tool and face is the one that finished).
  const pending = new Map();
  let running = 0;
  const key = (d) => `${d.face}\u0000${d.tool}`;

  const row = (d) => {
    empty.hidden = true;
    const tr = h(
      "tr",
      { class: "call running", dataset: { tool: d.tool, face: d.face } },
      h("td", { "data-label": "Time" }, clock(d.at)),
      h("td", { "data-label": "Tool" }, h("code", {}, d.tool || "(unknown)"), d.plugin ? h("span", { class: "sub" }, ` ${d.plugin}`) : null),
      h("td", { "data-label": "Face" }, h("span", { class: `face face-${d.face}` }, d.face)),
      h("td", { "data-label": "Outcome", class: "outcome" }, h("span", { class: "badge off" }, "running")),
      h("td", { "data-label": "Duration", class: "duration" }, "…"),
    );
    rows.prepend(tr);
    while (rows.children.length > KEEP) rows.lastElementChild.remove();
    return tr;
  };

  const handlers = {
    call_started(d) {
      running++;
      inflight.textContent = String(running);
      const tr = row(d);
      if (!pending.has(key(d))) pending.set(key(d), []);
      pending.get(key(d)).push(tr);
    },
    call_finished(d) {
      running = Math.max(0, running - 1);
      inflight.textContent = String(running);
      const waiting = pending.get(key(d));
      const tr = waiting?.shift() || row(d);
      const ok = d.outcome === "ok";
      tr.classList.remove("running");
      tr.classList.add(ok ? "ok" : "failed");
      tr.dataset.outcome = d.outcome;
      fill(
        tr.querySelector(".outcome"),
        h("span", { class: `badge ${ok ? "ok" : "bad"}` }, d.outcome),
        d.error ? h("span", { class: "sub err" }, ` ${d.error}`) : null,
      );
      fill(tr.querySelector(".duration"), ms(d.duration_ms));
    },
  };

  let attempt = 0;
  let opened = 0;
  const connect = async () => {
    status("connecting…", false);
    try {
      const response = await send("/api/v1/events", { headers: { Accept: "text/event-stream" } });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      attempt = 0;
      status("live", true);
      // Back after a drop: the server may have restarted with other plugins.
      if (opened++) on.reconnected?.();
      // What was in flight when the stream dropped cannot be matched any more.
      pending.clear();
      running = 0;
      inflight.textContent = "0";
      await readEvents(response, ({ event, data }) => {
        handlers[event]?.(data);
        on[event]?.(data);
      });
      throw new Error("the stream ended");
    } catch (err) {
      const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt++;
      // Jitter keeps many tabs from reconnecting at the same instant after a restart.
      const jittered = Math.round(wait * (0.8 + Math.random() * 0.4));
      status(`disconnected (${err.message || err}); retrying in ${Math.ceil(jittered / 1000)} s`, false);
      setTimeout(connect, jittered);
    }
  };
  connect();
}
