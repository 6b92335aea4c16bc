// Latency and errors per tool: the totals since the server started from `/metrics`
// (`plugboard_tool_calls_total`, the `plugboard_tool_call_duration_seconds` histogram),
// scraped every few seconds, and the calls of the live log as a scatter of durations.
// Charts are hand-drawn SVG; every number is also written out as text.

import { send } from "./api.js";
import { count, fill, h, ms, note, s } from "./util.js";

const SCRAPE_MS = 5000;
const LIVE_KEEP = 120; // calls in the live scatter

/** Prometheus text format 0.0.4: `[{name, labels, value}]`. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** Per tool: calls, errors, and latency (mean, p50, p95 from the histogram), in ms. */
export function perTool(samples) {
  const tools = new Map();
  const get = (name) => {
    if (!tools.has(name)) tools.set(name, { tool: name, calls: 0, errors: 0, sum: 0, count: 0, buckets: new Map() });
    return tools.get(name);
  };
  for (const { name, labels, value } of samples) {
    if (!labels.tool && name !== "plugboard_tool_calls_total") continue;
    const tool = labels.tool || "(unknown tool)";
    if (name === "plugboard_tool_calls_total") {
      const t = get(tool);
      t.calls += value;
      if (labels.outcome !== "ok") t.errors += value;
    } else if (name === "plugboard_tool_call_duration_seconds_bucket") {
      const t = get(tool);
      const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
      t.buckets.set(le, (t.buckets.get(le) || 0) + value);
    } else if (name === "plugboard_tool_call_duration_seconds_sum") get(tool).sum += value;
    else if (name === "plugboard_tool_call_duration_seconds_count") get(tool).count += value;
  }
  return [...tools.values()]
    .map((t) => ({
      tool: t.tool,
      calls: t.calls,
      errors: t.errors,
      mean: t.count ? (t.sum / t.count) * 1000 : null,
      p50: quantile(t.buckets, 0.5),
      p95: quantile(t.buckets, 0.95),
    }))
    .sort((a, b) => b.calls - a.calls || a.tool.localeCompare(b.tool));
}

/** A quantile from cumulative buckets, interpolated within its bucket (as PromQL does). */
function quantile(buckets, q) {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? buckets.get(les[les.length - 1]);
  if (!total) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of les) {
    const c = buckets.get(le);
    if (c >= rank) {
      if (le === Infinity) return lower * 1000;
      const within = c - below;
      return (lower + (le - lower) * (within ? (rank - below) / within : 0)) * 1000;
    }
    lower = le;
    below = c;
  }
  return null;
}

export function start(section) {
  const body = section.querySelector(".body");
  const totals = h("div", { class: "chart-totals" }, note("Loading…"));
  const live = h("div", { class: "chart-live" });
  fill(
    body,
    h("h3", {}, "Since the server started"),
    totals,
    h("h3", {}, "Live: each call's duration"),
    live,
  );
  const calls = [];
  let timer = null;
  const scrape = async () => {
    try {
      const response = await send("/metrics", { headers: { Accept: "text/plain" } });
      const text = await response.text();
      if (!response.ok) fill(totals, note(response.status === 404 ? "This server records no metrics." : `/metrics answered HTTP ${response.status}`));
      else drawTotals(totals, perTool(parseMetrics(text)));
    } catch (err) {
      fill(totals, note(`/metrics could not be read: ${err.message}`, "error"));
    }
  };
  drawLive(live, calls);
  const scraped = scrape();
  setInterval(scrape, SCRAPE_MS);
  return {
    scraped,
    /** A `call_finished` event: into the scatter, and the totals soon after. */
    finished(d) {
      calls.push({ at: Date.now(), tool: d.tool, ms: d.duration_ms, ok: d.outcome === "ok" });
      if (calls.length > LIVE_KEEP) calls.shift();
      drawLive(live, calls);
      clearTimeout(timer);
      timer = setTimeout(scrape, 300);
    },
  };
}

