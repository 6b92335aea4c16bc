//! Portable JSON Schemas from Rust types.
//!
//! schemars' defaults put nested types in `$defs` and reference them with `$ref`, add a
//! `$schema` key, and emit non-standard formats such as `uint32`. Several clients (Copilot CLI,
//! Gemini CLI, Cursor) reject or mangle such schemas, so every schema we publish is inlined,
//! has no `$schema`, and keeps only the standard formats.

use std::collections::BTreeSet;

use rmcp::model::JsonObject;
use schemars::{
    JsonSchema, Schema,
    generate::SchemaSettings,
    transform::{RecursiveTransform, RestrictFormats, Transform},
};

const STANDARD_FORMATS: [&str; 5] = ["date-time", "date", "email", "uri", "uuid"];

fn generate<T: JsonSchema>() -> JsonObject {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let mut formats = RestrictFormats::default();
    formats.infer_from_meta_schema = false;
    formats.allowed_formats = BTreeSet::from(STANDARD_FORMATS.map(Into::into));
    settings
        .transforms
        .push(Box::new(RecursiveTransform(move |s: &mut Schema| {
            formats.transform(s)
        })));
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    compact(&mut value, 0);
    let mut object = match value {
        serde_json::Value::Object(map) => map,
        // `true`/`false` schemas: a type that accepts anything becomes an open object.
        _ => JsonObject::new(),
    };
    object.remove("title");
    object.remove("description");
    object
}

/// Say the same in fewer bytes (every `tools/list` carries them): `additionalProperties:
/// true` is the default and goes; `false` stays on the arguments object itself, and below it
/// goes (the handler's `deny_unknown_fields` refuses an unknown nested key with its name); a
/// `oneOf` of constants (an enum whose variants have doc comments) becomes an `enum`.
fn compact(value: &mut serde_json::Value, depth: usize) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    match map.get("additionalProperties") {
        Some(serde_json::Value::Bool(true)) => {
            map.remove("additionalProperties");
        }
        Some(serde_json::Value::Bool(false)) if depth > 0 => {
            map.remove("additionalProperties");
        }
        _ => {}
    }
    if let Some(serde_json::Value::Array(branches)) = map.get("oneOf")
        && let Some((values, kind)) = constants(branches)
    {
        map.remove("oneOf");
        map.insert("enum".into(), values.into());
        if let Some(kind) = kind {
            map.insert("type".into(), kind);
        }
    }
    for (key, child) in map.iter_mut() {
        match (key.as_str(), child) {
            ("properties", serde_json::Value::Object(properties)) => {
                properties.values_mut().for_each(|p| compact(p, depth + 1));
            }
            ("items" | "additionalProperties", child) => compact(child, depth + 1),
            ("anyOf" | "oneOf" | "allOf", serde_json::Value::Array(branches)) => {
                branches.iter_mut().for_each(|b| compact(b, depth));
            }
            _ => {}
        }
    }
}

/// The values of a `oneOf` whose branches are each one constant (with at most a type and a
/// description), and their common type.
fn constants(
    branches: &[serde_json::Value],
) -> Option<(Vec<serde_json::Value>, Option<serde_json::Value>)> {
    let mut values = Vec::with_capacity(branches.len());
    let mut kind = None;
    for branch in branches {
        let branch = branch.as_object()?;
        if branch
            .keys()
            .any(|k| !["const", "type", "description"].contains(&k.as_str()))
        {
            return None;
        }
        values.push(branch.get("const")?.clone());
        let this = branch.get("type").cloned();
        if kind.is_some() && kind != this {
            return None;
        }
        kind = this;
    }
    (!values.is_empty()).then_some((values, kind))
}

