//! `bulk_import`: rows from a CSV or JSON file (or inline) upserted into a table on key fields,
//! exactly once.
//!
//! - Every batch is an upsert on the key fields, so sending one again (after a reset, a 500,
//!   or a crash before the checkpoint was written) updates instead of duplicating.
//! - A checkpoint file records the finished batches and the counts; run the same import again
//!   and it continues where it stopped. It is removed when the import completes.
//! - Several batches are in flight at once (the paced client keeps the base under its limit),
//!   so the import runs near Airtable's ceiling even when each request takes a while.
//! - A batch Airtable refuses for its contents (422) is split: each row is sent alone, so one
//!   bad row fails with its reason and the other nine land.
//!
//! One file because reading rows, batching, the checkpoint and the 422 split are one pipeline
//! with one exactly-once invariant; about half of it is the tests of that invariant.
//!
//! Over 600 lines only with its unit tests (from `#[cfg(test)]` on): the import is one loop of
//! batches, checkpoints and splits, and the ids that find a checkpoint again.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{StreamExt, stream};
use reqwest::Method;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    Airtable,
    client::{Failure, Repeat, advice},
    tools::BATCH,
};
use crate::{
    net::checkpoints::Checkpoints,
    plugin::{ToolContext, ToolError},
};

/// A source row number (1-based) and the fields it becomes.
type Row = (usize, Map<String, Value>);

/// Batches in flight at once.
const IN_FLIGHT: usize = 4;

#[derive(Deserialize, JsonSchema, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct BulkImport {
    /// Base id (app…).
    pub base: String,
    /// Table name or id.
    pub table: String,
    /// A `.csv`, `.tsv`, `.json` (array of objects) or `.jsonl` file inside the import roots.
    #[serde(default)]
    pub path: Option<String>,
    /// Rows given inline instead of a file (column → value).
    #[serde(default)]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// 1-3 fields (after mapping) that identify a record: a row whose key matches one updates it.
    pub key_fields: Vec<String>,
    /// Column → field; only mapped columns are imported. Default: each column to the field of its
    /// name.
    #[serde(default)]
    pub mapping: Option<Map<String, Value>>,
    /// Let Airtable convert values and add select options (default: converted here by field type).
    #[serde(default)]
    pub typecast: bool,
    /// Start over even if a checkpoint of this same import exists.
    #[serde(default)]
    pub restart: bool,
}

