// Small helpers every panel uses: building elements without innerHTML (nothing a server or a
// tool sends is ever parsed as HTML), and formatting numbers for people.

/** An element: `h("button", {class: "x", onclick: f}, "text", child)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element (attributes only; text through `textContent`). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Milliseconds for people: `0.42 ms`, `12 ms`, `3.4 s`. */
export function ms(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return "–";
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(value < 10000 ? 2 : 1)} s`;
}

/** A count with thousands separators. */
export function count(value) {
  return value === undefined || value === null ? "–" : Number(value).toLocaleString("en");
}

/** Dollars: `$0.0042`, `$1.20`; `null` (no price configured) says so. */
export function usd(value) {
  if (value === undefined || value === null) return "no price set";
  if (value === 0) return "$0";
  return value < 0.01 ? `$${value.toPrecision(2)}` : `$${value.toFixed(2)}`;
}

/** A clock time from an RFC 3339 stamp. */
export function clock(at) {
  const d = at ? new Date(at) : new Date();
  return Number.isNaN(d.getTime()) ? String(at) : d.toLocaleTimeString("en-GB");
}

/** JSON for reading. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A short status line in a panel (role=status so it is announced). */
export function note(text, kind = "") {
  return h("p", { class: `note ${kind}`.trim(), role: kind === "error" ? "alert" : "status" }, text);
}
