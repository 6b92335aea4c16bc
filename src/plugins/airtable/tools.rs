//! The `airtable_*` tools.

use std::sync::Arc;

use base64::Engine;
use reqwest::Method;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    Airtable,
    client::{Failure, Repeat, advice},
};
use crate::plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome};

/// Airtable accepts at most this many records per write.
pub const BATCH: usize = 10;

pub fn all(at: Arc<Airtable>) -> Vec<ToolDef> {
    let read = Hints::read_only().open_world();
    let a = at.clone();
    let b = at.clone();
    let c = at.clone();
    let d = at.clone();
    let e = at.clone();
    let f = at.clone();
    let g = at.clone();
    let h = at.clone();
    let i = at.clone();
    let j = at.clone();
    let k = at.clone();
    let l = at.clone();
    let m = at.clone();
    vec![
        ToolDef::new(
            "list_bases",
            "List the Airtable bases the token can access (id, name, permission level).",
            read,
            move |args: ListBases, _| {
                let at = a.clone();
                async move { at.list_bases(args).await }
            },
        ),
        ToolDef::new(
            "list_tables",
            "List the tables of a base. `detail`: `ids` (ids and names only), `names` (default: \
             plus field names and types), `full` (plus field options, descriptions and views).",
            read,
            move |args: Schema, _| {
                let at = b.clone();
                async move { at.describe(args, Detail::Names).await }
            },
        ),
        ToolDef::new(
            "describe_base",
            "Describe a base's schema: tables, fields (types, options) and views. Limit it to some \
             `tables`, and choose `detail` (`ids`, `names`, `full` — the default) to keep it short.",
            read,
            move |args: Schema, _| {
                let at = c.clone();
                async move { at.describe(args, Detail::Full).await }
            },
        ),
        ToolDef::new(
            "list_records",
            "List records of a table, optionally through a view, filtered by an Airtable formula, \
             sorted, with only some fields. Returns at most `limit` records; when there are more, \
             `truncated` is true and `next_cursor` continues the listing.",
            read,
            move |args: ListRecords, _| {
                let at = d.clone();
                async move { at.list_records(args).await }
            },
        ),
        ToolDef::new(
            "get_record",
            "Get one record by id (rec…).",
            read,
            move |args: GetRecord, _| {
                let at = e.clone();
                async move { at.get_record(args).await }
            },
        ),
        ToolDef::new(
            "search_records",
            "Find records whose fields contain a text (case-insensitive). Searches the given \
             `fields`, or every text-like field of the table.",
            read,
            move |args: SearchRecords, _| {
                let at = f.clone();
                async move { at.search_records(args).await }
            },
        ),
        ToolDef::new(
            "create_records",
            "Create records (any number; sent in batches of 10). `typecast: true` lets Airtable \
             convert values and add new select options.",
            Hints::additive().open_world(),
            move |args: CreateRecords, cx| {
                let at = g.clone();
                async move { at.create_records(args, cx).await }
            },
        ),
        ToolDef::new(
            "update_records",
            "Update records by id (any number; batches of 10). `mode: merge` (default) changes only \
             the given fields; `replace` clears every field not given.",
            Hints::destructive(true).open_world(),
            move |args: UpdateRecords, cx| {
                let at = h.clone();
                async move { at.update_records(args, cx).await }
            },
        ),
        ToolDef::new(
            "upsert_records",
            "Create or update records matched on 1-3 key fields (`fields_to_merge_on`): a record \
             whose key values match is updated, otherwise one is created. Safe to repeat.",
            Hints::destructive(true).open_world(),
            move |args: UpsertRecords, cx| {
                let at = i.clone();
                async move { at.upsert_records(args, cx).await }
            },
        ),
        ToolDef::new(
            "delete_records",
            "Delete records by id (any number; batches of 10). This cannot be undone from here.",
            Hints::destructive(true).open_world(),
            move |args: DeleteRecords, cx| {
                let at = j.clone();
                async move { at.delete_records(args, cx).await }
            },
        ),
        ToolDef::new(
            "create_table",
            "Create a table with its fields (the first field is the primary field).",
            Hints::additive().open_world(),
            move |args: CreateTable, _| {
                let at = k.clone();
                async move { at.create_table(args).await }
            },
        ),
        ToolDef::new(
            "create_field",
            "Add a field to a table.",
            Hints::additive().open_world(),
            move |args: CreateField, _| {
                let at = l.clone();
                async move { at.create_field(args).await }
            },
        ),
        ToolDef::new(
            "bulk_import",
            "Import rows from a CSV/TSV/JSON/JSONL file (inside the import folders) or inline \
             `rows` into a table, upserting on `key_fields` so a re-run never duplicates. Columns \
             go to the fields of the same name unless `mapping` says otherwise. Reports progress; \
             an interrupted import continues from its checkpoint when run again. Answers with \
             created, updated, skipped and failed rows (with reasons).",
            Hints::destructive(true).open_world(),
            move |args: super::BulkImport, cx| {
                let at = m.clone();
                async move { at.bulk_import(args, cx).await }
            },
        )
        // Large imports run for as long as they need (50 records/s at best); cancel to stop.
        .with_timeout(std::time::Duration::from_secs(24 * 3600)),
        ToolDef::new(
            "update_field",
            "Rename a field or change its description (Airtable does not allow changing a \
             field's type through the API).",
            Hints::destructive(true).open_world(),
            move |args: UpdateField, _| {
                let at = at.clone();
                async move { at.update_field(args).await }
            },
        ),
    ]
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBases {
    /// `next_cursor` from a previous call.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// Table ids and names.
    Ids,
    /// Plus field names and types.
    Names,
    /// Everything: field options and descriptions, views.
    Full,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Base id (app…).
    base: String,
    /// Only these tables (names or ids).
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    detail: Option<Detail>,
}

#[derive(Deserialize, JsonSchema, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Sort {
    field: String,
    #[serde(default)]
    direction: Option<Direction>,
}

