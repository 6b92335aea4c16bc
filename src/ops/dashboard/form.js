// A form from a tool's input schema (JSON Schema as schemars and MCP servers write it):
// strings, numbers, integers, booleans, enums, arrays and nested objects get their own
// inputs; anything else (unions, maps, `$ref` cycles) a JSON textarea. An empty optional
// input is left out of the arguments, so the server's defaults apply.

import { h, pretty } from "./util.js";

let next = 0;
const uid = (what) => `f${++next}-${what.replace(/[^\w-]/g, "_")}`;

/** A field the user got wrong: the form says which and why. */
export class FieldError extends Error {}

/** `{el, read()}` for the tool's arguments; `read()` throws FieldError. */
export function schemaForm(schema) {
  const root = schema || {};
  const { schema: top } = resolve(root, root);
  const props = top.properties || {};
  if (top.type !== "object" && !top.properties) return jsonField("arguments", root, root, true);
  const names = Object.keys(props);
  if (names.length === 0 && !top.additionalProperties) {
    return { el: h("p", { class: "note" }, "This tool takes no arguments."), read: () => ({}) };
  }
  if (names.length === 0) return jsonField("arguments", top, root, true);
  const required = new Set(top.required || []);
  const fields = names.map((name) => [name, field(name, props[name], root, required.has(name), 0)]);
  return {
    el: h("div", { class: "fields" }, fields.map(([, f]) => f.el)),
    read: () => {
      const args = {};
      for (const [name, f] of fields) {
        const value = f.read();
        if (value !== undefined) args[name] = value;
      }
      return args;
    },
  };
}

/** Follow `$ref`s and unwrap `Option<T>` (`type: [T, "null"]`, `anyOf: [T, {type: null}]`). */
function resolve(schema, root, depth = 0) {
  let s = schema === true || !schema ? {} : schema;
  let nullable = false;
  for (let i = 0; i < 16; i++) {
    if (s.$ref) {
      const target = lookup(root, s.$ref);
      if (!target) break;
      const { $ref, ...rest } = s;
      s = { ...target, ...rest };
      continue;
    }
    if (Array.isArray(s.type) && s.type.includes("null")) {
      const types = s.type.filter((t) => t !== "null");
      nullable = true;
      s = { ...s, type: types.length === 1 ? types[0] : types };
      continue;
    }
    const union = s.anyOf || s.oneOf;
    if (union) {
      const real = union.filter((v) => !(v && v.type === "null"));
      if (real.length === 1 && real.length < union.length) {
        const { anyOf, oneOf, ...rest } = s;
        nullable = true;
        s = { ...rest, ...real[0] };
        continue;
      }
    }
    if (Array.isArray(s.allOf) && s.allOf.length === 1) {
      const { allOf, ...rest } = s;
      s = { ...allOf[0], ...rest };
      continue;
    }
    break;
  }
  return { schema: s, nullable, depth };
}