/// What a finished (or interrupted) import reports.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
pub struct Report {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    /// Rows not sent, with the reason (duplicate key, missing key, bad value).
    pub skipped: Vec<RowProblem>,
    /// Rows Airtable refused, with its reason.
    pub failed: Vec<RowProblem>,
    pub batches: usize,
    /// Batches done before this run (resumed from the checkpoint).
    pub resumed_batches: usize,
    pub seconds: f64,
    pub records_per_second: f64,
    pub complete: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RowProblem {
    /// 1-based row number in the source (header not counted).
    pub row: usize,
    pub reason: String,
}

/// What survives a crash.
#[derive(Serialize, Deserialize, Default, Clone)]
struct Checkpoint {
    job: String,
    done: BTreeSet<usize>,
    created: usize,
    updated: usize,
    failed: Vec<RowProblem>,
}

impl Airtable {
    pub async fn import(&self, args: BulkImport, cx: &ToolContext) -> Result<Report, ToolError> {
        let started = Instant::now();
        if args.key_fields.is_empty() || args.key_fields.len() > 3 {
            return Err(ToolError::InvalidArguments(
                "key_fields needs 1 to 3 field names".into(),
            ));
        }
        let (rows, source) = match (&args.path, &args.rows) {
            (Some(path), None) => {
                // The one sandbox: inside the import folders, never an excluded secret.
                let roots = self.files.get()?;
                let real = roots.resolve_file(path)?.real;
                let (file, _) = roots.open_file(&real, path)?;
                (read_rows(&real, file)?, real.display().to_string())
            }
            (None, Some(rows)) => (
                rows.iter()
                    .cloned()
                    .map(|r| r.into_iter().collect())
                    .collect(),
                "inline".to_owned(),
            ),
            _ => {
                return Err(ToolError::InvalidArguments(
                    "give either `path` (a CSV or JSON file) or `rows`".into(),
                ));
            }
        };
        let table = self.table_schema(&args.base, &args.table).await?;
        let types: HashMap<String, String> = table["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                Some((
                    f["name"].as_str()?.to_owned(),
                    f["type"].as_str()?.to_owned(),
                ))
            })
            .collect();
        for key in &args.key_fields {
            if !types.contains_key(key) {
                let mut names: Vec<&String> = types.keys().collect();
                names.sort();
                return Err(ToolError::InvalidArguments(format!(
                    "key field `{key}` is not a field of `{}`; its fields are: {}",
                    args.table,
                    names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }

        // Rows → records, with the problems of those that cannot be sent.
        let mut skipped = Vec::new();
        let mut records: Vec<Row> = Vec::new();
        let mut seen_keys: HashMap<String, usize> = HashMap::new();
        for (i, row) in rows.into_iter().enumerate() {
            let n = i + 1;
            match map_row(row, args.mapping.as_ref(), &types, args.typecast) {
                Err(reason) => skipped.push(RowProblem { row: n, reason }),
                Ok(fields) => {
                    let key: Vec<String> = args
                        .key_fields
                        .iter()
                        .map(|k| fields.get(k).map(|v| v.to_string()).unwrap_or_default())
                        .collect();
                    if key.iter().any(String::is_empty) {
                        skipped.push(RowProblem {
                            row: n,
                            reason: format!(
                                "no value for the key field(s) {}",
                                args.key_fields.join(", ")
                            ),
                        });
                        continue;
                    }
                    let key = key.join("\u{1f}");
                    if let Some(first) = seen_keys.get(&key) {
                        skipped.push(RowProblem {
                            row: n,
                            reason: format!("same key as row {first}; only the first is imported"),
                        });
                        continue;
                    }
                    seen_keys.insert(key, n);
                    records.push((n, fields));
                }
            }
        }
        let total_rows = records.len() + skipped.len();
        metrics::counter!("plugboard_import_rows_total", "service" => "airtable", "outcome" => "skipped")
            .increment(skipped.len() as u64);

        // The checkpoint of this exact job, if an earlier run was interrupted.
        let job = job_id(&args, &source, &records);
        // One replica at a time runs a given import (a second gets the reason).
        let _running = self
            .checkpoints
            .run(&job)
            .await
            .map_err(ToolError::Unavailable)?;
        let mut checkpoint = if args.restart {
            Checkpoint::default()
        } else {
            let legacy = legacy_job_id(&args, &source, &records);
            load_checkpoint(&self.checkpoints, &job, &legacy).await
        };
        checkpoint.job = job.clone();
        let resumed_batches = checkpoint.done.len();
        if resumed_batches > 0 {
            tracing::info!(job = %job, batches = resumed_batches, "resuming an interrupted import");
        }

        let batches: Vec<(usize, Vec<Row>)> = records
            .chunks(BATCH)
            .map(<[_]>::to_vec)
            .enumerate()
            .filter(|(i, _)| !checkpoint.done.contains(i))
            .collect();
        let batch_count = records.len().div_ceil(BATCH);
        let state = Arc::new(Mutex::new(checkpoint));
        let rows_done = Arc::new(std::sync::atomic::AtomicUsize::new(resumed_batches * BATCH));
        let total = records.len();
        let mut stopped: Option<String> = None;
        {
            let mut results = stream::iter(batches)
                .map(|(index, batch)| {
                    let args = &args;
                    async move { (index, batch.len(), self.send_batch(args, batch).await) }
                })
                .buffer_unordered(IN_FLIGHT);
            while let Some((index, len, outcome)) = results.next().await {
                match outcome {
                    Ok(done) => {
                        let snapshot = {
                            let mut c = state.lock().unwrap_or_else(|e| e.into_inner());
                            c.done.insert(index);
                            c.created += done.created;
                            c.updated += done.updated;
                            for (outcome, rows) in [
                                ("created", done.created),
                                ("updated", done.updated),
                                ("failed", done.failed.len()),
                            ] {
                                metrics::counter!("plugboard_import_rows_total",
                                    "service" => "airtable", "outcome" => outcome)
                                .increment(rows as u64);
                            }
                            c.failed.extend(done.failed);
                            c.clone()
                        };
                        self.checkpoints.save(&job, &snapshot).await;
                        let n =
                            rows_done.fetch_add(len, std::sync::atomic::Ordering::Relaxed) + len;
                        cx.progress(
                            n.min(total) as f64,
                            Some(total as f64),
                            format!("{} of {total} rows", n.min(total)),
                        )
                        .await;
                    }
                    Err(reason) => {
                        // Airtable is unreachable or refusing: stop, keep the checkpoint.
                        stopped.get_or_insert(reason);
                        break;
                    }
                }
                if cx.is_cancelled() {
                    stopped.get_or_insert("cancelled".into());
                    break;
                }
            }
        }
        let checkpoint = std::mem::take(&mut *state.lock().unwrap_or_else(|e| e.into_inner()));
        let complete = stopped.is_none() && checkpoint.done.len() == batch_count;
        if complete {
            self.checkpoints.remove(&job).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let sent_now = (checkpoint.done.len() - resumed_batches).min(batch_count);
        let report = Report {
            rows: total_rows,
            created: checkpoint.created,
            updated: checkpoint.updated,
            skipped,
            failed: checkpoint.failed,
            batches: batch_count,
            resumed_batches,
            seconds,
            records_per_second: (sent_now * BATCH).min(total) as f64 / seconds.max(1e-9),
            complete,
        };
        if let Some(reason) = stopped {
            return Err(ToolError::Upstream(format!(
                "the import stopped after {} of {} batches ({reason}); nothing is lost: run the \
                 same import again and it continues from its checkpoint. So far: {} created, {} \
                 updated",
                report.resumed_batches.max(checkpoint.done.len()),
                batch_count,
                report.created,
                report.updated
            )));
        }
        Ok(report)
    }

    async fn table_schema(&self, base: &str, table: &str) -> Result<Value, ToolError> {
        let url = self.client.url(&["meta", "bases", base, "tables"]);
        let answer = self
            .client
            .get(url, Some(base))
            .await
            .map_err(|f| advice(f, &format!("reading the schema of base {base}")))?;
        answer["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == table || t["name"] == table)
            .cloned()
            .ok_or_else(|| ToolError::NotFound(format!("base {base} has no table `{table}`")))
    }

    /// Upsert one batch. `Err` only when Airtable cannot be reached (the import stops);
    /// refused rows are reported in the outcome.
    async fn send_batch(&self, args: &BulkImport, batch: Vec<Row>) -> Result<BatchOutcome, String> {
        match self.upsert(args, &batch).await {
            Ok(outcome) => Ok(outcome),
            Err(Failure::Api(e)) if e.status.as_u16() == 422 && batch.len() > 1 => {
                // Something in the batch is refused: send the rows one by one.
                let mut total = BatchOutcome::default();
                for row in batch {
                    let n = row.0;
                    match self.upsert(args, std::slice::from_ref(&row)).await {
                        Ok(o) => total.add(o),
                        Err(Failure::Api(e)) if e.status.is_client_error() => {
                            total.failed.push(RowProblem {
                                row: n,
                                reason: advice(Failure::Api(e), "importing").to_string(),
                            })
                        }
                        Err(f) => return Err(f.to_string()),
                    }
                }
                Ok(total)
            }
            Err(Failure::Api(e)) if e.status.is_client_error() && e.status.as_u16() != 429 => {
                let reason = advice(Failure::Api(e), "importing").to_string();
                Ok(BatchOutcome {
                    failed: batch
                        .iter()
                        .map(|(n, _)| RowProblem {
                            row: *n,
                            reason: reason.clone(),
                        })
                        .collect(),
                    ..BatchOutcome::default()
                })
            }
            Err(f) => Err(f.to_string()),
        }
    }

    async fn upsert(&self, args: &BulkImport, batch: &[Row]) -> Result<BatchOutcome, Failure> {
        let records: Vec<Value> = batch.iter().map(|(_, f)| json!({ "fields": f })).collect();
        let body = json!({
            "records": records,
            "typecast": args.typecast,
            "performUpsert": { "fieldsToMergeOn": args.key_fields },
        });
        let url = self.client.url(&[&args.base, &args.table]);
        let answer = self
            .client
            .send(
                Method::PATCH,
                url,
                Some(&args.base),
                Some(&body),
                Repeat::Safe,
            )
            .await?;
        let count = |k: &str| answer[k].as_array().map_or(0, Vec::len);
        Ok(BatchOutcome {
            created: count("createdRecords"),
            updated: count("updatedRecords"),
            failed: Vec::new(),
        })
    }
}

#[derive(Default)]
struct BatchOutcome {
    created: usize,
    updated: usize,
    failed: Vec<RowProblem>,
}

impl BatchOutcome {
    fn add(&mut self, other: BatchOutcome) {
        self.created += other.created;
        self.updated += other.updated;
        self.failed.extend(other.failed);
    }
}

/// The same import (target, rows, mapping, keys) gets the same id, so a re-run finds its
/// checkpoint; any change starts afresh. SHA-256 over a length-prefixed encoding with object
/// keys sorted: the same on every build, platform and Rust release (a checkpoint must outlive
/// an upgrade). 32 hex digits; ids before this were 16 ([`legacy_job_id`]).
fn job_id(args: &BulkImport, source: &str, records: &[Row]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(b"plugboard bulk import v2");
    part(args.base.as_bytes());
    part(args.table.as_bytes());
    part(source.as_bytes());
    part(&(args.key_fields.len() as u64).to_le_bytes());
    for key in &args.key_fields {
        part(key.as_bytes());
    }
    part(&[u8::from(args.typecast)]);
    match &args.mapping {
        Some(mapping) => part(&canonical(&Value::Object(mapping.clone()))),
        None => part(b""),
    }
    part(&(records.len() as u64).to_le_bytes());
    for (n, fields) in records {
        part(&(*n as u64).to_le_bytes());
        part(&canonical(&Value::Object(fields.clone())));
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// JSON with every object's keys sorted, whatever order the map keeps.
pub(super) fn canonical(value: &Value) -> Vec<u8> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                // Built in sorted order; serialised in it whether or not the map keeps order.
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(value)).unwrap_or_default()
}

/// The id checkpoints had before [`job_id`]: `DefaultHasher`, whose output Rust does not
/// promise to keep. Only read, once, to carry an interrupted import across the upgrade.
fn legacy_job_id(args: &BulkImport, source: &str, records: &[Row]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &args.base,
        &args.table,
        source,
        &args.key_fields,
        args.typecast,
    )
        .hash(&mut h);
    serde_json::to_string(&args.mapping)
        .unwrap_or_default()
        .hash(&mut h);
    for (n, r) in records {
        n.hash(&mut h);
        serde_json::to_string(r).unwrap_or_default().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The checkpoint of job `job` in `dir`; failing that, one an older release left under the
/// job's `legacy` id, moved to `job`'s name so it is read under the old name only once.
/// `job`'s checkpoint (from Redis when replicas share one, else its file), or one kept under
/// its id of before (16 hex digits): saved under the stable id, then its old file removed.
async fn load_checkpoint(checkpoints: &Checkpoints, job: &str, legacy: &str) -> Checkpoint {
    if let Some(checkpoint) = checkpoints
        .load::<Checkpoint>(job)
        .await
        .filter(|c| c.job == job)
    {
        return checkpoint;
    }
    let path = checkpoints.dir().join(format!("{legacy}.json"));
    let Some(mut checkpoint) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok())
        .filter(|c| c.job == legacy)
    else {
        return Checkpoint::default();
    };
    checkpoint.job = job.to_owned();
    checkpoints.save(job, &checkpoint).await;
    if checkpoints.dir().join(format!("{job}.json")).exists() {
        let _ = std::fs::remove_file(&path);
        tracing::info!(job, legacy, "moved an import checkpoint to its stable id");
    }
    checkpoint
}

/// Rows of a CSV (header row) or JSON (array of objects, or one object per line) file.
/// The largest file an import reads: its rows are held in memory (with their checkpoint).
pub const MAX_IMPORT_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn read_rows(path: &Path, file: std::fs::File) -> Result<Vec<Map<String, Value>>, ToolError> {
    use std::io::Read;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut text = String::new();
    file.take(MAX_IMPORT_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| ToolError::InvalidArguments(format!("cannot read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_IMPORT_FILE_BYTES {
        return Err(ToolError::InvalidArguments(format!(
            "{} is over {} MiB, the most one import reads; split it into smaller files",
            path.display(),
            MAX_IMPORT_FILE_BYTES >> 20
        )));
    }
    parse_rows(&ext, &text, path)
}

/// The rows of `text`, a file of type `ext` (lower case, no dot); errors name `path`.
pub(crate) fn parse_rows(
    ext: &str,
    text: &str,
    path: &Path,
) -> Result<Vec<Map<String, Value>>, ToolError> {
    let bad = |e: String| ToolError::InvalidArguments(format!("{}: {e}", path.display()));
    match ext {
        "csv" | "tsv" => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(if ext == "tsv" { b'\t' } else { b',' })
                .flexible(false)
                .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
            let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
            let mut rows = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let record = record.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
                let mut row = Map::new();
                for (h, v) in headers.iter().zip(record.iter()) {
                    row.insert(h.to_owned(), Value::String(v.to_owned()));
                }
                rows.push(row);
            }
            Ok(rows)
        }
        "json" => match serde_json::from_str::<Value>(text).map_err(|e| bad(e.to_string()))? {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(m),
                    _ => Err(bad(format!("item {} is not an object", i + 1))),
                })
                .collect(),
            _ => Err(bad("expected an array of objects".into())),
        },
        "jsonl" | "ndjson" => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(bad(format!("line {} is not a JSON object", i + 1))),
            })
            .collect(),
        other => Err(bad(format!(
            "unsupported file type `.{other}`; use .csv, .tsv, .json or .jsonl"
        ))),
    }
}

