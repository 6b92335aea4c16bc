//! Reading records: `list_records` (paged by a cursor of our own that survives an expired
//! Airtable offset), `get_record` and `search_records` (a formula built from the query).

use std::sync::Arc;

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{check_id, structured};
use crate::{
    plugin::{Hints, ToolDef, ToolError, ToolOutcome},
    plugins::airtable::{Airtable, client::Failure},
};

pub(super) fn list_records(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "list_records",
        "List a table's records, through a view, filtered by a formula, sorted, with some fields \
         only: at most `limit`; while `truncated`, `next_cursor` continues.",
        Hints::read_only().open_world(),
        move |args: ListRecords, _| {
            let at = at.clone();
            async move { at.list_records(args).await }
        },
    )
}

pub(super) fn get_record(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "get_record",
        "Get one record by id (rec…).",
        Hints::read_only().open_world(),
        move |args: GetRecord, _| {
            let at = at.clone();
            async move { at.get_record(args).await }
        },
    )
}

pub(super) fn search_records(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "search_records",
        "Find records whose fields contain a text (case-insensitive): the given `fields`, or \
         every text-like field.",
        Hints::read_only().open_world(),
        move |args: SearchRecords, _| {
            let at = at.clone();
            async move { at.search_records(args).await }
        },
    )
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema, Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct Sort {
    field: String,
    #[serde(default)]
    direction: Option<Direction>,
}

#[derive(Deserialize, JsonSchema, Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Asc,
    Desc,
}

#[derive(Deserialize, JsonSchema, Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct ListRecords {
    /// Base id (app…).
    base: String,
    /// Table name or id (tbl…).
    table: String,
    /// A view (name or id): its filter and order apply.
    #[serde(default)]
    view: Option<String>,
    /// Airtable formula; records where it is false, 0, empty or an error are left out, e.g.
    /// `AND({Status} = 'Done', {Points} > 3)`.
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
    /// Records per Airtable request.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    page_size: Option<u32>,
    /// Records in this call (default and most: the plugin's max_records_per_call).
    #[serde(default)]
    limit: Option<u32>,
    /// `next_cursor` of the previous call with the same arguments.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetRecord {
    base: String,
    table: String,
    /// Record id (rec…).
    record_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchRecords {
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

// ---- cursors and formulas ----------------------------------------------------------------

/// Cursor of `list_records`: Airtable's offset plus how many records were already returned,
/// so an expired offset restarts the listing without repeating records.
#[derive(Serialize, Deserialize, Default, Clone)]
pub(crate) struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<String>,
    n: usize,
    /// The query the cursor belongs to.
    q: u64,
}

pub(crate) fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

pub(crate) fn decode_cursor(s: &str, query: u64) -> Result<Cursor, ToolError> {
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
    use sha2::{Digest, Sha256};
    let mut key = args.clone();
    key.cursor = None;
    key.limit = None;
    // Stable across builds and Rust releases (unlike `DefaultHasher`): a cursor handed out
    // before an upgrade still matches its query after it.
    let query = serde_json::to_value(&key).unwrap_or_default();
    let digest = Sha256::digest(super::super::import::canonical(&query));
    u64::from_le_bytes(digest[..8].try_into().expect("8 of 32 bytes"))
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
pub(crate) fn formula_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A field reference in an Airtable formula.
fn formula_field(name: &str) -> String {
    format!("{{{}}}", name.replace('}', "\\}"))
}

// ---- handlers ----------------------------------------------------------------------------

impl Airtable {
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

    async fn list_records(&self, args: ListRecords) -> ToolOutcome {
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

    async fn get_record(&self, args: GetRecord) -> ToolOutcome {
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

    async fn search_records(&self, args: SearchRecords) -> ToolOutcome {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A cursor names its query by this value; it must not change between releases, or every
    /// cursor a client holds across an upgrade is refused.
    #[test]
    fn cursor_query_ids_are_golden() {
        let args: ListRecords = serde_json::from_value(json!({
            "base": "appAAAAAAAAAAAAAA",
            "table": "Items",
            "fields": ["SKU", "Name"],
            "limit": 5,
            "cursor": "x",
        }))
        .unwrap();
        // Computed independently (Python's hashlib over the sorted-key JSON).
        assert_eq!(query_hash(&args), 11_061_175_932_768_204_319);
        let mut other = args.clone();
        other.table = "Other".into();
        assert_ne!(query_hash(&other), query_hash(&args));
        // Paging arguments are not part of the query.
        other = args.clone();
        other.limit = Some(50);
        other.cursor = None;
        assert_eq!(query_hash(&other), query_hash(&args));
    }
}