function lookup(root, ref) {
  if (!ref.startsWith("#/")) return null;
  let at = root;
  for (const part of ref.slice(2).split("/")) {
    at = at?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return at && typeof at === "object" ? at : null;
}

const primitive = (s) =>
  Array.isArray(s.enum) || ["string", "number", "integer", "boolean"].includes(s.type);

/** One input for `name`; nested objects and arrays recurse (not past a few levels). */
function field(name, raw, root, required, depth) {
  const { schema: s, nullable } = resolve(raw, root);
  const optional = !required || nullable;
  if (depth > 3) return jsonField(name, s, root, required);
  if (Array.isArray(s.enum) && s.enum.every((v) => v === null || typeof v !== "object")) {
    return enumField(name, s, optional);
  }
  if ("const" in s) {
    return labelled(name, s, required, h("output", {}, JSON.stringify(s.const)), () => s.const);
  }
  switch (s.type) {
    case "string":
      return stringField(name, s, required);
    case "number":
    case "integer":
      return numberField(name, s, required);
    case "boolean":
      return booleanField(name, s, optional);
    case "array":
      return arrayField(name, s, root, required, depth);
    case "object":
      if (s.properties && Object.keys(s.properties).length) return objectField(name, s, root, required, depth);
      return jsonField(name, s, root, required);
    default:
      return jsonField(name, s, root, required);
  }
}

/** A label, the input, the schema's description as its hint. */
function labelled(name, s, required, input, read, extra = "") {
  const id = input.id || uid(name);
  input.id = id;
  const hint = s.description ? h("span", { class: "hint", id: `${id}-hint` }, s.description) : null;
  if (hint) input.setAttribute("aria-describedby", hint.id);
  if (required) input.setAttribute("aria-required", "true");
  const el = h(
    "div",
    { class: "field", dataset: { field: name } },
    h("label", { for: id }, h("span", { class: "fname" }, name), required ? h("span", { class: "req", title: "required" }, " *") : null, extra ? h("span", { class: "ftype" }, ` ${extra}`) : null),
    input,
    hint,
  );
  return { el, read };
}

function stringField(name, s, required) {
  const long = (s.maxLength || 0) > 200 || /content|body|text|prompt|query|message|markdown|description|code/i.test(name);
  const input = long
    ? h("textarea", { name, rows: 3 })
    : h("input", { name, type: s.format === "uri" ? "url" : "text", autocomplete: "off" });
  if (s.default !== undefined) input.value = String(s.default);
  if (s.examples?.length) input.placeholder = String(s.examples[0]);
  return labelled(name, s, required, input, () => (input.value === "" ? undefined : input.value), "text");
}

function numberField(name, s, required) {
  const input = h("input", { name, type: "number", step: s.type === "integer" ? "1" : "any", inputmode: s.type === "integer" ? "numeric" : "decimal" });
  if (s.default !== undefined) input.value = String(s.default);
  const read = () => {
    if (input.validity.badInput) throw new FieldError(`${name}: not a number`);
    if (input.value === "") return undefined;
    const n = Number(input.value);
    if (s.type === "integer" && !Number.isInteger(n)) throw new FieldError(`${name}: a whole number, please`);
    return n;
  };
  return labelled(name, s, required, input, read, s.type);
}

function booleanField(name, s, optional) {
  if (!optional) {
    const input = h("input", { name, type: "checkbox", checked: s.default === true });
    const f = labelled(name, s, true, input, () => input.checked, "yes/no");
    f.el.classList.add("check");
    return f;
  }
  const input = h(
    "select",
    { name },
    h("option", { value: "" }, s.default === undefined ? "(not set)" : `(default: ${s.default})`),
    h("option", { value: "true" }, "true"),
    h("option", { value: "false" }, "false"),
  );
  return labelled(name, s, false, input, () => (input.value === "" ? undefined : input.value === "true"), "yes/no");
}

function enumField(name, s, optional) {
  const input = h(
    "select",
    { name },
    optional ? h("option", { value: "" }, s.default === undefined ? "(not set)" : `(default: ${s.default})`) : null,
    s.enum.map((v, i) => h("option", { value: String(i), selected: !optional && v === s.default }, v === null ? "null" : String(v))),
  );
  return labelled(name, s, !optional, input, () => (input.value === "" ? undefined : s.enum[Number(input.value)]), "choice");
}

function jsonField(name, s, root, required) {
  const input = h("textarea", { name, rows: 4, class: "json", spellcheck: "false" });
  if (s.default !== undefined) input.value = pretty(s.default);
  input.placeholder = placeholder(s);
  const read = () => {
    if (input.value.trim() === "") return undefined;
    try {
      return JSON.parse(input.value);
    } catch (e) {
      throw new FieldError(`${name}: not valid JSON (${e.message})`);
    }
  };
  return labelled(name, s, required, input, read, "JSON");
}

function placeholder(s) {
  if (s.type === "array") return "[ … ]";
  if (s.type === "object" || s.properties || s.additionalProperties) return "{ … }";
  return "JSON";
}

function objectField(name, s, root, required, depth) {
  const req = new Set(s.required || []);
  const fields = Object.entries(s.properties).map(([k, v]) => [k, field(k, v, root, req.has(k), depth + 1)]);
  const el = h(
    "fieldset",
    { class: "object", dataset: { field: name } },
    h("legend", {}, name, required ? h("span", { class: "req" }, " *") : null),
    s.description ? h("p", { class: "hint" }, s.description) : null,
    fields.map(([, f]) => f.el),
  );
  const read = () => {
    const out = {};
    for (const [k, f] of fields) {
      const v = f.read();
      if (v !== undefined) out[k] = v;
    }
    return Object.keys(out).length || required ? out : undefined;
  };
  return { el, read };
}

/** A list of items, each its own field, with add and remove buttons. */
function arrayField(name, s, root, required, depth) {
  const { schema: items } = resolve(s.items || {}, root);
  if (!(primitive(items) || (items.type === "object" && items.properties))) return jsonField(name, s, root, required);
  const list = h("ol", { class: "items" });
  const entries = [];
  const add = () => {
    const f = field(`${name}[${entries.length + 1}]`, s.items, root, true, depth + 1);
    const entry = { f };
    const remove = h("button", {
      type: "button",
      class: "small quiet",
      "aria-label": `Remove item from ${name}`,
      onclick: () => {
        entries.splice(entries.indexOf(entry), 1);
        li.remove();
        addButton.focus();
      },
    }, "Remove");
    const li = h("li", {}, f.el, remove);
    list.append(li);
    entries.push(entry);
    li.querySelector("input, select, textarea")?.focus();
  };
  const addButton = h("button", { type: "button", class: "small", onclick: add }, `Add to ${name}`);
  const el = h(
    "fieldset",
    { class: "array", dataset: { field: name } },
    h("legend", {}, name, required ? h("span", { class: "req" }, " *") : null, h("span", { class: "ftype" }, " list")),
    s.description ? h("p", { class: "hint" }, s.description) : null,
    list,
    addButton,
  );
  const read = () => {
    const values = entries.map((e) => e.f.read()).filter((v) => v !== undefined);
    return values.length || required ? values : undefined;
  };
  return { el, read };
}
