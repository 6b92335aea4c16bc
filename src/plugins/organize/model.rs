//! What the organizer asks the model, and how an answer is checked: JSON against a schema,
//! then against the request (every document answered once, categories from the taxonomy).
//! An answer that fails is asked for once more with the reason; what still fails is reported.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tags;
use crate::plugin::{ModelReply, ModelRequest, Models, ToolContext, ToolError};

pub const SYSTEM: &str = "You organize a collection of documents into a database. You answer \
    with one JSON object that matches the schema you are given, and nothing else: no prose, no \
    Markdown fences.";

/// A document as the model sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown<'a> {
    pub id: String,
    pub path: &'a str,
    pub title: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub text: &'a str,
}

/// What the model decided for one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Class {
    pub category: String,
    pub tags: Vec<String>,
    pub summary: String,
}

/// Tokens and requests per provider and model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Some counts are estimates (the client's model does not report them: 4 characters a
    /// token).
    pub estimated: bool,
}

pub type Usages = BTreeMap<(String, String), Usage>;

fn add_usage(usages: &mut Usages, reply: &ModelReply, prompt_chars: usize) {
    let u = usages
        .entry((reply.provider.clone(), reply.model.clone()))
        .or_default();
    u.requests += 1;
    match (reply.input_tokens, reply.output_tokens) {
        (Some(i), Some(o)) => {
            u.input_tokens += i;
            u.output_tokens += o;
        }
        _ => {
            u.estimated = true;
            u.input_tokens += (prompt_chars / 4) as u64;
            u.output_tokens += (reply.text.len() / 4) as u64;
        }
    }
}

static TAXONOMY_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "categories": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 60},
                        "description": {"type": "string"}
                    },
                    "required": ["name"]
                }
            }
        },
        "required": ["categories"]
    })
});

static CLASSES_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "documents": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "category": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "summary": {"type": "string", "minLength": 1}
                    },
                    "required": ["id", "category", "tags", "summary"]
                }
            }
        },
        "required": ["documents"]
    })
});

static RELATED_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "documents": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "related": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["id", "related"]
                }
            }
        },
        "required": ["documents"]
    })
});

static RELATED_VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| jsonschema::validator_for(&RELATED_SCHEMA).expect("a valid schema"));

static TAXONOMY_VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| jsonschema::validator_for(&TAXONOMY_SCHEMA).expect("a valid schema"));
static CLASSES_VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| jsonschema::validator_for(&CLASSES_SCHEMA).expect("a valid schema"));

/// The JSON object in a model's answer: the whole text, or what lies between the first `{`
/// and the last `}` (models wrap JSON in fences or a sentence despite being asked not to).
fn json_in(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Ok(v);
    }
    let (Some(start), Some(end)) = (trimmed.find('{'), trimmed.rfind('}')) else {
        return Err("the answer holds no JSON object".into());
    };
    if end < start {
        return Err("the answer holds no JSON object".into());
    }
    serde_json::from_str(&trimmed[start..=end]).map_err(|e| format!("the answer is not JSON: {e}"))
}

