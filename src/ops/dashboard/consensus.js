// The consensus panel: one prompt to several models (`POST /api/v1/consensus`, streamed):
// each provider's answer shows as it lands (`text` events), then the synthesis and who
// agreed (`result`), or what went wrong (`problem`). Without a published `consensus` tool
// the panel says why instead.

import { readEvents, read, send } from "./api.js";
import { problemView, resultView } from "./result.js";
import { fill, h, ms, note } from "./util.js";

let current = null; // the request in flight, stopped by a new one or by Stop

/** Show the panel for the current tools and plugins. */
export function render(section, tools, plugins) {
  const body = section.querySelector(".body");
  const tool = tools.find((t) => t.plugin === "agents" && /(^|_)consensus$/.test(t.name));
  if (!tool) {
    const agents = plugins.find((p) => p.name === "agents");
    const why = agents
      ? `the agents plugin is ${agents.status}`
      : "there is no agents plugin";
    fill(
      body,
      h("p", { class: "note disabled", id: "consensus-off" },
        `Consensus is not available: ${why}. It needs the agents plugin with at least one model provider (set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or DEEPSEEK_API_KEY).`),
    );
    return;
  }
  if (body.querySelector("form.consensus")) return; // already shown: keep what is typed
  const prompt = h("textarea", { id: "consensus-prompt", name: "prompt", rows: 3, required: true });
  const providers = h("input", { id: "consensus-providers", name: "providers", type: "text", autocomplete: "off", placeholder: "all available" });
  const status = h("p", { class: "sub", role: "status", id: "consensus-status" });
  const answers = h("div", { class: "answers", "aria-live": "polite" });
  const outcome = h("div", { class: "consensus-result" });
  const submit = h("button", { type: "submit" }, "Ask");
  const stop = h("button", { type: "button", class: "quiet", disabled: true, onclick: () => current?.abort() }, "Stop");
  const form = h(
    "form",
    {
      class: "consensus",
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        if (!prompt.value.trim()) {
          fill(status, "Write a question first.");
          prompt.focus();
          return;
        }
        const args = { prompt: prompt.value };
        const names = providers.value.split(/[\s,]+/).filter(Boolean);
        if (names.length) args.providers = names;
        current?.abort();
        current = new AbortController();
        submit.disabled = true;
        stop.disabled = false;
        answers.replaceChildren();
        outcome.replaceChildren();
        try {
          await ask(args, current.signal, { status, answers, outcome });
        } catch (err) {
          if (err.name === "AbortError") fill(status, "Stopped.");
          else fill(outcome, note(`The server could not be reached: ${err.message}`, "error"));
        } finally {
          submit.disabled = false;
          stop.disabled = true;
        }
      },
    },
    h("div", { class: "field" }, h("label", { for: "consensus-prompt" }, "Question"), prompt),
    h("div", { class: "field" }, h("label", { for: "consensus-providers" }, "Providers (optional, comma-separated)"), providers),
    h("div", { class: "actions" }, submit, stop),
  );
  fill(body, h("p", { class: "sub" }, tool.description.split("\n")[0]), form, status, answers, outcome);
}

async function ask(args, signal, { status, answers, outcome }) {
  fill(status, "Asking…");
  const started = performance.now();
  const response = await send("/api/v1/consensus", {
    method: "POST",
    signal,
    headers: { Accept: "text/event-stream", "Content-Type": "application/json" },
    body: JSON.stringify(args),
  });
  if (!(response.headers.get("content-type") || "").includes("text/event-stream")) {
    const answer = await read(response);
    fill(status, `HTTP ${answer.status}`);
    fill(outcome, answer.ok ? resultView(answer.body) : problemView(answer, "Consensus failed"));
    return;
  }
  await readEvents(response, ({ event, data }) => {
    if (event === "progress") {
      fill(status, data.message || `${data.progress}${data.total ? ` of ${data.total}` : ""}`);
    } else if (event === "text") {
      answers.append(h("pre", { class: "answer" }, data.text));
    } else if (event === "result") {
      fill(status, `Done in ${ms(performance.now() - started)}`);
      fill(outcome, data.structuredContent?.opinions ? synthesisView(data.structuredContent) : resultView(data));
    } else if (event === "problem") {
      fill(status, "Failed");
      fill(outcome, problemView({ problem: data, status: data.status }, "Consensus failed"));
    }
  });
}

function synthesisView(c) {
  const s = c.synthesis;
  return h(
    "div",
    { class: "synthesis" },
    h("h3", {}, s ? `Synthesis by ${s.by}${s.model ? ` (${s.model})` : ""}` : "No synthesis"),
    s ? h("pre", { class: "answer" }, s.text) : note(c.synthesis_error || "", "error"),
    h("p", { class: "sub" },
      `${c.answered} of ${c.opinions.length} answered in ${ms(c.wall_ms)}. `,
      c.agreed.length ? `Agreed: ${c.agreed.join(", ")} (${c.agreement}).` : `No agreement (${c.agreement}).`),
    h(
      "table",
      { class: "stack" },
      h("thead", {}, h("tr", {}, ["Provider", "Stance", "Latency", "Tokens in / out", "Answer"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        c.opinions.map((o) =>
          h(
            "tr",
            { class: o.answer ? "" : "failed" },
            h("th", { scope: "row", "data-label": "Provider" }, o.provider, o.model ? h("span", { class: "sub" }, ` ${o.model}`) : null),
            h("td", { "data-label": "Stance" }, o.stance),
            h("td", { "data-label": "Latency" }, ms(o.latency_ms), o.timed_out ? " (timed out)" : ""),
            h("td", { "data-label": "Tokens in / out" }, `${o.input_tokens} / ${o.output_tokens}`),
            h("td", { "data-label": "Answer" }, o.answer ? "answered" : h("span", { class: "err" }, o.error || "no answer")),
          ),
        ),
      ),
    ),
  );
}