#[derive(Deserialize, JsonSchema, Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Deserialize, JsonSchema, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ListRecords {
    /// Base id (app…).
    base: String,
    /// Table name or id (tbl…).
    table: String,
    /// A view (name or id): its filter and order apply.
    #[serde(default)]
    view: Option<String>,
    /// An Airtable formula; records where it is 0, false, empty or an error are left out,
    /// e.g. `AND({Status} = 'Done', {Points} > 3)`.
    #[serde(default)]
    filter_by_formula: Option<String>,
    #[serde(default)]
    sort: Vec<Sort>,
    /// Only these fields.
    #[serde(default)]
    fields: Vec<String>,
    /// Stop after this many records in total, across calls.
    #[serde(default)]
    max_records: Option<u32>,
    /// Records per Airtable page (1-100).
    #[serde(default)]
    page_size: Option<u32>,
    /// Records to return in this call (default and most: the plugin's max_records_per_call).
    #[serde(default)]
    limit: Option<u32>,
    /// `next_cursor` from a previous call with the same arguments.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRecord {
    base: String,
    table: String,
    /// Record id (rec…).
    record_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRecords {
    base: String,
    table: String,
    /// Text to find (case-insensitive, anywhere in the field).
    query: String,
    /// Fields to search; default: every text-like field.
    #[serde(default)]
    fields: Vec<String>,
    /// Most records to return.
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// Field name → value.
    fields: Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecords {
    base: String,
    table: String,
    records: Vec<NewRecord>,
    /// Let Airtable convert values (e.g. "3" into a number) and add new select options.
    #[serde(default)]
    typecast: bool,
}

#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Change only the fields given.
    #[default]
    Merge,
    /// Clear every field not given.
    Replace,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordUpdate {
    /// Record id (rec…).
    id: String,
    fields: Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRecords {
    base: String,
    table: String,
    records: Vec<RecordUpdate>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    typecast: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRecord {
    /// Optional record id; without it the key fields decide.
    #[serde(default)]
    id: Option<String>,
    fields: Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRecords {
    base: String,
    table: String,
    records: Vec<UpsertRecord>,
    /// 1-3 field names whose values identify a record.
    fields_to_merge_on: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    typecast: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRecords {
    base: String,
    table: String,
    /// Record ids (rec…).
    record_ids: Vec<String>,
}

#[derive(Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    name: String,
    /// Airtable field type: singleLineText, multilineText, number, checkbox, singleSelect,
    /// multipleSelects, date, email, url, ...
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Type-specific options, as Airtable documents them (e.g. `{"choices":[{"name":"A"}]}`,
    /// `{"precision":0}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    base: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// The first field is the primary field.
    fields: Vec<FieldSpec>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateField {
    base: String,
    table: String,
    #[serde(flatten)]
    field: FieldSpec,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateField {
    base: String,
    table: String,
    /// Field name or id (fld…).
    field: String,
    /// New name.
    #[serde(default)]
    name: Option<String>,
    /// New description.
    #[serde(default)]
    description: Option<String>,
}

// ---- results -------------------------------------------------------------------------------

fn structured(value: Value) -> ToolOutcome {
    Ok(CallToolResult::structured(value))
}

/// A result that reports a partial failure: the client sees what landed and what did not.
fn partial(value: Value, failed: bool) -> ToolOutcome {
    if failed {
        Ok(CallToolResult::structured_error(value))
    } else {
        structured(value)
    }
}

fn check_id(kind: &str, prefix: &str, id: &str) -> Result<(), ToolError> {
    if id.len() == 17 && id.starts_with(prefix) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ToolError::InvalidArguments(format!(
            "`{id}` is not a {kind} id ({prefix} followed by 14 letters or digits)"
        )))
    }
}

/// Cursor of `list_records`: Airtable's offset plus how many records were already returned,
/// so an expired offset restarts the listing without repeating records.
#[derive(Serialize, Deserialize, Default, Clone)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<String>,
    n: usize,
    /// The query the cursor belongs to.
    q: u64,
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str, query: u64) -> Result<Cursor, ToolError> {
    let bad = || {
        ToolError::InvalidArguments(
            "cursor is not one this tool returned for these arguments; start without it".into(),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.q != query {
        return Err(bad());
    }
    Ok(c)
}

fn query_hash(args: &ListRecords) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut key = args.clone();
    key.cursor = None;
    key.limit = None;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&key).unwrap_or_default().hash(&mut h);
    h.finish()
}

const TEXT_TYPES: &[&str] = &[
    "singleLineText",
    "multilineText",
    "richText",
    "email",
    "url",
    "phoneNumber",
    "singleSelect",
    "multipleSelects",
    "barcode",
];

/// A string literal in an Airtable formula.
pub fn formula_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A field reference in an Airtable formula.
pub fn formula_field(name: &str) -> String {
    format!("{{{}}}", name.replace('}', "\\}"))
}

impl Airtable {
    fn fail(&self, what: &str) -> impl Fn(Failure) -> ToolError + '_ {
        let what = what.to_owned();
        move |f| advice(f, &what)
    }

    /// An error, with the table's fields listed when a field name was wrong.
    async fn explain(&self, failure: Failure, what: &str, base: &str, table: &str) -> ToolError {
        let unknown_field = matches!(&failure, Failure::Api(e) if e.kind == "UNKNOWN_FIELD_NAME");
        let error = advice(failure, what);
        if !unknown_field {
            return error;
        }
        match self.table(base, table).await {
            Ok(t) => {
                let names: Vec<&str> = t["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["name"].as_str())
                    .collect();
                ToolError::InvalidArguments(format!(
                    "{error}. The fields of `{table}` are: {}",
                    names.join(", ")
                ))
            }
            Err(_) => error,
        }
    }

    async fn tables(&self, base: &str) -> Result<Vec<Value>, ToolError> {
        check_id("base", "app", base)?;
        let url = self.client.url(&["meta", "bases", base, "tables"]);
        let answer = self
            .client
            .get(url, Some(base))
            .await
            .map_err(self.fail(&format!("reading the schema of base {base}")))?;
        Ok(answer["tables"].as_array().cloned().unwrap_or_default())
    }

    async fn table(&self, base: &str, table: &str) -> Result<Value, ToolError> {
        let tables = self.tables(base).await?;
        tables
            .iter()
            .find(|t| t["id"] == table || t["name"] == table)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = tables.iter().filter_map(|t| t["name"].as_str()).collect();
                ToolError::NotFound(format!(
                    "base {base} has no table `{table}`; its tables are: {}",
                    names.join(", ")
                ))
            })
    }

    pub async fn list_bases(&self, args: ListBases) -> ToolOutcome {
        let mut url = self.client.url(&["meta", "bases"]);
        if let Some(offset) = &args.cursor {
            url.query_pairs_mut().append_pair("offset", offset);
        }
        let answer = self
            .client
            .get(url, None)
            .await
            .map_err(self.fail("listing bases"))?;
        structured(json!({
            "bases": answer["bases"],
            "next_cursor": answer.get("offset"),
        }))
    }

    pub async fn describe(&self, args: Schema, default: Detail) -> ToolOutcome {
        let detail = args.detail.unwrap_or(default);
        let tables = self.tables(&args.base).await?;
        let chosen: Vec<&Value> = if args.tables.is_empty() {
            tables.iter().collect()
        } else {
            let mut chosen = Vec::new();
            for want in &args.tables {
                let t = tables
                    .iter()
                    .find(|t| t["id"] == *want.as_str() || t["name"] == *want.as_str())
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            tables.iter().filter_map(|t| t["name"].as_str()).collect();
                        ToolError::NotFound(format!(
                            "base {} has no table `{want}`; its tables are: {}",
                            args.base,
                            names.join(", ")
                        ))
                    })?;
                chosen.push(t);
            }
            chosen
        };
        let shaped: Vec<Value> = chosen
            .into_iter()
            .map(|t| match detail {
                Detail::Ids => json!({"id": t["id"], "name": t["name"]}),
                Detail::Names => json!({
                    "id": t["id"],
                    "name": t["name"],
                    "primaryFieldId": t["primaryFieldId"],
                    "fields": t["fields"].as_array().into_iter().flatten().map(|f| json!({
                        "id": f["id"], "name": f["name"], "type": f["type"],
                    })).collect::<Vec<_>>(),
                }),
                Detail::Full => t.clone(),
            })
            .collect();
        structured(json!({ "base": args.base, "tables": shaped }))
    }

    fn list_url(&self, args: &ListRecords, offset: Option<&str>, page: u32) -> url::Url {
        let mut url = self.client.url(&[&args.base, &args.table]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("pageSize", &page.to_string());
            if let Some(view) = &args.view {
                q.append_pair("view", view);
            }
            if let Some(formula) = &args.filter_by_formula {
                q.append_pair("filterByFormula", formula);
            }
            for (i, s) in args.sort.iter().enumerate() {
                q.append_pair(&format!("sort[{i}][field]"), &s.field);
                if let Some(d) = s.direction {
                    let d = match d {
                        Direction::Asc => "asc",
                        Direction::Desc => "desc",
                    };
                    q.append_pair(&format!("sort[{i}][direction]"), d);
                }
            }
            for f in &args.fields {
                q.append_pair("fields[]", f);
            }
            if let Some(max) = args.max_records {
                q.append_pair("maxRecords", &max.to_string());
            }
            if let Some(offset) = offset {
                q.append_pair("offset", offset);
            }
        }
        url
    }

    /// Up to `limit` records from where `cursor` left off; the next cursor if there are more.
    async fn fetch(
        &self,
        args: &ListRecords,
        mut cursor: Cursor,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<Cursor>), ToolError> {
        check_id("base", "app", &args.base)?;
        let page_max = args.page_size.unwrap_or(100).clamp(1, 100) as usize;
        let mut out = Vec::new();
        // Records to drop after an expired offset sent us back to the start.
        let mut skip = 0usize;
        let mut restarts = 0;
        loop {
            let want = if skip > 0 { skip } else { limit - out.len() };
            let page = want.min(page_max).max(1) as u32;
            let url = self.list_url(args, cursor.o.as_deref(), page);
            let answer = match self.client.get(url, Some(&args.base)).await {
                Ok(a) => a,
                Err(Failure::Api(e))
                    if e.kind == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE" && restarts < 3 =>
                {
                    // The offset expired: list again from the start, skipping what was seen.
                    restarts += 1;
                    tracing::info!(base = %args.base, table = %args.table, seen = cursor.n, "Airtable offset expired; restarting the listing");
                    cursor.o = None;
                    skip = cursor.n;
                    continue;
                }
                Err(f) => {
                    return Err(self
                        .explain(
                            f,
                            &format!("listing {}", args.table),
                            &args.base,
                            &args.table,
                        )
                        .await);
                }
            };
            let records = answer["records"].as_array().cloned().unwrap_or_default();
            for r in records {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                out.push(r);
                cursor.n += 1;
            }
            cursor.o = answer["offset"].as_str().map(str::to_owned);
            if cursor.o.is_none() {
                return Ok((out, None));
            }
            if out.len() >= limit && skip == 0 {
                return Ok((out, Some(cursor)));
            }
        }
    }

    pub async fn list_records(&self, args: ListRecords) -> ToolOutcome {
        let query = query_hash(&args);
        let cursor = match &args.cursor {
            Some(c) => decode_cursor(c, query)?,
            None => Cursor {
                q: query,
                ..Cursor::default()
            },
        };
        let limit = (args.limit.unwrap_or(u32::MAX) as usize).clamp(1, self.max_records);
        let (records, next) = self.fetch(&args, cursor, limit).await?;
        structured(json!({
            "records": records,
            "count": records.len(),
            "truncated": next.is_some(),
            "next_cursor": next.as_ref().map(encode_cursor),
        }))
    }

    pub async fn get_record(&self, args: GetRecord) -> ToolOutcome {
        check_id("base", "app", &args.base)?;
        check_id("record", "rec", &args.record_id)?;
        let url = self.client.url(&[&args.base, &args.table, &args.record_id]);
        let record = self.client.get(url, Some(&args.base)).await;
        match record {
            Ok(r) => structured(r),
            Err(f) => Err(self
                .explain(
                    f,
                    &format!("getting record {}", args.record_id),
                    &args.base,
                    &args.table,
                )
                .await),
        }
    }

    pub async fn search_records(&self, args: SearchRecords) -> ToolOutcome {
        if args.query.is_empty() {
            return Err(ToolError::InvalidArguments("query is empty".into()));
        }
        let fields = if args.fields.is_empty() {
            let table = self.table(&args.base, &args.table).await?;
            let fields: Vec<String> = table["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| TEXT_TYPES.contains(&f["type"].as_str().unwrap_or("")))
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect();
            if fields.is_empty() {
                return Err(ToolError::InvalidArguments(format!(
                    "table `{}` has no text fields to search; name the fields to search in `fields`",
                    args.table
                )));
            }
            fields
        } else {
            args.fields.clone()
        };
        let needle = formula_string(&args.query.to_lowercase());
        let tests: Vec<String> = fields
            .iter()
            .map(|f| format!("FIND({needle}, LOWER({} & \"\"))", formula_field(f)))
            .collect();
        let formula = if tests.len() == 1 {
            tests[0].clone()
        } else {
            format!("OR({})", tests.join(", "))
        };
        let list = ListRecords {
            base: args.base,
            table: args.table,
            view: None,
            filter_by_formula: Some(formula),
            sort: Vec::new(),
            fields: Vec::new(),
            max_records: None,
            page_size: None,
            limit: args.limit,
            cursor: None,
        };
        let limit = (args.limit.unwrap_or(u32::MAX) as usize).clamp(1, self.max_records);
        let (records, next) = self.fetch(&list, Cursor::default(), limit).await?;
        structured(json!({
            "records": records,
            "count": records.len(),
            "searched_fields": fields,
            "truncated": next.is_some(),
        }))
    }

    /// Send `records` in batches of 10, reporting progress; a failed batch does not stop the
    /// others, and the answer says exactly what landed.
    async fn write(&self, cx: &ToolContext, job: Write<'_>, records: Vec<Value>) -> ToolOutcome {
        check_id("base", "app", job.base)?;
        if records.is_empty() {
            return Err(ToolError::InvalidArguments("records is empty".into()));
        }
        let total = records.len();
        let mut done: Vec<Value> = Vec::new();
        let mut created: Vec<Value> = Vec::new();
        let mut updated: Vec<Value> = Vec::new();
        let mut failed: Vec<Value> = Vec::new();
        for (n, chunk) in records.chunks(BATCH).enumerate() {
            if cx.is_cancelled() {
                failed.push(json!({"records": format!("{}-{}", n * BATCH + 1, total), "error": "cancelled before sending"}));
                break;
            }
            let mut body = json!({ "records": chunk });
            if let Some(extra) = &job.extra {
                for (k, v) in extra {
                    body[k] = v.clone();
                }
            }
            let url = self.client.url(&[job.base, job.table]);
            let range = format!("{}-{}", n * BATCH + 1, n * BATCH + chunk.len());
            match self
                .client
                .send(
                    job.method.clone(),
                    url,
                    Some(job.base),
                    Some(&body),
                    job.repeat,
                )
                .await
            {
                Ok(answer) => {
                    let landed = answer["records"].as_array().cloned().unwrap_or_default();
                    if let Some(ids) = answer["createdRecords"].as_array() {
                        created.extend(ids.iter().cloned());
                    }
                    if let Some(ids) = answer["updatedRecords"].as_array() {
                        updated.extend(ids.iter().cloned());
                    }
                    done.extend(landed);
                }
                Err(f) => {
                    let e = self.explain(f, job.what, job.base, job.table).await;
                    failed.push(json!({"records": range, "error": e.to_string()}));
                }
            }
            let sent = (n * BATCH + chunk.len()) as f64;
            cx.progress(
                sent,
                Some(total as f64),
                format!("{} of {total} records", sent as usize),
            )
            .await;
        }
        let mut report = json!({
            "records": done,
            "count": done.len(),
            "requested": total,
        });
        if job
            .extra
            .as_ref()
            .is_some_and(|e| e.contains_key("performUpsert"))
        {
            report["created_ids"] = Value::from(created);
            report["updated_ids"] = Value::from(updated);
        }
        let any_failed = !failed.is_empty();
        if any_failed {
            report["failed"] = Value::from(failed);
        }
        partial(report, any_failed)
    }

    pub async fn create_records(&self, args: CreateRecords, cx: ToolContext) -> ToolOutcome {
        let records = args
            .records
            .into_iter()
            .map(|r| json!({ "fields": r.fields }))
            .collect();
        let job = Write {
            base: &args.base,
            table: &args.table,
            method: Method::POST,
            extra: Some(Map::from_iter([("typecast".into(), args.typecast.into())])),
            repeat: Repeat::Unsafe,
            what: "creating records",
        };
        self.write(&cx, job, records).await
    }

    pub async fn update_records(&self, args: UpdateRecords, cx: ToolContext) -> ToolOutcome {
        let mut records = Vec::new();
        for r in args.records {
            check_id("record", "rec", &r.id)?;
            records.push(json!({ "id": r.id, "fields": r.fields }));
        }
        let job = Write {
            base: &args.base,
            table: &args.table,
            method: mode_method(args.mode),
            extra: Some(Map::from_iter([("typecast".into(), args.typecast.into())])),
            repeat: Repeat::Safe,
            what: "updating records",
        };
        self.write(&cx, job, records).await
    }

    pub async fn upsert_records(&self, args: UpsertRecords, cx: ToolContext) -> ToolOutcome {
        if args.fields_to_merge_on.is_empty() || args.fields_to_merge_on.len() > 3 {
            return Err(ToolError::InvalidArguments(
                "fields_to_merge_on needs 1 to 3 field names".into(),
            ));
        }
        let mut records = Vec::new();
        for (i, r) in args.records.into_iter().enumerate() {
            if let Some(missing) = args
                .fields_to_merge_on
                .iter()
                .find(|k| r.id.is_none() && !r.fields.contains_key(*k))
            {
                return Err(ToolError::InvalidArguments(format!(
                    "record {} has no value for the key field `{missing}`",
                    i + 1
                )));
            }
            let mut rec = json!({ "fields": r.fields });
            if let Some(id) = r.id {
                check_id("record", "rec", &id)?;
                rec["id"] = id.into();
            }
            records.push(rec);
        }
        let job = Write {
            base: &args.base,
            table: &args.table,
            method: mode_method(args.mode),
            extra: Some(Map::from_iter([
                ("typecast".into(), args.typecast.into()),
                (
                    "performUpsert".into(),
                    json!({ "fieldsToMergeOn": args.fields_to_merge_on }),
                ),
            ])),
            repeat: Repeat::Safe,
            what: "upserting records",
        };
        self.write(&cx, job, records).await
    }

    pub async fn delete_records(&self, args: DeleteRecords, cx: ToolContext) -> ToolOutcome {
        check_id("base", "app", &args.base)?;
        if args.record_ids.is_empty() {
            return Err(ToolError::InvalidArguments("record_ids is empty".into()));
        }
        for id in &args.record_ids {
            check_id("record", "rec", id)?;
        }
        let total = args.record_ids.len();
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        for (n, chunk) in args.record_ids.chunks(BATCH).enumerate() {
            let mut url = self.client.url(&[&args.base, &args.table]);
            for id in chunk {
                url.query_pairs_mut().append_pair("records[]", id);
            }
            match self
                .client
                .send(Method::DELETE, url, Some(&args.base), None, Repeat::Safe)
                .await
            {
                Ok(answer) => deleted.extend(
                    answer["records"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|r| r["deleted"] == true)
                        .filter_map(|r| r["id"].as_str().map(str::to_owned)),
                ),
                Err(f) => {
                    let e = self
                        .explain(f, "deleting records", &args.base, &args.table)
                        .await;
                    failed.push(json!({"record_ids": chunk, "error": e.to_string()}));
                }
            }
            let sent = (n * BATCH + chunk.len()) as f64;
            cx.progress(sent, Some(total as f64), "deleting").await;
        }
        let any_failed = !failed.is_empty();
        let mut report = json!({ "deleted": deleted, "count": deleted.len(), "requested": total });
        if any_failed {
            report["failed"] = Value::from(failed);
        }
        partial(report, any_failed)
    }

    pub async fn create_table(&self, args: CreateTable) -> ToolOutcome {
        check_id("base", "app", &args.base)?;
        if args.fields.is_empty() {
            return Err(ToolError::InvalidArguments(
                "a table needs at least one field (the first is the primary field)".into(),
            ));
        }
        let mut body = json!({ "name": args.name, "fields": args.fields });
        if let Some(d) = args.description {
            body["description"] = d.into();
        }
        let url = self.client.url(&["meta", "bases", &args.base, "tables"]);
        let table = self
            .client
            .send(
                Method::POST,
                url,
                Some(&args.base),
                Some(&body),
                Repeat::Unsafe,
            )
            .await
            .map_err(self.fail(&format!("creating table `{}`", args.name)))?;
        structured(table)
    }

    /// A table's id (the field endpoints need it), from its name or id.
    async fn table_id(&self, base: &str, table: &str) -> Result<(String, Value), ToolError> {
        let t = self.table(base, table).await?;
        let id = t["id"].as_str().unwrap_or_default().to_owned();
        Ok((id, t))
    }

    pub async fn create_field(&self, args: CreateField) -> ToolOutcome {
        let (table_id, _) = self.table_id(&args.base, &args.table).await?;
        let body = serde_json::to_value(&args.field)
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let url = self
            .client
            .url(&["meta", "bases", &args.base, "tables", &table_id, "fields"]);
        let field = self
            .client
            .send(
                Method::POST,
                url,
                Some(&args.base),
                Some(&body),
                Repeat::Unsafe,
            )
            .await
            .map_err(self.fail(&format!("creating field `{}`", args.field.name)))?;
        structured(field)
    }

    pub async fn update_field(&self, args: UpdateField) -> ToolOutcome {
        if args.name.is_none() && args.description.is_none() {
            return Err(ToolError::InvalidArguments(
                "give a new `name`, a new `description`, or both".into(),
            ));
        }
        let (table_id, table) = self.table_id(&args.base, &args.table).await?;
        let field = table["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["id"] == args.field.as_str() || f["name"] == args.field.as_str())
            .ok_or_else(|| {
                let names: Vec<&str> = table["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["name"].as_str())
                    .collect();
                ToolError::NotFound(format!(
                    "table `{}` has no field `{}`; its fields are: {}",
                    args.table,
                    args.field,
                    names.join(", ")
                ))
            })?;
        let field_id = field["id"].as_str().unwrap_or_default().to_owned();
        let mut body = json!({});
        if let Some(n) = args.name {
            body["name"] = n.into();
        }
        if let Some(d) = args.description {
            body["description"] = d.into();
        }
        let url = self.client.url(&[
            "meta", "bases", &args.base, "tables", &table_id, "fields", &field_id,
        ]);
        let updated = self
            .client
            .send(
                Method::PATCH,
                url,
                Some(&args.base),
                Some(&body),
                Repeat::Safe,
            )
            .await
            .map_err(self.fail(&format!("updating field `{}`", args.field)))?;
        structured(updated)
    }
}

/// One kind of batched record write.
struct Write<'a> {
    base: &'a str,
    table: &'a str,
    method: Method,
    /// Extra body members (`typecast`, `performUpsert`).
    extra: Option<Map<String, Value>>,
    repeat: Repeat,
    what: &'a str,
}

fn mode_method(mode: Mode) -> Method {
    match mode {
        Mode::Merge => Method::PATCH,
        Mode::Replace => Method::PUT,
    }
}