fn check(validator: &jsonschema::Validator, value: &Value) -> Result<(), String> {
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("at {at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Ask, check the answer with `accept`, and ask once more with the reason if it fails.
#[allow(clippy::too_many_arguments)]
async fn ask_checked<T>(
    models: &Models,
    cx: &ToolContext,
    provider: Option<&str>,
    prompt: String,
    schema: &Value,
    max_tokens: u32,
    usages: &mut Usages,
    accept: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ToolError> {
    let mut request = ModelRequest {
        system: Some(SYSTEM.to_owned()),
        prompt: prompt.clone(),
        max_tokens: Some(max_tokens),
        provider: provider.map(str::to_owned),
        schema: Some(schema.clone()),
    };
    let mut reason = String::new();
    for attempt in 0..2 {
        let chars = request.prompt.len();
        let reply = models.complete(request.clone(), cx).await?;
        add_usage(usages, &reply, chars);
        match accept(&reply.text) {
            Ok(value) => return Ok(value),
            Err(why) if attempt == 0 => {
                reason = why;
                request.prompt = format!(
                    "{prompt}\n\nYour previous answer could not be used: {reason}.\nIt was:\n{}\n\n\
                     Answer again with only the JSON object, matching the schema.",
                    crate::sandbox::walk::clip(&reply.text, 2000)
                );
            }
            Err(why) => reason = why,
        }
    }
    Err(ToolError::Upstream(format!(
        "the model's answer could not be used, twice: {reason}"
    )))
}

/// A taxonomy for the whole collection: one request over every document's title and opening.
pub async fn propose_taxonomy(
    models: &Models,
    cx: &ToolContext,
    provider: Option<&str>,
    docs: &[Shown<'_>],
    max_categories: usize,
    usages: &mut Usages,
) -> Result<Vec<String>, ToolError> {
    // Each document in a line; about 40,000 characters in all, however many there are.
    let per_doc = (40_000 / docs.len().max(1)).clamp(40, 300);
    let mut listing = String::new();
    for d in docs {
        let opening = crate::sandbox::walk::clip(d.text, per_doc);
        listing.push_str(&format!("- {} — {}: {}\n", d.path, d.title, opening));
    }
    let prompt = format!(
        "Task: propose the categories for organizing the collection below, one taxonomy for \
         all of it: at most {max_categories} categories, each a short name (one to three \
         words, Title Case) with a one-line description, together covering every document, \
         not overlapping.\n\nJSON schema of the answer:\n{}\n\nThe collection ({} documents; \
         path — title: opening):\n{listing}",
        *TAXONOMY_SCHEMA,
        docs.len()
    );
    ask_checked(
        models,
        cx,
        provider,
        prompt,
        &TAXONOMY_SCHEMA,
        2048,
        usages,
        |text| {
            let value = json_in(text)?;
            check(&TAXONOMY_VALIDATOR, &value)?;
            let mut names: Vec<String> = Vec::new();
            for c in value["categories"].as_array().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().trim();
                let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
                if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                    names.push(name);
                }
            }
            if names.len() > max_categories {
                return Err(format!(
                    "{} categories were proposed; at most {max_categories} are allowed",
                    names.len()
                ));
            }
            Ok(names)
        },
    )
    .await
}

/// What came of one request's documents: their classes, and why the others have none.
pub struct Batch {
    pub classes: BTreeMap<String, Class>,
    pub failed: BTreeMap<String, String>,
}

/// Classify a batch of documents in one request.
#[allow(clippy::too_many_arguments)]
pub async fn classify(
    models: &Models,
    cx: &ToolContext,
    provider: Option<&str>,
    docs: &[Shown<'_>],
    categories: &[String],
    max_tags: usize,
    summary_words: usize,
    usages: &mut Usages,
) -> Batch {
    let mut listing = String::new();
    for d in docs {
        listing.push_str(&serde_json::to_string(d).unwrap_or_default());
        listing.push('\n');
    }
    let prompt = format!(
        "Task: classify each document below.\n\
         - category: exactly one of these names: {}\n\
         - tags: 1 to {max_tags} short topic tags (lower case, singular, one to three words)\n\
         - summary: what the document is about, at most {summary_words} words, in its own \
           language\n\
         Answer for every document, by its id.\n\nJSON schema of the answer:\n{}\n\n\
         Documents (one JSON object per line; `text` is the document's opening):\n{listing}",
        serde_json::to_string(categories).unwrap_or_default(),
        *CLASSES_SCHEMA,
    );
    let ids: BTreeSet<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    let accept = |text: &str| -> Result<BTreeMap<String, Class>, String> {
        let value = json_in(text)?;
        check(&CLASSES_VALIDATOR, &value)?;
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for d in value["documents"].as_array().into_iter().flatten() {
            match one_class(d, &ids, categories, max_tags, summary_words) {
                Ok((id, class)) => {
                    out.insert(id, class);
                }
                Err(problem) => problems.push(problem),
            }
        }
        let missing: Vec<&str> = ids
            .iter()
            .filter(|id| !out.contains_key(**id))
            .copied()
            .collect();
        if !missing.is_empty() {
            if problems.is_empty() {
                problems.push(format!("no answer for {}", missing.join(", ")));
            }
            return Err(problems.join("; "));
        }
        Ok(out)
    };
    let max_tokens = (docs.len() * (summary_words * 2 + 80) + 256).min(16_000) as u32;
    // Documents answered well in the first attempt are kept even when others fail twice.
    let best = std::sync::Mutex::new(BTreeMap::new());
    let keep = |text: &str| {
        let result = accept(text);
        if result.is_err()
            && let Ok(value) = json_in(text)
        {
            // What can be used of a partly good answer.
            let partial = partial_classes(&value, &ids, categories, max_tags, summary_words);
            let mut best = best.lock().unwrap_or_else(|e| e.into_inner());
            for (id, class) in partial {
                best.entry(id).or_insert(class);
            }
        }
        result
    };
    match ask_checked(
        models,
        cx,
        provider,
        prompt,
        &CLASSES_SCHEMA,
        max_tokens,
        usages,
        keep,
    )
    .await
    {
        Ok(classes) => Batch {
            classes,
            failed: BTreeMap::new(),
        },
        Err(e) => {
            let classes = best.into_inner().unwrap_or_else(|e| e.into_inner());
            let failed = ids
                .iter()
                .filter(|id| !classes.contains_key(**id))
                .map(|id| (id.to_string(), e.to_string()))
                .collect();
            Batch { classes, failed }
        }
    }
}

/// The documents of an answer that are right on their own.
fn partial_classes(
    value: &Value,
    ids: &BTreeSet<&str>,
    categories: &[String],
    max_tags: usize,
    summary_words: usize,
) -> BTreeMap<String, Class> {
    value["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| one_class(d, ids, categories, max_tags, summary_words).ok())
        .collect()
}

/// One document of an answer: its id and class, or what is wrong with it.
fn one_class(
    d: &Value,
    ids: &BTreeSet<&str>,
    categories: &[String],
    max_tags: usize,
    summary_words: usize,
) -> Result<(String, Class), String> {
    let id = d["id"].as_str().unwrap_or_default();
    if !ids.contains(id) {
        return Err(format!("`{id}` is not one of the documents' ids"));
    }
    let given = d["category"].as_str().unwrap_or_default().trim();
    let Some(category) = categories.iter().find(|c| c.eq_ignore_ascii_case(given)) else {
        return Err(format!(
            "document {id}: `{given}` is not one of the categories"
        ));
    };
    let raw: Vec<String> = d["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let tags = tags::clean(&raw, max_tags);
    if tags.is_empty() {
        return Err(format!("document {id}: no usable tag"));
    }
    let summary = d["summary"].as_str().unwrap_or_default();
    if summary.trim().is_empty() {
        return Err(format!("document {id}: no summary"));
    }
    Ok((
        id.to_owned(),
        Class {
            category: category.clone(),
            tags,
            summary: clip_words(summary, summary_words),
        },
    ))
}

/// A document as the model sees it when it relates documents: what the classification said.
#[derive(Debug, Clone, Serialize)]
pub struct Brief<'a> {
    pub id: String,
    pub title: &'a str,
    pub category: &'a str,
    pub tags: &'a [String],
    pub summary: &'a str,
    /// For a document to relate: the ids of its candidates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

/// The model's judgement of which candidates are related to each document of a batch:
/// document id → the candidate ids it chose (at most `max_related`, strongest first).
pub async fn relate(
    models: &Models,
    cx: &ToolContext,
    provider: Option<&str>,
    docs: &[Brief<'_>],
    candidates: &[Brief<'_>],
    max_related: usize,
    usages: &mut Usages,
) -> Result<BTreeMap<String, Vec<String>>, ToolError> {
    let lines = |briefs: &[Brief<'_>]| -> String {
        briefs
            .iter()
            .map(|b| serde_json::to_string(b).unwrap_or_default() + "\n")
            .collect()
    };
    let prompt = format!(
        "Task: relate documents. For each document below, choose from its `candidates` the \
         ones a reader of it would want linked: on the same subject, or one building on, \
         using or answering the other; not merely sharing a word. At most {max_related} per \
         document, strongest first; an empty list is a fine answer. Answer for every \
         document, by its id.\n\nJSON schema of the answer:\n{}\n\n\
         Candidates (one JSON object per line):\n{}\n\
         Documents to relate (one JSON object per line):\n{}",
        *RELATED_SCHEMA,
        lines(candidates),
        lines(docs),
    );
    let allowed: BTreeMap<&str, BTreeSet<&str>> = docs
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                d.candidates.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let accept = |text: &str| -> Result<BTreeMap<String, Vec<String>>, String> {
        let value = json_in(text)?;
        check(&RELATED_VALIDATOR, &value)?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut problems = Vec::new();
        for d in value["documents"].as_array().into_iter().flatten() {
            let id = d["id"].as_str().unwrap_or_default();
            let Some(theirs) = allowed.get(id) else {
                problems.push(format!("`{id}` is not one of the documents' ids"));
                continue;
            };
            let mut chosen: Vec<String> = Vec::new();
            for c in d["related"].as_array().into_iter().flatten() {
                let c = c.as_str().unwrap_or_default().trim();
                if !theirs.contains(c) {
                    problems.push(format!("document {id}: `{c}` is not one of its candidates"));
                } else if !chosen.iter().any(|k| k == c) {
                    chosen.push(c.to_owned());
                }
            }
            chosen.truncate(max_related);
            out.insert(id.to_owned(), chosen);
        }
        let missing: Vec<&str> = allowed
            .keys()
            .filter(|id| !out.contains_key(**id))
            .copied()
            .collect();
        if !missing.is_empty() {
            problems.push(format!("no answer for {}", missing.join(", ")));
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems.join("; "))
        }
    };
    let max_tokens = (docs.len() * (12 * max_related + 24) + 256).min(8_000) as u32;
    ask_checked(
        models,
        cx,
        provider,
        prompt,
        &RELATED_SCHEMA,
        max_tokens,
        usages,
        accept,
    )
    .await
}

/// At most `max` words, whitespace collapsed.
pub fn clip_words(text: &str, max: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= max {
        words.join(" ")
    } else {
        format!("{}…", words[..max].join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_inside_fences_and_prose() {
        assert_eq!(json_in(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(
            json_in("Sure!\n```json\n{\"a\": [1]}\n```").unwrap(),
            json!({"a": [1]})
        );
        assert!(json_in("no json here").is_err());
        assert!(json_in("} {").is_err());
    }

    #[test]
    fn schema_problems_name_where_they_are() {
        let err = check(&CLASSES_VALIDATOR, &json!({"documents": [{"id": "d1"}]})).unwrap_err();
        assert!(err.contains("/documents/0"), "{err}");
        assert!(check(&TAXONOMY_VALIDATOR, &json!({"categories": [{"name": "A"}]})).is_ok());
        let err = check(
            &RELATED_VALIDATOR,
            &json!({"documents": [{"id": "d1", "related": "c1"}]}),
        )
        .unwrap_err();
        assert!(err.contains("/documents/0/related"), "{err}");
    }

    #[test]
    fn partial_answers_keep_what_is_right() {
        let ids = BTreeSet::from(["d1", "d2"]);
        let cats = vec!["Systems".to_owned()];
        let value = json!({"documents": [
            {"id": "d1", "category": "systems", "tags": ["Kernels"], "summary": "About kernels."},
            {"id": "d2", "category": "Poetry", "tags": ["x"], "summary": "y"},
        ]});
        let got = partial_classes(&value, &ids, &cats, 5, 40);
        assert_eq!(got.len(), 1);
        assert_eq!(got["d1"].category, "Systems");
        assert_eq!(got["d1"].tags, ["kernel"]);
        assert_eq!(clip_words("a b  c d", 2), "a b…");
    }
}
