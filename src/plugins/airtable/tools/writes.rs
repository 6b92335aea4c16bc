//! Writing records: `create_records`, `update_records`, `upsert_records` and
//! `delete_records`, any number sent in batches of [`BATCH`]; a failed batch does not stop the
//! others, and the answer says what landed.

use std::sync::Arc;

use reqwest::Method;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{BATCH, check_id, structured};
use crate::{
    plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome},
    plugins::airtable::{Airtable, client::Repeat},
};

pub(super) fn create_records(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "create_records",
        "Create records (any number; sent in batches of 10).",
        Hints::additive().open_world(),
        move |args: CreateRecords, cx| {
            let at = at.clone();
            async move { at.create_records(args, cx).await }
        },
    )
}

pub(super) fn update_records(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "update_records",
        "Update records by id (any number; batches of 10).",
        Hints::destructive(true).open_world(),
        move |args: UpdateRecords, cx| {
            let at = at.clone();
            async move { at.update_records(args, cx).await }
        },
    )
}

pub(super) fn upsert_records(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "upsert_records",
        "Create or update records matched on 1-3 key fields (`fields_to_merge_on`); safe to \
         repeat.",
        Hints::destructive(true).open_world(),
        move |args: UpsertRecords, cx| {
            let at = at.clone();
            async move { at.upsert_records(args, cx).await }
        },
    )
}

pub(super) fn delete_records(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "delete_records",
        "Delete records by id (any number; batches of 10); this cannot be undone.",
        Hints::destructive(true).open_world(),
        move |args: DeleteRecords, cx| {
            let at = at.clone();
            async move { at.delete_records(args, cx).await }
        },
    )
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewRecord {
    /// Field name → value.
    fields: Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateRecords {
    base: String,
    table: String,
    records: Vec<NewRecord>,
    /// Let Airtable convert values ("3" into a number) and add select options.
    #[serde(default)]
    typecast: bool,
}

#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Change only the fields given.
    #[default]
    Merge,
    /// Clear every field not given.
    Replace,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecordUpdate {
    /// Record id (rec…).
    id: String,
    fields: Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRecords {
    base: String,
    table: String,
    records: Vec<RecordUpdate>,
    /// `merge` (default): only the given fields change; `replace`: the fields not given are
    /// cleared.
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    typecast: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpsertRecord {
    /// Optional record id; without it the key fields decide.
    #[serde(default)]
    id: Option<String>,
    fields: Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpsertRecords {
    base: String,
    table: String,
    records: Vec<UpsertRecord>,
    /// 1-3 field names whose values identify a record.
    fields_to_merge_on: Vec<String>,
    /// `merge` (default): only the given fields change; `replace`: the fields not given are
    /// cleared.
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    typecast: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeleteRecords {
    base: String,
    table: String,
    /// Record ids (rec…).
    record_ids: Vec<String>,
}

// ---- results -------------------------------------------------------------------------------

/// A result that reports a partial failure: the client sees what landed and what did not.
fn partial(value: Value, failed: bool) -> ToolOutcome {
    if failed {
        Ok(CallToolResult::structured_error(value))
    } else {
        structured(value)
    }
}

// ---- handlers ----------------------------------------------------------------------------

impl Airtable {
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

    async fn create_records(&self, args: CreateRecords, cx: ToolContext) -> ToolOutcome {
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

    async fn update_records(&self, args: UpdateRecords, cx: ToolContext) -> ToolOutcome {
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

    async fn upsert_records(&self, args: UpsertRecords, cx: ToolContext) -> ToolOutcome {
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

    async fn delete_records(&self, args: DeleteRecords, cx: ToolContext) -> ToolOutcome {
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
