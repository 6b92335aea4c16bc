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
    let mut object = match value {
        serde_json::Value::Object(map) => map,
        // `true`/`false` schemas: a type that accepts anything becomes an open object.
        _ => JsonObject::new(),
    };
    object.remove("title");
    object.remove("description");
    object
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
    object
}

/// The schema of a tool's `structuredContent`.
pub fn output_schema<T: JsonSchema>() -> JsonObject {
    generate::<T>()
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
        assert!(!text.contains("\"default\":null"), "{text}");
        assert_eq!(
            schema["properties"]["path"]["description"],
            "The path, relative to a root.\n\nSecond paragraph."
        );
    }
}
