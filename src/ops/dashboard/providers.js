// The model providers (`GET /api/v1/providers`): which are available and why not, their
// requests, errors, tokens, latency and cost so far. A server without the endpoint (404)
// or without an agents plugin says so instead.

import { api } from "./api.js";
import { problemView } from "./result.js";
import { count, fill, h, ms, note, usd } from "./util.js";

const REFRESH_MS = 10000;

export function start(section) {
  const body = section.querySelector(".body");
  const load = async () => {
    let answer;
    try {
      answer = await api("/api/v1/providers");
    } catch (err) {
      fill(body, note(`The server could not be reached: ${err.message}`, "error"));
      return;
    }
    if (answer.status === 404) {
      fill(body, note("This server does not report its providers (no /api/v1/providers)."));
      return "gone";
    }
    if (answer.status === 409 && answer.problem) {
      // No agents plugin, or it is not ready: nothing to account for, and the reason why.
      fill(body, note(`No providers: ${answer.problem.detail}`));
      return;
    }
    if (!answer.ok || !answer.body) return fill(body, problemView(answer, "Could not list the providers"));
    render(body, answer.body);
  };
  const first = load();
  const timer = setInterval(async () => {
    if ((await load()) === "gone") clearInterval(timer);
  }, REFRESH_MS);
  return { loaded: first, reload: load };
}

function render(body, data) {
  const providers = data.providers || [];
  if (!providers.length) return fill(body, note("No model provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or DEEPSEEK_API_KEY."));
  const t = data.totals || {};
  const synth = data.synthesizer;
  fill(
    body,
    h(
      "p",
      { class: "sub" },
      `Total: ${count(t.input_tokens)} tokens in, ${count(t.output_tokens)} out, ${usd(t.cost_usd)}`,
      synth ? ` · synthesis by ${typeof synth === "string" ? synth : synth.name || JSON.stringify(synth)}` : "",
    ),
    h(
      "table",
      { class: "providers stack" },
      h("caption", { class: "visually-hidden" }, "Model providers, their use and cost"),
      h("thead", {}, h("tr", {}, ["Provider", "Model", "Requests", "Errors", "Tokens in / out", "Latency avg / max", "Cost"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        providers.map((p) => {
          const st = p.stats || {};
          const avg = st.requests ? st.latency_ms_total / st.requests : null;
          return h(
            "tr",
            { dataset: { provider: p.name }, class: p.available ? "" : "unavailable" },
            h("th", { scope: "row", "data-label": "Provider" },
              h("span", { class: "name" }, p.name), " ",
              h("span", { class: `badge ${p.available ? "ok" : "warn"}` }, p.available ? "available" : "unavailable"),
              p.reason ? h("span", { class: "sub reason" }, ` ${p.reason}`) : null,
              p.format && p.format !== p.name ? h("span", { class: "sub" }, ` (${p.format} API)`) : null),
            h("td", { "data-label": "Model" }, p.model || "–"),
            h("td", { "data-label": "Requests" }, count(st.requests)),
            h("td", { "data-label": "Errors" }, `${count(st.errors)}${st.timeouts ? ` (${count(st.timeouts)} timed out)` : ""}`),
            h("td", { "data-label": "Tokens in / out" }, `${count(st.input_tokens)} / ${count(st.output_tokens)}`),
            h("td", { "data-label": "Latency avg / max" }, st.requests ? `${ms(avg)} / ${ms(st.latency_ms_max)}` : "–"),
            h("td", { "data-label": "Cost" }, usd(st.cost_usd ?? (p.price ? 0 : null)),
              p.price ? h("span", { class: "sub", title: "dollars per million tokens in / out" }, ` $${p.price.input}/$${p.price.output} per M`) : null),
          );
        }),
      ),
    ),
  );
}
