// The tools panel: every tool this caller may call, filterable by name, words and plugin,
// each with its description, annotations, input schema and a "try it" form generated from
// the schema, sent to `POST /api/v1/tools/{name}/call` (as the dashboard face).

import { api } from "./api.js";
import { FieldError, schemaForm } from "./form.js";
import { answerView, problemView } from "./result.js";
import { fill, h, ms, note, pretty } from "./util.js";

const HINTS = {
  readOnlyHint: ["read-only", "ok"],
  destructiveHint: ["destructive", "bad"],
  idempotentHint: ["idempotent", "off"],
  openWorldHint: ["open world", "off"],
};

let view = null; // {filter, plugin, list, tools}: kept across reloads of the list

/** Load and show the tools; answers the list. */
export async function load(section) {
  const body = section.querySelector(".body");
  const answer = await api("/api/v1/tools");
  if (!answer.ok || !Array.isArray(answer.body)) {
    fill(body, problemView(answer, "Could not list the tools"));
    view = null;
    return [];
  }
  const tools = answer.body;
  if (!view || !body.contains(view.list)) view = controls(body);
  view.tools = tools;
  const plugins = [...new Set(tools.map((t) => t.plugin))].sort();
  const chosen = view.plugin.value;
  fill(view.plugin, h("option", { value: "" }, "all plugins"), plugins.map((p) => h("option", { value: p, selected: p === chosen }, p)));
  show();
  return tools;
}

function controls(body) {
  const filter = h("input", { id: "tool-filter", type: "search", placeholder: "name or words", autocomplete: "off", oninput: show });
  const plugin = h("select", { id: "tool-plugin", onchange: show });
  const count = h("p", { class: "note", role: "status", id: "tool-count" });
  const list = h("div", { class: "tool-list" });
  fill(
    body,
    h(
      "div",
      { class: "filters", role: "search" },
      h("div", { class: "field" }, h("label", { for: "tool-filter" }, "Filter"), filter),
      h("div", { class: "field" }, h("label", { for: "tool-plugin" }, "Plugin"), plugin),
    ),
    count,
    list,
  );
  // `open`: the cards a reader opened; `built`: each opened card's body by tool, kept while
  // the tool's definition is unchanged, so a refresh of the list keeps forms and results.
  return { filter, plugin, count, list, tools: [], open: new Set(), built: new Map() };
}

function show() {
  const { filter, plugin, list, count, tools } = view;
  const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const shown = tools.filter(
    (t) =>
      (!plugin.value || t.plugin === plugin.value) &&
      words.every((w) => `${t.name} ${t.title || ""} ${t.description}`.toLowerCase().includes(w)),
  );
  count.textContent = `${shown.length} of ${tools.length} tools`;
  const groups = new Map();
  for (const t of shown) {
    if (!groups.has(t.plugin)) groups.set(t.plugin, []);
    groups.get(t.plugin).push(t);
  }
  fill(
    list,
    [...groups].map(([p, ts]) =>
      h("section", { class: "tool-group", "aria-label": `${p} tools` }, h("h3", {}, p, h("span", { class: "sub" }, ` ${ts.length}`)), ts.map(card)),
    ),
  );
}

function card(tool) {
  const details = h("details", { class: "tool", dataset: { tool: tool.name } });
  const badges = Object.entries(HINTS)
    .filter(([k]) => tool.annotations?.[k] === true)
    .map(([, [label, kind]]) => h("span", { class: `badge ${kind}` }, label));
  details.append(
    h("summary", {}, h("code", { class: "name" }, tool.name), tool.title ? ` ${tool.title}` : "", badges.length ? " " : "", badges),
  );
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    const same = JSON.stringify(tool);
    let kept = view.built.get(tool.name);
    if (!kept || kept.same !== same) {
      kept = { same, el: body(tool) };
      view.built.set(tool.name, kept);
    }
    details.append(kept.el);
  };
  details.addEventListener("toggle", () => {
    if (details.open) view.open.add(tool.name);
    else view.open.delete(tool.name);
    build();
  });
  if (view.open.has(tool.name)) {
    details.open = true;
    build();
  }
  return details;
}

function body(tool) {
  const form = schemaForm(tool.inputSchema);
  const out = h("div", { class: "call-out", "aria-live": "polite" });
  const raw = h("textarea", { class: "json raw", rows: 6, spellcheck: "false", hidden: true, "aria-label": `Arguments of ${tool.name} as JSON` });
  const toggle = h("button", { type: "button", class: "small quiet", "aria-pressed": "false" }, "Edit as JSON");
  toggle.addEventListener("click", () => {
    const on = raw.hidden;
    if (on) {
      try {
        raw.value = pretty(form.read());
      } catch {
        raw.value = "{}";
      }
    }
    raw.hidden = !on;
    form.el.hidden = on;
    toggle.setAttribute("aria-pressed", String(on));
    (on ? raw : form.el.querySelector("input, select, textarea"))?.focus();
  });
  const submit = h("button", { type: "submit" }, "Call ", h("code", {}, tool.name));
  const el = h(
    "form",
    {
      class: "try",
      novalidate: true,
      "aria-label": `Try ${tool.name}`,
      onsubmit: async (e) => {
        e.preventDefault();
        let args;
        try {
          args = raw.hidden ? form.read() : JSON.parse(raw.value || "{}");
        } catch (err) {
          fill(out, note(err instanceof FieldError ? err.message : `Not valid JSON: ${err.message}`, "error"));
          return;
        }
        submit.disabled = true;
        fill(out, note(`calling ${tool.name}…`));
        const started = performance.now();
        try {
          const answer = await api(`/api/v1/tools/${encodeURIComponent(tool.name)}/call`, { method: "POST", body: args });
          fill(out, h("p", { class: "sub" }, `HTTP ${answer.status} in ${ms(performance.now() - started)}`), answerView(answer));
        } catch (err) {
          fill(out, note(`The server could not be reached: ${err.message}`, "error"));
        } finally {
          submit.disabled = false;
        }
      },
    },
    form.el,
    raw,
    h("div", { class: "actions" }, submit, toggle),
  );
  return h(
    "div",
    { class: "tool-body" },
    tool.description ? h("p", { class: "desc" }, tool.description) : null,
    tool.annotations ? h("p", { class: "sub" }, "annotations: ", h("code", {}, JSON.stringify(tool.annotations))) : null,
    h("details", { class: "schema" }, h("summary", {}, "Input schema"), h("pre", {}, pretty(tool.inputSchema))),
    tool.outputSchema ? h("details", { class: "schema" }, h("summary", {}, "Output schema"), h("pre", {}, pretty(tool.outputSchema))) : null,
    el,
    out,
  );
}
