//! The MCP side of `bulk_import`: its published definition and its result. The import itself
//! (rows, batches, checkpoints) is the engine in the plugin's `import.rs`.

use std::sync::Arc;

use rmcp::model::CallToolResult;

use crate::{
    plugin::{Hints, ToolContext, ToolDef, ToolOutcome},
    plugins::airtable::{Airtable, BulkImport},
};

pub(super) fn bulk_import(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "bulk_import",
        "Import rows from a CSV/TSV/JSON/JSONL file (in the import folders) or inline `rows` into \
         a table, upserting on `key_fields` (a re-run never duplicates). An interrupted import \
         resumes when run again.",
        Hints::destructive(true).open_world(),
        move |args: BulkImport, cx| {
            let at = at.clone();
            async move { run(&at, args, cx).await }
        },
    )
    // Large imports run for as long as they need (50 records/s at best); cancel to stop.
    .with_timeout(std::time::Duration::from_secs(24 * 3600))
}

/// The import's report as the result: an error result when it did not complete, so the client
/// sees at a glance that rows are missing (and the report says which, and why).
async fn run(at: &Airtable, args: BulkImport, cx: ToolContext) -> ToolOutcome {
    let report = at.import(args, &cx).await?;
    let value = serde_json::to_value(&report).unwrap_or_default();
    Ok(if report.complete {
        CallToolResult::structured(value)
    } else {
        CallToolResult::structured_error(value)
    })
}