/// One source row → the fields to send. Empty cells are left out.
pub(crate) fn map_row(
    row: Map<String, Value>,
    mapping: Option<&Map<String, Value>>,
    types: &HashMap<String, String>,
    typecast: bool,
) -> Result<Map<String, Value>, String> {
    let mut fields = Map::new();
    for (column, value) in row {
        let field = match mapping {
            Some(m) => match m.get(&column).and_then(Value::as_str) {
                Some(f) => f.to_owned(),
                None => continue,
            },
            None => column.clone(),
        };
        if matches!(&value, Value::Null) || value.as_str().is_some_and(|s| s.trim().is_empty()) {
            continue;
        }
        let Some(kind) = types.get(&field) else {
            return Err(format!(
                "column `{column}` goes to `{field}`, which is not a field of the table; map it elsewhere or leave it out with `mapping`"
            ));
        };
        let value = if typecast {
            value
        } else {
            convert(value, kind).map_err(|e| format!("`{field}`: {e}"))?
        };
        fields.insert(field, value);
    }
    Ok(fields)
}

/// Text from a CSV into the value a field of type `kind` takes.
pub(crate) fn convert(value: Value, kind: &str) -> Result<Value, String> {
    let Value::String(text) = value else {
        return Ok(value);
    };
    let t = text.trim();
    Ok(match kind {
        "number" | "percent" | "currency" | "rating" | "duration" => {
            let n: f64 = t
                .replace(',', "")
                .parse()
                .map_err(|_| format!("`{t}` is not a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| format!("`{t}` is not a finite number"))?
        }
        "checkbox" => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "x" | "checked" => Value::Bool(true),
            "false" | "no" | "n" | "0" | "" => Value::Bool(false),
            _ => {
                return Err(format!(
                    "`{t}` is not a checkbox value (true/false, yes/no, 1/0)"
                ));
            }
        },
        "multipleSelects" => Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        _ => Value::String(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_text_becomes_typed_values() {
        assert_eq!(convert(json!("1,234.5"), "number").unwrap(), json!(1234.5));
        assert!(convert(json!("abc"), "number").is_err());
        assert_eq!(convert(json!("Yes"), "checkbox").unwrap(), json!(true));
        assert_eq!(
            convert(json!("a, b"), "multipleSelects").unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(convert(json!("x"), "singleLineText").unwrap(), json!("x"));
        assert_eq!(convert(json!(3), "number").unwrap(), json!(3));
    }

    #[test]
    fn rows_map_to_fields_and_leave_out_empty_cells() {
        let types = HashMap::from([
            ("Name".to_owned(), "singleLineText".to_owned()),
            ("Qty".to_owned(), "number".to_owned()),
        ]);
        let row: Map<String, Value> =
            serde_json::from_value(json!({"name": "A", "qty": "2", "note": "x"})).unwrap();
        let mapping: Map<String, Value> =
            serde_json::from_value(json!({"name": "Name", "qty": "Qty"})).unwrap();
        let fields = map_row(row, Some(&mapping), &types, false).unwrap();
        assert_eq!(Value::Object(fields), json!({"Name": "A", "Qty": 2.0}));
        let row: Map<String, Value> =
            serde_json::from_value(json!({"Name": "", "Other": "x"})).unwrap();
        assert!(
            map_row(row, None, &types, false)
                .unwrap_err()
                .contains("Other")
        );
    }

    fn job(mapping: Option<Value>) -> (BulkImport, Vec<Row>) {
        let args: BulkImport = serde_json::from_value(json!({
            "base": "appAAAAAAAAAAAAAA",
            "table": "Items",
            "key_fields": ["SKU"],
            "mapping": mapping,
        }))
        .unwrap();
        let rows = vec![
            (
                1,
                serde_json::from_value(json!({"SKU": "A-1", "Qty": 2})).unwrap(),
            ),
            (
                2,
                serde_json::from_value(json!({"Qty": 3, "SKU": "A-2"})).unwrap(),
            ),
        ];
        (args, rows)
    }

    /// The id is a fixed function of the import: this value must never change, or every
    /// interrupted import is orphaned by the upgrade that changed it.
    #[test]
    fn job_ids_are_golden() {
        let (args, rows) = job(None);
        // Computed independently (Python's hashlib over the same encoding).
        assert_eq!(
            job_id(&args, "/data/items.csv", &rows),
            "4b63f6f50b1884d26c6932de5a8ed87f"
        );
        // Key order inside a row or the mapping does not matter; anything else does.
        let (mapped, _) = job(Some(json!({"sku": "SKU", "qty": "Qty"})));
        let (reordered, _) = job(Some(json!({"qty": "Qty", "sku": "SKU"})));
        assert_eq!(
            job_id(&mapped, "/data/items.csv", &rows),
            job_id(&reordered, "/data/items.csv", &rows)
        );
        assert_ne!(
            job_id(&mapped, "/data/items.csv", &rows),
            job_id(&args, "/data/items.csv", &rows)
        );
        assert_ne!(
            job_id(&args, "/data/other.csv", &rows),
            job_id(&args, "/data/items.csv", &rows)
        );
        assert_ne!(
            job_id(&args, "/data/items.csv", &rows[..1]),
            job_id(&args, "/data/items.csv", &rows)
        );
    }

    /// A checkpoint an older release wrote under its `DefaultHasher` id is read once: moved to
    /// the stable id, with what it had done.
    #[tokio::test]
    async fn a_legacy_checkpoint_is_carried_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new("import", dir.path().to_owned(), None);
        let (args, rows) = job(None);
        let (new, old) = (
            job_id(&args, "/d/items.csv", &rows),
            legacy_job_id(&args, "/d/items.csv", &rows),
        );
        assert_eq!((new.len(), old.len()), (32, 16));
        let legacy = Checkpoint {
            job: old.clone(),
            done: BTreeSet::from([0, 2]),
            created: 20,
            ..Checkpoint::default()
        };
        checkpoints.save(&old, &legacy).await;
        let loaded = load_checkpoint(&checkpoints, &new, &old).await;
        assert_eq!((loaded.job.as_str(), loaded.created), (new.as_str(), 20));
        assert_eq!(loaded.done, BTreeSet::from([0, 2]));
        assert!(!dir.path().join(format!("{old}.json")).exists());
        assert!(dir.path().join(format!("{new}.json")).exists());
        // Read again: the stable one, and nothing else is left.
        assert_eq!(
            load_checkpoint(&checkpoints, &new, &old).await.done.len(),
            2
        );
        // A checkpoint of another job under this name is not taken for this one.
        let stray = Checkpoint {
            job: "someone-else".into(),
            ..Checkpoint::default()
        };
        checkpoints.save(&old, &stray).await;
        std::fs::remove_file(dir.path().join(format!("{new}.json"))).unwrap();
        assert!(
            load_checkpoint(&checkpoints, &new, &old)
                .await
                .done
                .is_empty()
        );
    }
}
