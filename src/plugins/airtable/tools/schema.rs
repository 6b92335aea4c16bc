//! Bases, tables and fields: `list_bases`, `list_tables` and `describe_base` (the schema at
//! the detail asked for), `create_table`, `create_field` and `update_field`.

use std::sync::Arc;

use reqwest::Method;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{check_id, structured};
use crate::{
    plugin::{Hints, ToolDef, ToolError, ToolOutcome},
    plugins::airtable::{Airtable, client::Repeat},
};

pub(super) fn list_bases(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "list_bases",
        "List the Airtable bases the token can access (id, name, permission level).",
        Hints::read_only().open_world(),
        move |args: ListBases, _| {
            let at = at.clone();
            async move { at.list_bases(args).await }
        },
    )
}

pub(super) fn list_tables(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "list_tables",
        "List a base's tables at a `detail` of `ids` (ids and names), `names` (default: with \
         field names and types) or `full` (with field options and views).",
        Hints::read_only().open_world(),
        move |args: Schema, _| {
            let at = at.clone();
            async move { at.describe(args, Detail::Names).await }
        },
    )
}

pub(super) fn describe_base(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "describe_base",
        "Describe a base's schema: tables, fields (types, options) and views; some `tables` only, \
         at a `detail` of `ids`, `names` or `full` (default).",
        Hints::read_only().open_world(),
        move |args: Schema, _| {
            let at = at.clone();
            async move { at.describe(args, Detail::Full).await }
        },
    )
}

pub(super) fn create_table(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "create_table",
        "Create a table with its fields (the first field is the primary field).",
        Hints::additive().open_world(),
        move |args: CreateTable, _| {
            let at = at.clone();
            async move { at.create_table(args).await }
        },
    )
}

pub(super) fn create_field(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "create_field",
        "Add a field to a table.",
        Hints::additive().open_world(),
        move |args: CreateField, _| {
            let at = at.clone();
            async move { at.create_field(args).await }
        },
    )
}

pub(super) fn update_field(at: &Arc<Airtable>) -> ToolDef {
    let at = at.clone();
    ToolDef::new(
        "update_field",
        "Rename a field or change its description (its type cannot be changed through the API).",
        Hints::destructive(true).open_world(),
        move |args: UpdateField, _| {
            let at = at.clone();
            async move { at.update_field(args).await }
        },
    )
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListBases {
    /// `next_cursor` from a previous call.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Detail {
    /// Table ids and names.
    Ids,
    /// Plus field names and types.
    Names,
    /// Everything: field options and descriptions, views.
    Full,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Schema {
    /// Base id (app…).
    base: String,
    /// Only these tables (names or ids).
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    detail: Option<Detail>,
}

#[derive(Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    /// Airtable field type, e.g. singleLineText, multilineText, number, checkbox, singleSelect,
    /// multipleSelects, date, url.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Type-specific options as Airtable documents them, e.g. `{"precision":0}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateTable {
    base: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// The first field is the primary field.
    fields: Vec<FieldSpec>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateField {
    base: String,
    table: String,
    #[serde(flatten)]
    field: FieldSpec,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateField {
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

// ---- handlers ----------------------------------------------------------------------------

impl Airtable {
    async fn list_bases(&self, args: ListBases) -> ToolOutcome {
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

    async fn describe(&self, args: Schema, default: Detail) -> ToolOutcome {
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

    async fn create_table(&self, args: CreateTable) -> ToolOutcome {
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

    async fn create_field(&self, args: CreateField) -> ToolOutcome {
        // An id goes straight into the path (one request, not two: the organizer creates
        // several fields in a row); a name is looked up in the schema first.
        let table_id = if is_table_id(&args.table) {
            args.table.clone()
        } else {
            self.table_id(&args.base, &args.table).await?.0
        };
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

    async fn update_field(&self, args: UpdateField) -> ToolOutcome {
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

/// `tbl` and 14 letters or digits: how Airtable's table ids look (a name may be anything).
fn is_table_id(table: &str) -> bool {
    table.len() == 17
        && table.starts_with("tbl")
        && table[3..].bytes().all(|b| b.is_ascii_alphanumeric())
}
