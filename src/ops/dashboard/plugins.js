// The plugins panel: each plugin's state, why it is not ready, its version, load time and
// tools, and a Reload button (`POST /api/v1/plugins/{name}/reload`).

import { api } from "./api.js";
import { problemView } from "./result.js";
import { fill, h, ms, note } from "./util.js";

const STATES = {
  ready: "ok",
  degraded: "warn",
  down: "bad",
  failed: "bad",
  unconfigured: "warn",
  disabled: "off",
};

/** Load and show the plugins; `changed()` is called after a reload. */
export async function load(section, changed) {
  const body = section.querySelector(".body");
  const answer = await api("/api/v1/plugins");
  if (!answer.ok || !Array.isArray(answer.body)) {
    fill(body, problemView(answer, "Could not list the plugins"));
    return [];
  }
  render(body, answer.body, changed);
  return answer.body;
}

function render(body, plugins, changed) {
  const ready = plugins.filter((p) => p.state === "ready").length;
  const summary = note(`${ready} of ${plugins.length} ready`);
  const rows = plugins.map((p) => row(p, changed));
  fill(
    body,
    summary,
    h(
      "table",
      { class: "plugins stack" },
      h("caption", { class: "visually-hidden" }, "Plugins and their status"),
      h(
        "thead",
        {},
        h("tr", {}, ["Plugin", "State", "Reason", "Version", "Load", "Tools", ""].map((t) =>
          h("th", { scope: "col" }, t),
        )),
      ),
      h("tbody", {}, rows),
    ),
  );
}

function row(p, changed) {
  const kind = STATES[p.state] || "warn";
  const out = h("div", { class: "reload-out", "aria-live": "polite" });
  const button = h("button", {
    type: "button",
    class: "small",
    "aria-label": `Reload plugin ${p.name}`,
    onclick: async () => {
      button.disabled = true;
      fill(out, note("reloading…"));
      const answer = await api(`/api/v1/plugins/${encodeURIComponent(p.name)}/reload`, {
        method: "POST",
      });
      button.disabled = false;
      if (answer.ok) {
        fill(out, note(`now ${answer.body.status}`));
        changed();
      } else fill(out, problemView(answer, "Reload failed"));
    },
  }, "Reload");
  return h(
    "tr",
    { class: `plugin state-${kind}`, dataset: { plugin: p.name, state: p.state } },
    h("th", { scope: "row", "data-label": "Plugin" },
      h("span", { class: "name" }, p.name),
      p.description ? h("span", { class: "sub" }, p.description) : null),
    h("td", { "data-label": "State" }, h("span", { class: `badge ${kind}` }, p.state)),
    h("td", { "data-label": "Reason", class: "reason" }, p.reason || (p.status !== p.state ? p.status : "")),
    h("td", { "data-label": "Version", class: "nowrap" }, p.version || "–"),
    h("td", { "data-label": "Load", class: "nowrap" }, p.load_ms === undefined ? "–" : p.load_ms < 1 ? "< 1 ms" : ms(p.load_ms)),
    h("td", { "data-label": "Tools", title: p.tools.join(", ") }, String(p.tools.length)),
    h("td", { "data-label": "" }, button, out),
  );
}
