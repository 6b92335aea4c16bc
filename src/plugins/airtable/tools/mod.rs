//! The `airtable_*` tools, one file per family: [`records`] (list, get, search), [`writes`]
//! (create, update, upsert, delete in batches), [`schema`] (bases, tables, fields) and
//! [`import`] (`bulk_import`, whose engine is the plugin's `import.rs`). Each family file holds
//! its arguments, handlers and one function per tool that builds its [`ToolDef`]; this file
//! holds the published list and what the families share: id checks, schema lookups and errors
//! that name the table's fields.

mod import;
pub(crate) mod records;
mod schema;
mod writes;

use std::sync::Arc;

use rmcp::model::CallToolResult;
use serde_json::Value;

use super::{
    Airtable,
    client::{Failure, advice},
};
use crate::plugin::{ToolDef, ToolError, ToolOutcome};

/// Airtable accepts at most this many records per write.
pub(super) const BATCH: usize = 10;

/// The tools in the order they are published.
pub(super) fn all(at: Arc<Airtable>) -> Vec<ToolDef> {
    vec![
        schema::list_bases(&at),
        schema::list_tables(&at),
        schema::describe_base(&at),
        records::list_records(&at),
        records::get_record(&at),
        records::search_records(&at),
        writes::create_records(&at),
        writes::update_records(&at),
        writes::upsert_records(&at),
        writes::delete_records(&at),
        schema::create_table(&at),
        schema::create_field(&at),
        import::bulk_import(&at),
        schema::update_field(&at),
    ]
}

// ---- results -------------------------------------------------------------------------------

fn structured(value: Value) -> ToolOutcome {
    Ok(CallToolResult::structured(value))
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

// ---- schema lookups and errors ---------------------------------------------------------------

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
}
