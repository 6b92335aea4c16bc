//! One organize run: scan the folder (files_analyze), read the table (describe_base,
//! list_records), tell unchanged documents by their content hash, classify the others (one
//! taxonomy, batches of documents per model request, a bounded number in flight), relate
//! them, and answer the plan — or, with `apply`, create what is missing, upsert the records on
//! their path (batches of 10, through the airtable plugin's pacer) and write the links.
//!
//! What the model said is kept in a checkpoint, by content hash, until the records are
//! written: the apply after a dry run, and a run after an interrupted one, ask nothing again.
//! Writes are upserts on the path and link updates computed from what is stored, so any run
//! repeated — after a kill at any point — ends with one record per document, never two.
//!
//! One file because a run is one state machine whose steps share the checkpoint and the plan
//! being built; most of its length is the tests of that machine. Its seams, should it grow:
//! the plan (diffing against the table) and the writer (upserts, then links).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use futures::{StreamExt, stream};
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::{
    FieldNames, Inner, OrganizeArgs,
    model::{self, Class, Shown, Usages},
    report,
    tags::{self, Profile},
};
use crate::{
    net::checkpoints::Checkpoints,
    plugin::{ToolContext, ToolError, ToolOutcome},
};

/// The tools the organizer works through: (built-in plugin, tool).
const NEEDS: [(&str, &str); 6] = [
    ("files", "analyze"),
    ("airtable", "describe_base"),
    ("airtable", "list_records"),
    ("airtable", "upsert_records"),
    ("airtable", "update_records"),
    ("airtable", "create_field"),
];

/// Most documents one run organizes (files_analyze's limit).
const MAX_DOCUMENTS: usize = 1000;

/// Airtable writes at most this many records per request.
const BATCH: usize = 10;