function drawTotals(el, tools) {
  if (!tools.length) return fill(el, note("No calls yet."));
  const maxCalls = Math.max(...tools.map((t) => t.calls), 1);
  const maxMs = Math.max(...tools.map((t) => t.p95 ?? t.mean ?? 0), 0.001);
  fill(
    el,
    h(
      "ul",
      { class: "bars", "aria-label": "Calls, errors and latency per tool" },
      tools.map((t) => {
        const okW = ((t.calls - t.errors) / maxCalls) * 100;
        const errW = (t.errors / maxCalls) * 100;
        const p50W = ((t.p50 ?? 0) / maxMs) * 100;
        const p95W = ((t.p95 ?? 0) / maxMs) * 100;
        return h(
          "li",
          { dataset: { tool: t.tool } },
          h("code", { class: "bar-name" }, t.tool),
          h("span", { class: "bar-text" },
            `${count(t.calls)} calls`,
            t.errors ? h("span", { class: "err" }, `, ${count(t.errors)} failed (${Math.round((t.errors / t.calls) * 100)}%)`) : "",
            t.p50 !== null ? ` · p50 ${ms(t.p50)} · p95 ${ms(t.p95)} · mean ${ms(t.mean)}` : ""),
          s(
            "svg",
            { class: "bar", "aria-hidden": "true", height: 18, width: "100%" },
            s("rect", { class: "bar-ok", x: "0", y: 0, height: 7, width: `${okW}%` }),
            s("rect", { class: "bar-err", x: `${okW}%`, y: 0, height: 7, width: `${errW}%` }),
            s("rect", { class: "bar-p95", x: 0, y: 10, height: 7, width: `${p95W}%` }),
            s("rect", { class: "bar-p50", x: 0, y: 10, height: 7, width: `${p50W}%` }),
          ),
        );
      }),
    ),
    h("p", { class: "legend sub" },
      h("span", { class: "key key-ok" }), "ok ", h("span", { class: "key key-err" }), "failed ",
      h("span", { class: "key key-p50" }), "p50 ", h("span", { class: "key key-p95" }), "p95 latency"),
  );
}

/** The last calls: time across, duration up (log scale), failures in red. */
function drawLive(el, calls) {
  const W = 600;
  const H = 150;
  const pad = { l: 46, r: 8, t: 8, b: 18 };
  const now = Date.now();
  const span = Math.max(10000, calls.length ? (now - calls[0].at) * 1.05 : 0);
  const lo = 0.01;
  const hi = Math.max(10, ...calls.map((c) => c.ms)) * 1.2;
  const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - Math.log(Math.max(v, lo) / lo) / Math.log(hi / lo));
  const x = (at) => pad.l + (W - pad.l - pad.r) * (1 - (now - at) / span);
  const ticks = [0.01, 0.1, 1, 10, 100, 1000, 10000, 100000].filter((t) => t <= hi);
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "scatter", role: "img", "aria-label": `Durations of the last ${calls.length} calls` },
    ticks.map((t) => [
      s("line", { class: "grid", x1: pad.l, x2: W - pad.r, y1: y(t), y2: y(t) }),
      s("text", { class: "axis", x: pad.l - 4, y: y(t) + 3, "text-anchor": "end" }, ms(t)),
    ]),
    s("text", { class: "axis", x: pad.l, y: H - 4 }, `${Math.round(span / 1000)} s ago`),
    s("text", { class: "axis", x: W - pad.r, y: H - 4, "text-anchor": "end" }, "now"),
    calls.map((c) =>
      s("circle", { class: c.ok ? "dot-ok" : "dot-err", cx: x(c.at).toFixed(1), cy: y(c.ms).toFixed(1), r: 3.5 }, s("title", {}, `${c.tool}: ${ms(c.ms)}${c.ok ? "" : " (failed)"}`)),
    ),
  );
  const failed = calls.filter((c) => !c.ok).length;
  fill(el, svg, h("p", { class: "sub" }, calls.length ? `${calls.length} calls since this page opened, ${failed} failed` : "Calls appear here as they happen."));
}
