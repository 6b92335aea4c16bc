// A tool's answer as an MCP client sees it — content blocks (text, images, resources),
// structuredContent, isError — and problem documents (RFC 9457) as what went wrong and
// what to do about it.

import { h, pretty } from "./util.js";

/** The view of a call's answer: `{status, body, problem, text}` from `api()`. */
export function answerView(answer) {
  if (answer.ok && answer.body && Array.isArray(answer.body.content)) {
    return resultView(answer.body);
  }
  return problemView(answer, "The call failed");
}

/** A CallResult: `{content, structuredContent, isError}`. */
export function resultView(result) {
  const error = result.isError === true;
  return h(
    "div",
    {
      class: `result ${error ? "is-error" : "is-ok"}`,
      role: error ? "alert" : "status",
      dataset: { outcome: error ? "tool_error" : "ok" },
    },
    h("p", { class: "result-head" }, error ? "Tool error (isError: true)" : "Result"),
    (result.content || []).map(block),
    result.structuredContent !== undefined && result.structuredContent !== null
      ? h(
          "details",
          { class: "structured", open: !(result.content || []).length },
          h("summary", {}, "structuredContent"),
          h("pre", {}, pretty(result.structuredContent)),
        )
      : null,
    (result.content || []).length === 0 && result.structuredContent == null
      ? h("p", { class: "note" }, "(no content)")
      : null,
  );
}

function block(c) {
  switch (c.type) {
    case "text":
      return h("pre", { class: "block text" }, c.text);
    case "image":
      return h(
        "figure",
        { class: "block image" },
        h("img", { src: `data:${c.mimeType};base64,${c.data}`, alt: `image returned by the tool (${c.mimeType})` }),
        h("figcaption", {}, c.mimeType),
      );
    case "audio":
      return h("p", { class: "block audio" }, `audio (${c.mimeType}, ${Math.round((c.data || "").length * 0.75)} bytes)`);
    case "resource_link":
      return h(
        "div",
        { class: "block resource" },
        h("p", {}, h("span", { class: "badge off" }, "resource link"), " ", h("code", {}, c.uri)),
        c.name || c.description ? h("p", { class: "sub" }, [c.name, c.description].filter(Boolean).join(" — ")) : null,
      );
    case "resource": {
      const r = c.resource || {};
      return h(
        "div",
        { class: "block resource" },
        h("p", {}, h("span", { class: "badge off" }, "resource"), " ", h("code", {}, r.uri || ""), r.mimeType ? ` (${r.mimeType})` : ""),
        r.text !== undefined
          ? h("pre", {}, r.text)
          : r.blob !== undefined && (r.mimeType || "").startsWith("image/")
            ? h("img", { src: `data:${r.mimeType};base64,${r.blob}`, alt: `resource ${r.uri || ""}` })
            : h("p", { class: "sub" }, `${Math.round((r.blob || "").length * 0.75)} bytes of binary data`),
      );
    }
    default:
      return h("pre", { class: "block other" }, pretty(c));
  }
}

/** A problem document, or whatever else a failed request answered. */
export function problemView(answer, fallback = "The request failed") {
  const p = answer.problem;
  if (p) {
    return h(
      "div",
      { class: "problem", role: "alert", dataset: { status: String(p.status), type: p.type || "" } },
      h("p", { class: "problem-title" }, h("strong", {}, p.title || fallback), ` — HTTP ${p.status}`),
      p.detail ? h("p", { class: "problem-detail" }, p.detail) : null,
      h(
        "dl",
        { class: "problem-fields" },
        ["type", "tool", "plugin", "retry_after"]
          .filter((k) => p[k] !== undefined)
          .map((k) => [h("dt", {}, k), h("dd", {}, h("code", {}, String(p[k])))]),
      ),
    );
  }
  return h(
    "div",
    { class: "problem", role: "alert", dataset: { status: String(answer.status) } },
    h("p", { class: "problem-title" }, h("strong", {}, fallback), answer.status ? ` — HTTP ${answer.status}` : ""),
    answer.text ? h("p", { class: "problem-detail" }, answer.text.slice(0, 2000)) : null,
  );
}