// ---- what the answer says ------------------------------------------------------------------

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Outcome {
    /// False: this is the plan, nothing was written.
    pub applied: bool,
    /// `files` (a folder's documents) or `records` (the table's own records, in place).
    pub source: String,
    pub base: String,
    pub table: String,
    /// The folder organized, relative to its root.
    pub folder: String,
    /// Documents found.
    pub documents: usize,
    /// Records per category, after the run (or the plan).
    pub categories: Vec<CategoryCount>,
    /// Where the categories came from: `given`, `table` (the field's options), `proposed`
    /// (by the model, for this collection) or `kept` (from this run's checkpoint).
    pub taxonomy: String,
    /// Records to create (created, when applied).
    pub create: Vec<Planned>,
    /// Records to update, with the fields that change (updated, when applied).
    pub update: Vec<Planned>,
    /// Documents whose record is up to date (same content hash).
    pub unchanged: usize,
    /// Documents that could not be organized, and why.
    pub failed: Vec<Problem>,
    /// Files that are not documents the organizer reads, and why.
    pub skipped: Vec<Problem>,
    /// Files skipped in all (the list above is capped).
    pub skipped_total: usize,
    /// Fields missing from the table (created on apply when allowed).
    pub fields_to_create: Vec<FieldPlan>,
    /// Select options that do not exist yet (created by the writes, as Airtable does with
    /// `typecast`).
    pub options_to_create: BTreeMap<String, Vec<String>>,
    /// Distinct tags across the records.
    pub tags: usize,
    /// Related-document links (each pair once; stored in both records).
    pub links: usize,
    /// Records whose links change.
    pub link_updates: usize,
    /// Documents whose links the model chose in this run (the new and changed ones, or
    /// every one with `relink`); links between other documents stay as the table has them.
    pub links_judged: usize,
    /// Model requests, tokens and estimated cost per provider and model (this run's, the
    /// dry run's included when its classification was reused).
    pub models: Vec<ModelUse>,
    /// Airtable requests this run made (reads, and writes when applied) and, for a plan,
    /// the writes apply will make.
    pub airtable_requests: AirtableRequests,
    pub warnings: Vec<String>,
    pub wall_ms: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CategoryCount {
    pub name: String,
    pub records: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Planned {
    pub path: String,
    /// The record (for updates, and for creates once applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub title: String,
    pub category: String,
    pub tags: Vec<String>,
    pub summary: String,
    /// For updates: field → `{"from": …, "to": …}` for each field that changes.
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schemars(with = "BTreeMap<String, Value>")]
    pub changes: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FieldPlan {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelUse {
    pub provider: String,
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Token counts estimated (the client's model does not report them).
    pub estimated_tokens: bool,
    /// US dollars, from the settings' prices; absent for a model without a price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct AirtableRequests {
    pub reads: usize,
    pub writes: usize,
    /// For a plan: the writes apply will make.
    pub planned_writes: usize,
}

// ---- the host: tools through the manager ---------------------------------------------------

struct Host<'a> {
    inner: &'a Inner,
    cx: &'a ToolContext,
    /// `files_analyze` → its published name (the plugins' prefixes are their manifests').
    names: HashMap<String, String>,
}

impl Host<'_> {
    fn require(&mut self) -> Result<(), ToolError> {
        let have: BTreeSet<String> = self
            .inner
            .toolbox
            .tools(self.cx.caller())
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        let mut missing = Vec::new();
        for (kind, local) in NEEDS {
            let usual = format!("{kind}_{local}");
            match self.inner.toolbox.find_tool(kind, local) {
                Some(name) if have.contains(&name) => {
                    self.names.insert(usual, name);
                }
                _ => missing.push(usual),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(ToolError::Failed(format!(
            "airtable_ai_organize works through the files and airtable plugins' tools, and \
             these are not available here: {}. Check that both plugins are ready \
             (`plugboard plugins`: the airtable plugin needs AIRTABLE_API_KEY, the files \
             plugin PLUGBOARD_FILES_ROOTS) and that this session may use them",
            missing.join(", ")
        )))
    }

    /// Call a published tool; its structured answer, or its error as ours.
    async fn call(&self, tool: &str, args: Value) -> Result<Value, ToolError> {
        let Value::Object(args) = args else {
            return Err(ToolError::Failed(format!(
                "{tool}: arguments must be an object"
            )));
        };
        let inner = self.cx.inner(self.cx.caller().face);
        let name = self.names.get(tool).map_or(tool, String::as_str);
        let result = self.inner.toolbox.call(name, args, inner).await;
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(format!("{tool}: {}", text_of(&result))));
        }
        result
            .structured_content
            .ok_or_else(|| ToolError::Failed(format!("{tool} answered without structured content")))
    }
}

fn text_of(result: &CallToolResult) -> String {
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    if text.is_empty() {
        result
            .structured_content
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_else(|| "failed".into())
    } else {
        text.join("\n")
    }
}

// ---- documents, records and the checkpoint -------------------------------------------------

/// A document found by the scan, or a record organized in place.
struct Doc {
    /// The file's path; for a record organized in place, its id.
    path: String,
    title: String,
    kind: String,
    extract: String,
    hash: String,
    /// A record of the table itself, updated by id (not upserted on a path).
    in_place: bool,
}

/// A record already in the table.
#[derive(Clone)]
struct Record {
    id: String,
    fields: Map<String, Value>,
}

impl Record {
    fn text(&self, field: &str) -> String {
        match self.fields.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }

    fn list(&self, field: &str) -> Vec<String> {
        match self.fields.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// What the record says its document is (for unchanged documents).
    fn class(&self, f: &FieldNames) -> Class {
        Class {
            category: self.text(&f.category),
            tags: self.list(&f.tags),
            summary: self.text(&f.summary),
        }
    }
}

/// What a run keeps until its records are written.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    taxonomy: Option<Vec<String>>,
    /// Content hash → what the model said.
    classes: BTreeMap<String, Class>,
    /// The model use that produced them (reported again by the apply that reuses them).
    usage: Vec<(String, String, model::Usage)>,
    /// Which of its candidates the model related a document to: a key of the document's and
    /// the candidates' content hashes → the chosen candidates' hashes.
    #[serde(default)]
    links: BTreeMap<String, Vec<String>>,
    /// Documents whose links this job decides (kept before any record is written: a run
    /// stopped before its links were written leaves records that look unchanged next time,
    /// and their links are still to be decided).
    #[serde(default)]
    unlinked: BTreeSet<String>,
}

/// Where this run's checkpoint is kept: its job id (the collection, the folder and the
/// fields) in the plugin's checkpoints.
struct Keep<'a> {
    checkpoints: &'a Checkpoints,
    job: String,
}

impl<'a> Keep<'a> {
    fn new(inner: &'a Inner, args: &OrganizeArgs, table_id: &str, folder: &str) -> Self {
        let mut h = sha2::Sha256::new();
        for part in [
            args.base.as_str(),
            table_id,
            folder,
            args.glob.as_deref().unwrap_or(""),
            &serde_json::to_string(&inner.settings.fields).unwrap_or_default(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        Self {
            checkpoints: &inner.checkpoints,
            job: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    async fn load(&self) -> Checkpoint {
        self.checkpoints.load(&self.job).await.unwrap_or_default()
    }

    async fn save(&self, checkpoint: &Checkpoint) {
        self.checkpoints.save(&self.job, checkpoint).await;
    }

    async fn remove(&self) {
        self.checkpoints.remove(&self.job).await;
    }
}

// ---- the run -------------------------------------------------------------------------------

pub async fn organize(inner: Arc<Inner>, args: OrganizeArgs, cx: ToolContext) -> ToolOutcome {
    let started = Instant::now();
    let mut host = Host {
        inner: &inner,
        cx: &cx,
        names: HashMap::new(),
    };
    host.require()?;
    let host = host;
    let settings = &inner.settings;
    let f = &settings.fields;
    let apply = args.apply.unwrap_or(false);
    let max_tags = args.max_tags.unwrap_or(settings.max_tags).clamp(1, 20);
    let summary_words = args
        .summary_words
        .unwrap_or(settings.summary_words)
        .clamp(5, 300);
    let link_related = args.link_related.unwrap_or(true);
    let judge_links = link_related && settings.judge_links;
    let create_fields = args.create_fields.unwrap_or(settings.create_fields);
    let provider = args
        .provider
        .clone()
        .or_else(|| (!settings.provider.is_empty()).then(|| settings.provider.clone()));
    let mut out = Outcome {
        applied: apply,
        source: if args.path.is_some() {
            "files"
        } else {
            "records"
        }
        .into(),
        base: args.base.clone(),
        ..Outcome::default()
    };

    // 1. The documents: a folder's, or (without `path`) the table's own records, read below.
    let records_source = args.path.is_none();
    let mut docs: Vec<Doc> = Vec::new();
    if let Some(folder_arg) = &args.path {
        let mut scan_args = json!({
            "path": folder_arg,
            "limit": MAX_DOCUMENTS,
            "extract_chars": settings.extract_chars.clamp(1, 8000),
            "hash": true,
        });
        if let Some(glob) = &args.glob {
            scan_args["glob"] = glob.clone().into();
        }
        if let Some(ignored) = args.include_ignored {
            scan_args["include_ignored"] = ignored.into();
        }
        let scan = host.call("files_analyze", scan_args).await?;
        out.folder = scan["folder"].as_str().unwrap_or_default().to_owned();
        docs = scan["documents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| Doc {
                path: d["path"].as_str().unwrap_or_default().to_owned(),
                title: d["title"].as_str().unwrap_or_default().to_owned(),
                kind: d["type"].as_str().unwrap_or_default().to_owned(),
                extract: d["extract"].as_str().unwrap_or_default().to_owned(),
                hash: d["sha256"].as_str().unwrap_or_default().to_owned(),
                in_place: false,
            })
            .collect();
        out.skipped = scan["skipped"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Problem {
                path: s["path"].as_str().unwrap_or_default().to_owned(),
                reason: s["reason"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        out.skipped_total = scan["skipped_total"].as_u64().unwrap_or(0) as usize;
        if scan["truncated"] == true {
            out.warnings.push(format!(
                "the folder holds {} documents; this run organizes the first {MAX_DOCUMENTS} by \
                 path: narrow `path` or `glob` and run again for the rest",
                scan["total_found"]
            ));
        }
        out.documents = docs.len();
    } else {
        out.folder = "(the table's records)".into();
    }
    // 2. The table.
    let schema = host
        .call(
            "airtable_describe_base",
            json!({"base": args.base, "tables": [args.table], "detail": "full"}),
        )
        .await?;
    out.airtable_requests.reads += 1;
    let table = schema["tables"]
        .as_array()
        .and_then(|t| t.first())
        .cloned()
        .ok_or_else(|| {
            ToolError::NotFound(format!(
                "base {} has no table `{}`: create it first (airtable_create_table, any \
                 primary field) and the organizer adds the fields it needs",
                args.base, args.table
            ))
        })?;
    let table_id = table["id"].as_str().unwrap_or(&args.table).to_owned();
    out.table = table["name"].as_str().unwrap_or(&args.table).to_owned();
    let fields: HashMap<String, Value> = table["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|fd| Some((fd["name"].as_str()?.to_owned(), fd.clone())))
        .collect();
    // The record's name, for the records source: the title field, else the primary field.
    let primary: String = if fields.contains_key(&f.title) {
        f.title.clone()
    } else {
        table["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|fd| fd["id"] == table["primaryFieldId"])
            .and_then(|fd| fd["name"].as_str())
            .unwrap_or(&f.title)
            .to_owned()
    };
    let choices = |name: &str| -> Vec<String> {
        fields
            .get(name)
            .and_then(|fd| fd["options"]["choices"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let roles: Vec<(&str, &str)> = {
        let mut r = vec![
            (f.category.as_str(), "singleSelect"),
            (f.tags.as_str(), "multipleSelects"),
            (f.summary.as_str(), "multilineText"),
            (f.status.as_str(), "singleSelect"),
            (f.hash.as_str(), "singleLineText"),
        ];
        if !records_source {
            r.insert(0, (f.title.as_str(), "singleLineText"));
            r.insert(4, (f.path.as_str(), "singleLineText"));
        }
        if link_related {
            r.push((f.related.as_str(), "multipleRecordLinks"));
        }
        r
    };
    out.fields_to_create = roles
        .iter()
        .filter(|(name, _)| !fields.contains_key(*name))
        .map(|(name, kind)| FieldPlan {
            name: (*name).to_owned(),
            kind: (*kind).to_owned(),
        })
        .collect();
    if link_related
        && let Some(fd) = fields.get(&f.related)
        && fd["type"] != "multipleRecordLinks"
    {
        return Err(ToolError::InvalidArguments(format!(
            "the field `{}` is a {} field, not a link to records: rename it, set \
             settings.fields.related to another name, or pass link_related: false",
            f.related, fd["type"]
        )));
    }

    // 3. The records already there, by path.
    let mut existing: HashMap<String, Record> = HashMap::new();
    let mut path_of_id: HashMap<String, String> = HashMap::new();
    if records_source || fields.contains_key(&f.path) {
        let wanted: Vec<&str> = roles
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| fields.contains_key(*name))
            .collect();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = json!({
                "base": args.base,
                "table": table_id,
                "limit": 1000,
            });
            if !records_source {
                list["fields"] = json!(wanted);
            }
            if let Some(c) = &cursor {
                list["cursor"] = c.clone().into();
            }
            let page = host.call("airtable_list_records", list).await?;
            let count = page["records"].as_array().map_or(0, Vec::len);
            out.airtable_requests.reads += count.div_ceil(100).max(1);
            for r in page["records"].as_array().into_iter().flatten() {
                let record = Record {
                    id: r["id"].as_str().unwrap_or_default().to_owned(),
                    fields: r["fields"].as_object().cloned().unwrap_or_default(),
                };
                if records_source {
                    // The record is the document, known by its id.
                    docs.push(record_doc(&record, f, &primary, settings.extract_chars));
                    path_of_id.insert(record.id.clone(), record.id.clone());
                    existing.insert(record.id.clone(), record);
                    continue;
                }
                let path = record.text(&f.path);
                if path.is_empty() {
                    continue;
                }
                path_of_id.insert(record.id.clone(), path.clone());
                existing.entry(path).or_insert(record);
            }
            match page["next_cursor"].as_str() {
                Some(c) if page["truncated"] == true => cursor = Some(c.to_owned()),
                _ => break,
            }
        }
    }

    if records_source {
        out.documents = docs.len();
    }

    // 4. What changed.
    let needs_class: Vec<&Doc> = docs
        .iter()
        .filter(|d| {
            existing
                .get(&d.path)
                .is_none_or(|r| r.text(&f.hash) != d.hash)
        })
        .collect();
    out.unchanged = docs.len() - needs_class.len();

    // 5. The taxonomy, and what the model says of each changed document.
    let keep = Keep::new(&inner, &args, &table_id, &out.folder);
    // One replica at a time runs a given collection's organize (a second gets the reason).
    let _running = keep
        .checkpoints
        .run(&keep.job)
        .await
        .map_err(ToolError::Unavailable)?;
    let mut checkpoint = if args.restart.unwrap_or(false) {
        Checkpoint::default()
    } else {
        keep.load().await
    };
    let mut usages: Usages = checkpoint
        .usage
        .iter()
        .map(|(p, m, u)| ((p.clone(), m.clone()), u.clone()))
        .collect();
    let table_choices = choices(&f.category);
    let given: Option<Vec<String>> = args.categories.clone().map(|c| {
        let mut names: Vec<String> = Vec::new();
        for name in c {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                names.push(name);
            }
        }
        names
    });
    if given.as_ref().is_some_and(Vec::is_empty) {
        return Err(ToolError::InvalidArguments(
            "categories is empty: give at least one, or leave it out for the model to propose them"
                .into(),
        ));
    }
    let uncached: Vec<&Doc> = needs_class
        .iter()
        .copied()
        .filter(|d| !checkpoint.classes.contains_key(&d.hash))
        .collect();
    let taxonomy: Vec<String> = if let Some(given) = given {
        out.taxonomy = "given".into();
        given
    } else if !table_choices.is_empty() {
        out.taxonomy = "table".into();
        table_choices.clone()
    } else if let Some(kept) = checkpoint.taxonomy.clone() {
        out.taxonomy = "kept".into();
        kept
    } else if uncached.is_empty() {
        out.taxonomy = "table".into();
        Vec::new()
    } else {
        let shown: Vec<Shown<'_>> = needs_class.iter().map(|d| shown(d, "")).collect();
        let names = model::propose_taxonomy(
            &inner.models,
            &cx,
            provider.as_deref(),
            &shown,
            settings.max_categories.clamp(1, 50),
            &mut usages,
        )
        .await?;
        out.taxonomy = "proposed".into();
        names
    };
    checkpoint.taxonomy = Some(taxonomy.clone());
    // A class kept from a run with other categories is asked for again.
    checkpoint
        .classes
        .retain(|_, c| taxonomy.contains(&c.category));
    let uncached: Vec<&Doc> = needs_class
        .iter()
        .copied()
        .filter(|d| !checkpoint.classes.contains_key(&d.hash))
        .collect();

    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    if !uncached.is_empty() && !inner.models.available(&cx) {
        return Err(ToolError::Failed(format!(
            "{} document(s) need a model to classify them, and none is available: configure a \
             provider for the agents plugin (e.g. OPENAI_API_KEY or ANTHROPIC_API_KEY), or \
             call from a client that supports sampling (its own model then answers)",
            uncached.len()
        )));
    }
    if apply {
        if !out.fields_to_create.is_empty() && !create_fields {
            let names: Vec<&str> = out
                .fields_to_create
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(ToolError::InvalidArguments(format!(
                "the table lacks the fields {}: create them, or allow create_fields; nothing was \
                 written",
                names.join(", ")
            )));
        }
        for plan in out.fields_to_create.clone() {
            let mut spec = json!({
                "base": args.base,
                "table": table_id,
                "name": plan.name,
                "type": plan.kind,
            });
            let options = match plan.kind.as_str() {
                "singleSelect" | "multipleSelects" => {
                    let names: Vec<String> = if plan.name == f.category {
                        taxonomy.clone()
                    } else if plan.name == f.status {
                        vec![settings.status.clone()]
                    } else {
                        // The tags known now; the writes add the others (typecast).
                        let known: BTreeSet<&String> = checkpoint
                            .classes
                            .values()
                            .flat_map(|c| c.tags.iter())
                            .collect();
                        known.into_iter().cloned().collect()
                    };
                    Some(
                        json!({"choices": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}),
                    )
                }
                "multipleRecordLinks" => Some(json!({"linkedTableId": table_id})),
                _ => None,
            };
            if let Some(options) = options {
                spec["options"] = options;
            }
            host.call("airtable_create_field", spec).await?;
            out.airtable_requests.writes += 1;
        }
    }

    if judge_links {
        checkpoint
            .unlinked
            .extend(needs_class.iter().map(|d| d.path.clone()));
        if apply {
            keep.save(&checkpoint).await;
        }
    }

    // What apply writes, sent to the writer as it is known: first what needs no model now,
    // then each batch as the model answers.
    let progress = Progress::new(&cx);
    progress.more(uncached.len());
    // Unbounded (at most MAX_DOCUMENTS records): the model is never held up by Airtable's
    // pace, so each answer is in the checkpoint as soon as it comes, and a kill loses only
    // the requests still in flight.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(String, Map<String, Value>)>();
    let classify = async {
        if apply {
            let ready = needs_class
                .iter()
                .filter_map(|d| Some((*d, checkpoint.classes.get(&d.hash)?)))
                .map(|(d, c)| {
                    (
                        d.path.clone(),
                        fields_for(d, c, f, &fields, &settings.status),
                    )
                })
                .collect::<Vec<_>>();
            progress.more(ready.len());
            for record in ready {
                let _ = tx.send(record);
            }
        }
        classify_all(
            &inner,
            &cx,
            provider.as_deref(),
            &uncached,
            &taxonomy,
            (max_tags, summary_words),
            &mut checkpoint,
            &keep,
            &mut usages,
            &mut failed,
            &progress,
            apply.then_some((&tx, f, &fields, settings.status.as_str())),
        )
        .await?;
        drop(tx);
        if !judge_links {
            return Ok(Judgement::default());
        }
        // Related documents, while the records are still being written: every document's
        // class as it will be stored, and the documents whose links the model chooses.
        let known: BTreeMap<&str, (&Doc, Class)> = docs
            .iter()
            .filter_map(|d| {
                let class = match existing.get(&d.path) {
                    Some(r) if r.text(&f.hash) == d.hash => r.class(f),
                    _ => checkpoint.classes.get(&d.hash)?.clone(),
                };
                Some((d.path.as_str(), (d, class)))
            })
            .collect();
        let judged: BTreeSet<&str> = if args.relink.unwrap_or(false) {
            known.keys().copied().collect()
        } else {
            // The changed documents, and those an earlier run of this job left unlinked.
            known
                .keys()
                .copied()
                .filter(|p| checkpoint.unlinked.contains(*p))
                .collect()
        };
        relate_all(
            &inner,
            &cx,
            provider.as_deref(),
            &known,
            &judged,
            (&mut checkpoint, &keep),
            &mut usages,
            &progress,
        )
        .await
    };
    let write = async {
        if apply {
            write_records(
                &host,
                (
                    &args.base,
                    &table_id,
                    if records_source { "" } else { &f.path },
                ),
                rx,
                settings.writes_in_flight,
                &progress,
            )
            .await
        } else {
            drop(rx);
            Written::default()
        }
    };
    let (classified, mut written) = tokio::join!(classify, write);
    let judgement = classified?;

    // 6. The records as they should be.
    let class_of = |d: &Doc| -> Option<Class> {
        match existing.get(&d.path) {
            Some(r) if r.text(&f.hash) == d.hash => Some(r.class(f)),
            _ => checkpoint.classes.get(&d.hash).cloned(),
        }
    };
    let mut writes: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut classes: BTreeMap<String, Class> = BTreeMap::new();
    for d in &docs {
        let Some(class) = class_of(d) else {
            failed
                .entry(d.path.clone())
                .or_insert_with(|| "not classified".into());
            continue;
        };
        classes.insert(d.path.clone(), class.clone());
        let record = existing.get(&d.path);
        if record.is_some_and(|r| r.text(&f.hash) == d.hash) {
            continue;
        }
        let mut fields_out = Map::new();
        fields_out.insert(f.title.clone(), d.title.clone().into());
        fields_out.insert(f.category.clone(), class.category.clone().into());
        fields_out.insert(f.tags.clone(), tag_value(&fields, &f.tags, &class.tags));
        fields_out.insert(f.summary.clone(), class.summary.clone().into());
        fields_out.insert(f.path.clone(), d.path.clone().into());
        fields_out.insert(f.status.clone(), settings.status.clone().into());
        fields_out.insert(f.hash.clone(), d.hash.clone().into());
        let mut planned = Planned {
            path: d.path.clone(),
            record_id: record.map(|r| r.id.clone()),
            title: d.title.clone(),
            category: class.category.clone(),
            tags: class.tags.clone(),
            summary: class.summary.clone(),
            changes: Map::new(),
        };
        match record {
            Some(r) => {
                for (name, to) in &fields_out {
                    let from = r.fields.get(name).cloned().unwrap_or(Value::Null);
                    if !same_value(&from, to) {
                        planned
                            .changes
                            .insert(name.clone(), json!({"from": from, "to": to}));
                    }
                }
                out.update.push(planned);
            }
            None => out.create.push(planned),
        }
        writes.push((d.path.clone(), fields_out));
    }
    out.failed = failed
        .iter()
        .map(|(path, reason)| Problem {
            path: path.clone(),
            reason: reason.clone(),
        })
        .collect();

    // Categories, tags and options.
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut all_tags: BTreeSet<&str> = BTreeSet::new();
    for class in classes.values() {
        *per_category.entry(class.category.as_str()).or_default() += 1;
        all_tags.extend(class.tags.iter().map(String::as_str));
    }
    out.categories = per_category
        .iter()
        .map(|(name, n)| CategoryCount {
            name: (*name).to_owned(),
            records: *n,
        })
        .collect();
    out.categories
        .sort_by(|a, b| b.records.cmp(&a.records).then(a.name.cmp(&b.name)));
    out.tags = all_tags.len();
    let new_options = |field: &str, wanted: Vec<&str>| -> Vec<String> {
        let have = choices(field);
        let mut new: Vec<String> = wanted
            .into_iter()
            .filter(|w| !have.iter().any(|h| h == w))
            .map(str::to_owned)
            .collect();
        new.sort();
        new.dedup();
        new
    };
    let write_classes: Vec<&Class> = writes
        .iter()
        .filter_map(|(path, _)| classes.get(path))
        .collect();
    let is_select = |name: &str| {
        fields
            .get(name)
            .is_none_or(|fd| fd["type"] == "singleSelect" || fd["type"] == "multipleSelects")
    };
    for (field, wanted) in [
        (
            &f.category,
            write_classes
                .iter()
                .map(|c| c.category.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            &f.tags,
            write_classes
                .iter()
                .flat_map(|c| c.tags.iter().map(String::as_str))
                .collect(),
        ),
        (
            &f.status,
            if writes.is_empty() {
                Vec::new()
            } else {
                vec![settings.status.as_str()]
            },
        ),
    ] {
        if !is_select(field) {
            continue;
        }
        let new = new_options(field, wanted);
        if !new.is_empty() {
            out.options_to_create.insert(field.clone(), new);
        }
    }

    if apply {
        // A field created by this run got its options with it.
        out.options_to_create
            .retain(|field, _| !out.fields_to_create.iter().any(|p| p.name == *field));
    }

    // 7. Related documents, from what every record will say.
    let profiles: Vec<Profile<'_>> = classes
        .iter()
        .map(|(path, c)| Profile {
            key: path,
            category: &c.category,
            tags: &c.tags,
        })
        .collect();
    let current_links = |path: &str| -> BTreeSet<String> {
        existing
            .get(path)
            .map(|r| {
                r.list(&f.related)
                    .iter()
                    .filter_map(|id| path_of_id.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let by_tags = || tags::related(&profiles, settings.max_related.max(1));
    let related: BTreeMap<String, BTreeSet<String>> = if !link_related {
        BTreeMap::new()
    } else if !judge_links {
        by_tags()
    } else {
        let mut links: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut link = |a: &str, b: &str| {
            links.entry(a.to_owned()).or_default().insert(b.to_owned());
            links.entry(b.to_owned()).or_default().insert(a.to_owned());
        };
        // Between documents not judged now (unchanged, or not classified this time): as the
        // table has them — the model's earlier choice, or the user's own.
        let present: BTreeSet<&str> = docs.iter().map(|d| d.path.as_str()).collect();
        let kept = |p: &str| present.contains(p) && !judgement.judged.contains(p);
        for path in present.iter().filter(|p| kept(p)) {
            for other in current_links(path) {
                if kept(&other) {
                    link(path, &other);
                }
            }
        }
        for (a, picks) in &judgement.picks {
            for b in picks.iter().filter(|b| classes.contains_key(*b)) {
                link(a, b);
            }
        }
        if !judgement.by_tags.is_empty() {
            let fallback = by_tags();
            for a in &judgement.by_tags {
                for b in fallback.get(a).into_iter().flatten() {
                    link(a, b);
                }
            }
        }
        links
    };
    out.links = related.values().map(BTreeSet::len).sum::<usize>() / 2;
    out.links_judged = judgement.picks.len();
    out.warnings.extend(judgement.warnings);
    let link_changes: Vec<&str> = if link_related {
        classes
            .keys()
            .filter(|path| current_links(path) != related.get(*path).cloned().unwrap_or_default())
            .map(String::as_str)
            .collect()
    } else {
        Vec::new()
    };
    out.link_updates = link_changes.len();

    let field_writes = if create_fields {
        out.fields_to_create.len()
    } else {
        0
    };
    out.airtable_requests.planned_writes =
        field_writes + writes.len().div_ceil(BATCH) + link_changes.len().div_ceil(BATCH);

    if !apply {
        out.models = model_uses(&usages, &settings.prices);
        keep.save(&checkpoint).await;
        out.wall_ms = started.elapsed().as_millis() as u64;
        return finish(out);
    }

    // 8. Apply: the links (the fields came first, the records as they were classified).
    let mut ids: HashMap<String, String> = existing
        .iter()
        .map(|(path, r)| (path.clone(), r.id.clone()))
        .collect();
    ids.extend(std::mem::take(&mut written.ids));
    out.airtable_requests.writes += written.requests;
    let write_failed = std::mem::take(&mut written.failed);
    for planned in out.create.iter_mut().chain(out.update.iter_mut()) {
        planned.record_id = ids.get(&planned.path).cloned();
    }
    out.create.retain(|p| !write_failed.contains_key(&p.path));
    out.update.retain(|p| !write_failed.contains_key(&p.path));

    let mut link_writes: Vec<Value> = Vec::new();
    for path in &link_changes {
        let Some(id) = ids.get(*path) else { continue };
        let mut targets: Vec<&String> = related
            .get(*path)
            .into_iter()
            .flatten()
            .filter_map(|p| ids.get(p))
            .collect();
        targets.sort();
        link_writes.push(json!({"id": id, "fields": {f.related.clone(): targets}}));
    }
    let link_total = link_writes.len();
    progress.more(link_total);
    let mut link_done = 0usize;
    let link_chunks: Vec<Vec<Value>> = link_writes.chunks(BATCH).map(<[_]>::to_vec).collect();
    let mut results = stream::iter(link_chunks.into_iter().map(|chunk| {
        let (host, base, table_id) = (&host, &args.base, &table_id);
        async move {
            let answer = host
                .call(
                    "airtable_update_records",
                    json!({"base": base, "table": table_id, "records": chunk, "mode": "merge"}),
                )
                .await;
            (chunk.len(), answer)
        }
    }))
    .buffer_unordered(settings.writes_in_flight.max(1));
    while let Some((n, answer)) = results.next().await {
        out.airtable_requests.writes += 1;
        if let Err(e) = answer {
            out.warnings.push(format!(
                "{n} records' related-document links not written: {e}"
            ));
        }
        link_done += n;
        progress
            .step(n, format!("linked {link_done} of {link_total} records"))
            .await;
    }
    drop(results);

    for (path, reason) in write_failed {
        out.failed.push(Problem { path, reason });
    }
    out.failed.sort_by(|a, b| a.path.cmp(&b.path));
    out.models = model_uses(&usages, &settings.prices);
    let links_written = out.warnings.iter().all(|w| !w.contains("not written"));
    if links_written {
        // Decided and stored: the next run keeps them as the table has them.
        checkpoint.unlinked.clear();
    }
    if out.failed.is_empty() && links_written {
        keep.remove().await;
    } else {
        keep.save(&checkpoint).await;
    }
    out.wall_ms = started.elapsed().as_millis() as u64;
    finish(out)
}

/// One progress count for the whole run (MCP wants it to grow with every notification):
/// documents classified, records written and records linked, of all there are to do.
struct Progress<'a> {
    cx: &'a ToolContext,
    done: AtomicUsize,
    total: AtomicUsize,
    sent: tokio::sync::Mutex<usize>,
}

impl<'a> Progress<'a> {
    fn new(cx: &'a ToolContext) -> Self {
        Self {
            cx,
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            sent: tokio::sync::Mutex::new(0),
        }
    }

    fn more(&self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    async fn step(&self, n: usize, message: String) {
        self.done.fetch_add(n, Ordering::Relaxed);
        let mut sent = self.sent.lock().await;
        let now = self.done.load(Ordering::Relaxed);
        if now > *sent {
            *sent = now;
            let total = self.total.load(Ordering::Relaxed).max(now);
            self.cx
                .progress(now as f64, Some(total as f64), message)
                .await;
        }
    }
}

/// What the upserts did: the records' ids by path, the paths not written and why, requests.
#[derive(Default)]
struct Written {
    ids: HashMap<String, String>,
    failed: BTreeMap<String, String>,
    requests: usize,
}

/// Upsert records as they come (10 per request, `in_flight` requests at once), while the
/// model is still classifying the rest.
async fn write_records(
    host: &Host<'_>,
    target: (&str, &str, &str),
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Map<String, Value>)>,
    in_flight: usize,
    progress: &Progress<'_>,
) -> Written {
    let (base, table_id, key) = target;
    // Records organized in place are updated by id; documents are upserted on their path.
    let by_id = key.is_empty();
    let chunks = tokio_stream::StreamExt::chunks_timeout(
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        BATCH,
        std::time::Duration::from_millis(50),
    );
    let results = chunks
        .map(|chunk: Vec<(String, Map<String, Value>)>| async move {
            let answer = if by_id {
                let records: Vec<Value> = chunk
                    .iter()
                    .map(|(id, fl)| json!({"id": id, "fields": fl}))
                    .collect();
                host.call(
                    "airtable_update_records",
                    json!({
                        "base": base,
                        "table": table_id,
                        "records": records,
                        "mode": "merge",
                        "typecast": true,
                    }),
                )
                .await
            } else {
                let records: Vec<Value> =
                    chunk.iter().map(|(_, fl)| json!({"fields": fl})).collect();
                host.call(
                    "airtable_upsert_records",
                    json!({
                        "base": base,
                        "table": table_id,
                        "records": records,
                        "fields_to_merge_on": [key],
                        "typecast": true,
                    }),
                )
                .await
            };
            (chunk, answer)
        })
        .buffer_unordered(in_flight.max(1));
    let mut results = std::pin::pin!(results);
    let mut written = Written::default();
    let mut count = 0usize;
    while let Some((chunk, answer)) = results.next().await {
        written.requests += 1;
        match answer {
            Ok(answer) => {
                for r in answer["records"].as_array().into_iter().flatten() {
                    let path = if by_id {
                        r["id"].as_str().unwrap_or_default()
                    } else {
                        r["fields"][key].as_str().unwrap_or_default()
                    };
                    if let Some(id) = r["id"].as_str() {
                        written.ids.insert(path.to_owned(), id.to_owned());
                    }
                }
            }
            Err(e) => {
                for (path, _) in &chunk {
                    written
                        .failed
                        .insert(path.clone(), format!("not written: {e}"));
                }
            }
        }
        count += chunk.len();
        progress
            .step(chunk.len(), format!("wrote {count} records"))
            .await;
    }
    written
}

/// The fields a document's record gets (a record organized in place keeps its own title and
/// has no path).
fn fields_for(
    d: &Doc,
    class: &Class,
    f: &FieldNames,
    fields: &HashMap<String, Value>,
    status: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    if !d.in_place {
        out.insert(f.title.clone(), d.title.clone().into());
        out.insert(f.path.clone(), d.path.clone().into());
    }
    out.insert(f.category.clone(), class.category.clone().into());
    out.insert(f.tags.clone(), tag_value(fields, &f.tags, &class.tags));
    out.insert(f.summary.clone(), class.summary.clone().into());
    out.insert(f.status.clone(), status.into());
    out.insert(f.hash.clone(), d.hash.clone().into());
    out
}

/// A record organized in place, as a document: its text fields (not those the organizer
/// writes), in field-name order, are what the model reads and what the hash covers.
fn record_doc(record: &Record, f: &FieldNames, primary: &str, extract_chars: usize) -> Doc {
    let managed = [
        &f.category,
        &f.tags,
        &f.summary,
        &f.status,
        &f.hash,
        &f.related,
        &f.path,
    ];
    let mut names: Vec<&String> = record
        .fields
        .keys()
        .filter(|k| !managed.contains(k))
        .collect();
    names.sort();
    let mut content = String::new();
    for name in names {
        let value = match &record.fields[name.as_str()] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            _ => continue,
        };
        if !value.trim().is_empty() {
            content.push_str(&format!("{name}: {value}\n"));
        }
    }
    let title = Some(record.text(primary))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| record.id.clone());
    Doc {
        path: record.id.clone(),
        title,
        kind: "record".into(),
        extract: crate::sandbox::walk::clip(&content, extract_chars.clamp(1, 8000)),
        hash: sha2::Sha256::digest(content.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        in_place: true,
    }
}

/// Where classified records go when applying: the writer's queue, the field names, the
/// table's fields and the status to set.
type Writer<'a> = (
    &'a tokio::sync::mpsc::UnboundedSender<(String, Map<String, Value>)>,
    &'a FieldNames,
    &'a HashMap<String, Value>,
    &'a str,
);

/// Classify `docs` in batches, `llm_in_flight` requests at once, keeping each answer in the
/// checkpoint as it comes and, when applying, sending its records to the writer.
#[allow(clippy::too_many_arguments)]
async fn classify_all(
    inner: &Inner,
    cx: &ToolContext,
    provider: Option<&str>,
    docs: &[&Doc],
    taxonomy: &[String],
    (max_tags, summary_words): (usize, usize),
    checkpoint: &mut Checkpoint,
    keep: &Keep<'_>,
    usages: &mut Usages,
    failed: &mut BTreeMap<String, String>,
    progress: &Progress<'_>,
    writer: Option<Writer<'_>>,
) -> Result<(), ToolError> {
    if docs.is_empty() {
        return Ok(());
    }
    let settings = &inner.settings;
    let batches = batches(docs, settings.batch_documents, settings.batch_chars);
    let total = docs.len();
    let mut done = 0usize;
    let requests: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            classify_batch(
                &inner.models,
                cx,
                provider,
                batch,
                taxonomy,
                max_tags,
                summary_words,
            )
        })
        .collect();
    let mut results = stream::iter(requests).buffer_unordered(settings.llm_in_flight.max(1));
    while let Some((batch, result, used)) = results.next().await {
        add_usages(usages, used);
        let mut ready = Vec::new();
        for (i, d) in batch.iter().enumerate() {
            let id = format!("d{}", i + 1);
            if let Some(class) = result.classes.get(&id) {
                checkpoint.classes.insert(d.hash.clone(), class.clone());
                if let Some((_, f, fields, status)) = writer {
                    ready.push((d.path.clone(), fields_for(d, class, f, fields, status)));
                }
            } else {
                let why = result
                    .failed
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "the model gave no answer for it".into());
                failed.insert(d.path.clone(), format!("not classified: {why}"));
            }
        }
        checkpoint.usage = usages
            .iter()
            .map(|((p, m), u)| (p.clone(), m.clone(), u.clone()))
            .collect();
        // Kept before anything is written: a kill after the write finds the answer here.
        keep.save(checkpoint).await;
        done += batch.len();
        progress.more(ready.len());
        progress
            .step(
                batch.len(),
                format!("classified {done} of {total} documents"),
            )
            .await;
        if let Some((tx, ..)) = writer {
            for record in ready {
                let _ = tx.send(record);
            }
        }
        if cx.is_cancelled() {
            return Err(ToolError::Failed(
                "cancelled; what was classified is kept for the next run".into(),
            ));
        }
    }
    Ok(())
}

fn add_usages(usages: &mut Usages, used: Usages) {
    for (key, u) in used {
        let sum = usages.entry(key).or_default();
        sum.requests += u.requests;
        sum.input_tokens += u.input_tokens;
        sum.output_tokens += u.output_tokens;
        sum.estimated |= u.estimated;
    }
}

/// What the model said of the documents' links.
#[derive(Default)]
struct Judgement {
    /// The documents whose links were decided in this run.
    judged: BTreeSet<String>,
    /// Document → the candidates the model chose for it.
    picks: BTreeMap<String, BTreeSet<String>>,
    /// Documents whose links fall back to shared tags (the model's answer was unusable).
    by_tags: BTreeSet<String>,
    warnings: Vec<String>,
}

/// The model's judgement of the `judged` documents' links: each one's candidates (the
/// documents sharing the most tags with it), several documents per request, a bounded
/// number in flight; kept in the checkpoint by content hash, so the apply after a plan and a
/// resumed run ask nothing again.
#[allow(clippy::too_many_arguments)]
async fn relate_all(
    inner: &Inner,
    cx: &ToolContext,
    provider: Option<&str>,
    known: &BTreeMap<&str, (&Doc, Class)>,
    judged: &BTreeSet<&str>,
    (checkpoint, keep): (&mut Checkpoint, &Keep<'_>),
    usages: &mut Usages,
    progress: &Progress<'_>,
) -> Result<Judgement, ToolError> {
    let settings = &inner.settings;
    let max_related = settings.max_related.max(1);
    let profiles: Vec<Profile<'_>> = known
        .iter()
        .map(|(path, (_, c))| Profile {
            key: path,
            category: &c.category,
            tags: &c.tags,
        })
        .collect();
    let candidates = tags::candidates(&profiles, judged, settings.link_candidates.max(1));
    let mut out = Judgement {
        judged: judged.iter().map(|p| (*p).to_owned()).collect(),
        ..Judgement::default()
    };
    let hash_of = |path: &str| known[path].0.hash.as_str();
    let key_of = |a: &str, cands: &[String]| -> String {
        let mut h = sha2::Sha256::new();
        h.update(hash_of(a));
        for c in cands {
            h.update(b"|");
            h.update(hash_of(c));
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut ask: Vec<(&str, &[String])> = Vec::new();
    for (a, cands) in &candidates {
        match checkpoint.links.get(&key_of(a, cands)) {
            Some(chosen) => {
                let picks = cands
                    .iter()
                    .filter(|c| chosen.iter().any(|h| h == hash_of(c)))
                    .cloned()
                    .collect();
                out.picks.insert(a.clone(), picks);
            }
            None => ask.push((a, cands)),
        }
    }
    if ask.is_empty() {
        return Ok(out);
    }
    let total = ask.len();
    progress.more(total);
    let chunks: Vec<Vec<(&str, &[String])>> = ask
        .chunks(settings.relate_documents.max(1))
        .map(<[_]>::to_vec)
        .collect();
    let requests: Vec<_> = chunks
        .into_iter()
        .map(|chunk| relate_batch(&inner.models, cx, provider, known, chunk, max_related))
        .collect();
    let mut results = stream::iter(requests).buffer_unordered(settings.llm_in_flight.max(1));
    let mut done = 0usize;
    while let Some((chunk, path_of, result, used)) = results.next().await {
        add_usages(usages, used);
        match result {
            Ok(chosen) => {
                for (i, (a, cands)) in chunk.iter().enumerate() {
                    let picks: BTreeSet<String> = chosen
                        .get(&format!("d{}", i + 1))
                        .into_iter()
                        .flatten()
                        .filter_map(|id| path_of.get(id))
                        .map(|p| (*p).to_owned())
                        .collect();
                    checkpoint.links.insert(
                        key_of(a, cands),
                        picks.iter().map(|p| hash_of(p).to_owned()).collect(),
                    );
                    out.picks.insert((*a).to_owned(), picks);
                }
            }
            Err(e) => {
                out.by_tags
                    .extend(chunk.iter().map(|(a, _)| (*a).to_owned()));
                out.warnings.push(format!(
                    "{} document(s) linked by shared tags alone, as the model could not relate \
                     them: {e}",
                    chunk.len()
                ));
            }
        }
        checkpoint.usage = usages
            .iter()
            .map(|((p, m), u)| (p.clone(), m.clone(), u.clone()))
            .collect();
        keep.save(checkpoint).await;
        done += chunk.len();
        progress
            .step(chunk.len(), format!("related {done} of {total} documents"))
            .await;
        if cx.is_cancelled() {
            return Err(ToolError::Failed(
                "cancelled; what was classified is kept for the next run".into(),
            ));
        }
    }
    Ok(out)
}

/// One model request relating a batch of documents, with its own usage count; the answer's
/// candidate ids → paths.
async fn relate_batch<'a>(
    models: &crate::plugin::Models,
    cx: &ToolContext,
    provider: Option<&str>,
    known: &'a BTreeMap<&'a str, (&'a Doc, Class)>,
    chunk: Vec<(&'a str, &'a [String])>,
    max_related: usize,
) -> (
    Vec<(&'a str, &'a [String])>,
    HashMap<String, &'a str>,
    Result<BTreeMap<String, Vec<String>>, ToolError>,
    Usages,
) {
    // The candidates once each, by a short id; the documents with theirs.
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    for (_, cands) in &chunk {
        for c in cands.iter() {
            let next = format!("c{}", ids.len() + 1);
            ids.entry(c.as_str()).or_insert(next);
        }
    }
    let brief = |path: &str, id: String, candidates: Vec<String>| {
        let (d, c) = &known[path];
        model::Brief {
            id,
            title: &d.title,
            category: &c.category,
            tags: &c.tags,
            summary: &c.summary,
            candidates,
        }
    };
    let docs: Vec<model::Brief<'_>> = chunk
        .iter()
        .enumerate()
        .map(|(i, (a, cands))| {
            let theirs = cands.iter().map(|c| ids[c.as_str()].clone()).collect();
            brief(a, format!("d{}", i + 1), theirs)
        })
        .collect();
    let shown: Vec<model::Brief<'_>> = ids
        .iter()
        .map(|(path, id)| brief(path, id.clone(), Vec::new()))
        .collect();
    let mut used = Usages::new();
    let result = model::relate(models, cx, provider, &docs, &shown, max_related, &mut used).await;
    let path_of = ids.into_iter().map(|(path, id)| (id, path)).collect();
    (chunk, path_of, result, used)
}

/// One model request over a batch, with its own usage count.
async fn classify_batch<'a>(
    models: &crate::plugin::Models,
    cx: &ToolContext,
    provider: Option<&str>,
    batch: Vec<&'a Doc>,
    taxonomy: &[String],
    max_tags: usize,
    summary_words: usize,
) -> (Vec<&'a Doc>, model::Batch, Usages) {
    let shown: Vec<Shown<'_>> = batch
        .iter()
        .enumerate()
        .map(|(i, d)| shown(d, &format!("d{}", i + 1)))
        .collect();
    let mut usages = Usages::new();
    let result = model::classify(
        models,
        cx,
        provider,
        &shown,
        taxonomy,
        max_tags,
        summary_words,
        &mut usages,
    )
    .await;
    (batch, result, usages)
}

fn shown<'a>(d: &'a Doc, id: &str) -> Shown<'a> {
    Shown {
        id: id.to_owned(),
        path: &d.path,
        title: &d.title,
        kind: &d.kind,
        text: &d.extract,
    }
}

/// Documents in requests of at most `per_request` documents and about `chars` characters.
fn batches<'a>(docs: &[&'a Doc], per_request: usize, chars: usize) -> Vec<Vec<&'a Doc>> {
    let mut out: Vec<Vec<&Doc>> = Vec::new();
    let mut size = 0usize;
    for d in docs {
        let len = d.extract.len() + d.title.len() + d.path.len() + 64;
        let full = out
            .last()
            .is_none_or(|b| b.len() >= per_request.max(1) || (size + len > chars && !b.is_empty()));
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        out.last_mut().expect("a batch").push(d);
    }
    out
}

/// Tags as the field takes them: a list for a multiple select, else one text.
fn tag_value(fields: &HashMap<String, Value>, name: &str, tags: &[String]) -> Value {
    match fields.get(name) {
        Some(fd) if fd["type"] != "multipleSelects" => tags.join(", ").into(),
        _ => json!(tags),
    }
}

/// Whether a stored value is what would be written (lists compared as sets).
fn same_value(stored: &Value, wanted: &Value) -> bool {
    match (stored, wanted) {
        (Value::Array(a), Value::Array(b)) => {
            let set = |v: &Vec<Value>| v.iter().map(Value::to_string).collect::<BTreeSet<_>>();
            set(a) == set(b)
        }
        (Value::Null, Value::String(s)) | (Value::String(s), Value::Null) => s.is_empty(),
        (Value::Null, Value::Array(v)) | (Value::Array(v), Value::Null) => v.is_empty(),
        _ => stored == wanted,
    }
}

fn model_uses(usages: &Usages, prices: &BTreeMap<String, (f64, f64)>) -> Vec<ModelUse> {
    usages
        .iter()
        .map(|((provider, model), u)| {
            let price = prices
                .iter()
                .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, p)| *p);
            ModelUse {
                provider: provider.clone(),
                model: model.clone(),
                requests: u.requests,
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                estimated_tokens: u.estimated,
                cost_usd: price.map(|(i, o)| {
                    (u.input_tokens as f64 * i + u.output_tokens as f64 * o) / 1_000_000.0
                }),
            }
        })
        .collect()
}

fn finish(out: Outcome) -> ToolOutcome {
    let text = report::render(&out);
    let value = serde_json::to_value(&out)
        .map_err(|e| ToolError::Failed(format!("cannot encode the result: {e}")))?;
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(text)];
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, chars: usize) -> Doc {
        Doc {
            path: path.into(),
            title: String::new(),
            kind: "text".into(),
            extract: "x".repeat(chars),
            hash: String::new(),
            in_place: false,
        }
    }

    #[test]
    fn batches_are_bounded_by_documents_and_characters() {
        let docs: Vec<Doc> = (0..10).map(|i| doc(&format!("{i}"), 1000)).collect();
        let refs: Vec<&Doc> = docs.iter().collect();
        let sizes = |b: Vec<Vec<&Doc>>| b.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&refs, 4, 100_000)), [4, 4, 2]);
        assert_eq!(sizes(batches(&refs, 8, 2500)), [2, 2, 2, 2, 2]);
        // A document longer than the budget goes alone, not nowhere.
        let big = [doc("big", 10_000)];
        let refs: Vec<&Doc> = big.iter().collect();
        assert_eq!(sizes(batches(&refs, 8, 2500)), [1]);
    }

    #[test]
    fn stored_values_compare_as_airtable_returns_them() {
        assert!(same_value(&json!(["b", "a"]), &json!(["a", "b"])));
        assert!(same_value(&Value::Null, &json!("")));
        assert!(!same_value(&json!("x"), &json!("y")));
    }
}