/// Doc comments wrapped at 100 columns become descriptions with hard line breaks; a model
/// reads them better as flowing text. Blank lines (paragraphs) stay. `"default": null` (what
/// `#[serde(default)]` on an `Option` says) tells a model nothing and costs context in every
/// tools/list: it goes.
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("default").is_some_and(serde_json::Value::is_null) {
                map.remove("default");
            }
            for (key, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    other => unwrap_descriptions(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The input schema of a tool whose arguments are `T`. Panics at start-up (a programming error
/// in a built-in plugin, caught by the snapshot tests) if `T` is not an object.
pub fn input_schema<T: JsonSchema>() -> JsonObject {
    let mut object = generate::<T>();
    match object.get("type") {
        Some(serde_json::Value::String(t)) if t == "object" => {}
        None if object.is_empty() => {
            object.insert("type".into(), "object".into());
        }
        other => panic!(
            "tool arguments must be a JSON object, but {} has type {other:?}",
            std::any::type_name::<T>()
        ),
    }
    not_null_when_optional(&mut object);
    object
}

/// An optional argument is one a caller leaves out; `null` in its type (`Option<T>` gives
/// `["string", "null"]`) says nothing more, costs every `tools/list`, and is not understood
/// everywhere (Gemini's function declarations take one type). The manager drops a top-level
/// `null` argument before validating ([`ToolDef::null_is_absent`]), so a model that sends one
/// anyway is not refused.
///
/// [`ToolDef::null_is_absent`]: super::ToolDef::null_is_absent
fn not_null_when_optional(object: &mut JsonObject) {
    let required: BTreeSet<String> = match object.get("required") {
        Some(serde_json::Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => BTreeSet::new(),
    };
    let Some(serde_json::Value::Object(properties)) = object.get_mut("properties") else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        let serde_json::Value::Object(property) = property else {
            continue;
        };
        if required.contains(name) {
            continue;
        }
        // `Option<Enum>`: `anyOf: [{enum…}, {type: null}]`.
        if let Some(serde_json::Value::Array(branches)) = property.get("anyOf")
            && branches.len() == 2
            && let Some(other) = branches
                .iter()
                .position(|b| *b != serde_json::json!({"type": "null"}))
            && branches
                .iter()
                .any(|b| *b == serde_json::json!({"type": "null"}))
            && let Some(serde_json::Value::Object(inner)) = branches.get(other).cloned()
        {
            property.remove("anyOf");
            for (key, value) in inner {
                property.entry(key).or_insert(value);
            }
        }
        if let Some(serde_json::Value::Array(types)) = property.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.pop().expect("one type");
                property.insert("type".into(), only);
            }
        }
        if let Some(serde_json::Value::Array(values)) = property.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
    }
}

/// The schema of a tool's `structuredContent`, in outline: the top-level fields with their
/// types and which are required, nested objects and arrays by their type alone, no
/// descriptions. A client validates results and generates types from it; the model reads the
/// result itself (its text repeats the JSON) and the tool's description, not this. In full the
/// built-ins' output schemas were 14 KB of every `tools/list`, more than half of them
/// descriptions the model never saw.
pub fn output_schema<T: JsonSchema>() -> JsonObject {
    let mut object = generate::<T>();
    outline(&mut object, 0);
    object
}

/// Keep the shape at the top (`depth` 0: the result object's own fields) and only the types
/// below it.
fn outline(schema: &mut JsonObject, depth: usize) {
    for key in ["description", "title", "examples", "default"] {
        schema.remove(key);
    }
    if depth > 0 {
        for key in [
            "properties",
            "required",
            "additionalProperties",
            "patternProperties",
            "minimum",
            "maximum",
        ] {
            schema.remove(key);
        }
    }
    let each = |value: &mut serde_json::Value, depth| {
        if let serde_json::Value::Object(child) = value {
            outline(child, depth);
        }
    };
    if let Some(serde_json::Value::Object(properties)) = schema.get_mut("properties") {
        properties.values_mut().for_each(|p| each(p, depth + 1));
    }
    if let Some(items) = schema.get_mut("items") {
        each(items, depth + 1);
    }
    if let Some(serde_json::Value::Object(extra)) = schema.get_mut("additionalProperties") {
        extra.remove("description");
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(serde_json::Value::Array(branches)) = schema.get_mut(key) {
            branches.iter_mut().for_each(|b| each(b, depth));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Range {
        start: u32,
        end: Option<u32>,
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Args {
        /// The path,
        /// relative to a root.
        ///
        /// Second paragraph.
        path: String,
        range: Option<Range>,
        #[serde(default)]
        limit: Option<u64>,
    }

    #[test]
    fn schemas_are_inlined_and_portable() {
        let schema = serde_json::Value::Object(input_schema::<Args>());
        let text = schema.to_string();
        assert!(!text.contains("$ref"), "{text}");
        assert!(!text.contains("$defs"), "{text}");
        assert!(!text.contains("$schema"), "{text}");
        assert!(!text.contains("uint"), "{text}");
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]["range"]["properties"]["start"]["type"],
            "integer"
        );
        assert_eq!(schema["required"], serde_json::json!(["path"]));
        // Optional, so not null: leaving it out says the same.
        assert_eq!(schema["properties"]["limit"]["type"], "integer");
        assert_eq!(schema["properties"]["range"]["type"], "object");
        assert!(!text.contains("\"default\":null"), "{text}");
        assert_eq!(
            schema["properties"]["path"]["description"],
            "The path, relative to a root.\n\nSecond paragraph."
        );
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        /// Only the fields given.
        Merge,
        /// Every field.
        Replace,
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Item {
        id: String,
        extra: serde_json::Map<String, serde_json::Value>,
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Compact {
        items: Vec<Item>,
        mode: Option<Mode>,
    }

    #[test]
    fn schemas_say_it_in_few_bytes() {
        let schema = serde_json::Value::Object(input_schema::<Compact>());
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": { "type": "string" },
                                "extra": { "type": "object" },
                            },
                            "required": ["id", "extra"],
                        },
                    },
                    "mode": { "type": "string", "enum": ["merge", "replace"] },
                },
                "required": ["items"],
            })
        );
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Answer {
        /// Read by no model.
        count: u32,
        ranges: Vec<Range>,
        first: Option<Range>,
    }

    #[test]
    fn output_schemas_are_outlines() {
        let schema = serde_json::Value::Object(output_schema::<Answer>());
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "count": { "type": "integer" },
                    "ranges": { "type": "array", "items": { "type": "object" } },
                    "first": { "type": ["object", "null"] },
                },
                "required": ["count", "ranges"],
            })
        );
    }
}
