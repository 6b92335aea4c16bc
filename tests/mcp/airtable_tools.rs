//! Every `airtable_*` tool through rmcp's client, against the fake Airtable (its real 5
//! requests/s per base): what each returns, what each leaves in the fake, and errors that say
//! what to fix. Setup and the bulk imports are in `airtable.rs`.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::{
    airtable::{Client, Setup, call_tool, fails, fields_of, ok, until},
    fake_airtable::{FakeAirtable, FakeConfig, Faults},
    support::text,
};

/// A base `Work` with `Tasks` (25 records) and `People` (empty).
///
/// Task i: Name `Task ii` (task 20: `Task 20 Blue edition`), Notes `Paint it BLUE` for 5, 10
/// and 15 (else `note i`), Status Todo/Doing/Done by i mod 3, Points i.
fn work(s: &Setup) -> String {
    let base = s.fake.add_base("Work", "create");
    s.fake.add_table(
        &base,
        "Tasks",
        &[
            ("Name", "singleLineText", None),
            ("Notes", "multilineText", None),
            (
                "Status",
                "singleSelect",
                Some(json!({"choices": ["Todo", "Doing", "Done"]})),
            ),
            ("Points", "number", Some(json!({"precision": 0}))),
        ],
    );
    s.fake.add_table(
        &base,
        "People",
        &[("Name", "singleLineText", None), ("Email", "email", None)],
    );
    let rows = (1..=25)
        .map(|i| {
            let status = ["Todo", "Doing", "Done"][i % 3];
            let fields = json!({
                "Name": task(i),
                "Notes": if [5, 10, 15].contains(&i) { "Paint it BLUE".to_owned() } else { format!("note {i}") },
                "Status": status,
                "Points": i,
            });
            fields.as_object().unwrap().clone()
        })
        .collect();
    s.fake.insert_records(&base, "Tasks", rows);
    base
}

fn task(i: usize) -> String {
    if i == 20 {
        "Task 20 Blue edition".to_owned()
    } else {
        format!("Task {i:02}")
    }
}

fn ids(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap_or_else(|| panic!("records: {records}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn names(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fields"]["Name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn fake_ids(fake: &FakeAirtable, base: &str, table: &str) -> Vec<String> {
    fake.records(base, table)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `{"base": base, "table": table}` plus `extra`'s members.
fn on(base: &str, table: &str, extra: Value) -> Value {
    let mut a = json!({"base": base, "table": table});
    a.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    a
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn bases_tables_and_schema_at_each_detail() {
    // Two bases a page, to see the cursor work.
    let s = Setup::with(FakeConfig {
        bases_page_size: 2,
        ..FakeConfig::default()
    });
    let base = work(&s);
    let read_only = s.fake.add_base("Archive", "read");
    s.fake.add_base("Hidden", "none");
    let third = s.fake.add_base("Later", "edit");
    let client = s.client().await;

    let bases = ok(&client, "airtable_list_bases", json!({})).await;
    assert_eq!(
        bases["bases"],
        json!([
            {"id": base, "name": "Work", "permissionLevel": "create"},
            {"id": read_only, "name": "Archive", "permissionLevel": "read"},
        ]),
        "{bases}"
    );
    assert!(bases["next_cursor"].is_string(), "{bases}");
    let more = ok(
        &client,
        "airtable_list_bases",
        json!({"cursor": bases["next_cursor"]}),
    )
    .await;
    assert_eq!(
        more["bases"],
        json!([{"id": third, "name": "Later", "permissionLevel": "edit"}]),
        "{more}"
    );
    assert_eq!(more["next_cursor"], Value::Null, "{more}");

    let schema = s.fake.table_schema(&base, "Tasks");
    // ids: ids and names of the tables, nothing else.
    let listed = ok(
        &client,
        "airtable_list_tables",
        json!({"base": base, "detail": "ids"}),
    )
    .await;
    assert_eq!(
        listed["tables"],
        json!([
            {"id": schema["id"], "name": "Tasks"},
            {"id": s.fake.table_schema(&base, "People")["id"], "name": "People"},
        ]),
        "{listed}"
    );
    // names (the default): plus the fields' ids, names and types, no options, no views.
    let listed = ok(&client, "airtable_list_tables", json!({"base": base})).await;
    let tasks = &listed["tables"][0];
    assert_eq!(
        keys(tasks),
        ["fields", "id", "name", "primaryFieldId"],
        "{listed}"
    );
    assert_eq!(tasks["primaryFieldId"], schema["primaryFieldId"]);
    let fields: Vec<Value> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!({"id": f["id"], "name": f["name"], "type": f["type"]}))
        .collect();
    assert_eq!(tasks["fields"], json!(fields), "{listed}");
    assert!(!listed.to_string().contains("choices"), "{listed}");
    // full: the schema as Airtable has it, options and views included.
    let listed = ok(
        &client,
        "airtable_list_tables",
        json!({"base": base, "detail": "full"}),
    )
    .await;
    assert_eq!(listed["tables"][0], schema, "{listed}");
    assert_eq!(listed["tables"][0]["views"][0]["name"], "Grid view");
    assert_eq!(
        listed["tables"][0]["fields"][2]["options"]["choices"][1]["name"],
        "Doing"
    );

    // describe_base: full by default, limited to the tables asked for (by name or id).
    let described = ok(
        &client,
        "airtable_describe_base",
        json!({"base": base, "tables": ["People"]}),
    )
    .await;
    assert_eq!(
        described["tables"],
        json!([s.fake.table_schema(&base, "People")]),
        "{described}"
    );
    let described = ok(
        &client,
        "airtable_describe_base",
        json!({"base": base, "tables": [schema["id"]], "detail": "ids"}),
    )
    .await;
    assert_eq!(
        described["tables"],
        json!([{"id": schema["id"], "name": "Tasks"}])
    );
    let error = fails(
        &client,
        "airtable_describe_base",
        json!({"base": base, "tables": ["Tasks", "Projects"]}),
    )
    .await;
    assert!(
        error.contains("no table `Projects`") && error.contains("its tables are: Tasks, People"),
        "{error}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn list_records_filters_sorts_and_pages_without_gaps_or_duplicates() {
    let s = Setup::new();
    let base = work(&s);
    s.fake.add_view(&base, "Tasks", "Everything", "grid");
    let all = fake_ids(&s.fake, &base, "Tasks");
    let client = s.client().await;
    let list = |extra: Value| ok(&client, "airtable_list_records", on(&base, "Tasks", extra));

    let listed = list(json!({})).await;
    assert_eq!(ids(&listed["records"]), all, "{listed}");
    assert_eq!(listed["count"], 25);
    assert_eq!(listed["truncated"], false);
    assert_eq!(listed["next_cursor"], Value::Null);
    assert_eq!(
        listed["records"][4]["fields"],
        json!({"Name": "Task 05", "Notes": "Paint it BLUE", "Status": "Done", "Points": 5})
    );

    let listed = list(json!({"view": "Everything"})).await;
    assert_eq!(ids(&listed["records"]), all);
    let error = fails(
        &client,
        "airtable_list_records",
        on(&base, "Tasks", json!({"view": "Nope"})),
    )
    .await;
    assert!(error.contains("Nope"), "{error}");

    let listed = list(json!({"filter_by_formula": "{Points} > 20"})).await;
    assert_eq!(
        names(&listed["records"]),
        ["Task 21", "Task 22", "Task 23", "Task 24", "Task 25"]
    );
    let listed = list(json!({
        "filter_by_formula": "AND({Status} = 'Doing', {Points} < 10)",
        "sort": [{"field": "Points", "direction": "desc"}],
    }))
    .await;
    assert_eq!(names(&listed["records"]), ["Task 07", "Task 04", "Task 01"]);

    let listed = list(json!({"sort": [{"field": "Points", "direction": "desc"}]})).await;
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(ids(&listed["records"]), reversed);

    let listed = list(json!({"fields": ["Name", "Points"], "max_records": 3})).await;
    assert_eq!(names(&listed["records"]), ["Task 01", "Task 02", "Task 03"]);
    assert_eq!(listed["truncated"], false, "{listed}");
    for r in listed["records"].as_array().unwrap() {
        assert_eq!(keys(&r["fields"]), ["Name", "Points"], "{r}");
    }

    // limit + cursor: pages of 7 cover everything once, in order.
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut args = json!({"limit": 7});
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = list(args).await;
        sizes.push(page["count"].as_u64().unwrap());
        seen.extend(ids(&page["records"]));
        assert_eq!(page["truncated"], !page["next_cursor"].is_null(), "{page}");
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(sizes.len() < 10, "paging does not end: {sizes:?}");
    }
    assert_eq!(sizes, [7, 7, 7, 4]);
    assert_eq!(seen, all);

    // max_records counts across calls.
    let first = list(json!({"max_records": 10, "limit": 4})).await;
    let second = list(json!({"max_records": 10, "limit": 4, "cursor": first["next_cursor"]})).await;
    let third = list(json!({"max_records": 10, "limit": 4, "cursor": second["next_cursor"]})).await;
    let mut got = ids(&first["records"]);
    got.extend(ids(&second["records"]));
    got.extend(ids(&third["records"]));
    assert_eq!(got, all[..10], "{first}\n{second}\n{third}");
    assert_eq!(third["truncated"], false, "{third}");

    // A cursor belongs to its query.
    let error = fails(
        &client,
        "airtable_list_records",
        on(
            &base,
            "Tasks",
            json!({"limit": 4, "cursor": first["next_cursor"]}),
        ),
    )
    .await;
    assert!(error.contains("cursor"), "{error}");

    // Airtable's offsets expire: the cursor still continues, with nothing repeated or lost.
    let first = list(json!({"limit": 10})).await;
    assert_eq!(ids(&first["records"]), all[..10]);
    s.fake.expire_offsets();
    let second = list(json!({"limit": 10, "cursor": first["next_cursor"]})).await;
    assert_eq!(ids(&second["records"]), all[10..20], "{second}");
    s.fake.expire_offsets();
    let third = list(json!({"limit": 10, "cursor": second["next_cursor"]})).await;
    assert_eq!(ids(&third["records"]), all[20..], "{third}");
    assert_eq!(third["truncated"], false);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn get_and_search_records() {
    let s = Setup::new();
    let base = work(&s);
    let all = fake_ids(&s.fake, &base, "Tasks");
    let client = s.client().await;

    let record = ok(
        &client,
        "airtable_get_record",
        on(&base, "Tasks", json!({"record_id": all[6]})),
    )
    .await;
    assert_eq!(record, s.fake.records(&base, "Tasks")[6], "{record}");
    let error = fails(
        &client,
        "airtable_get_record",
        on(&base, "Tasks", json!({"record_id": "recAAAAAAAAAAAAAA"})),
    )
    .await;
    assert!(
        error.contains("not found") && error.contains("recAAAAAAAAAAAAAA"),
        "{error}"
    );
    let error = fails(
        &client,
        "airtable_get_record",
        on(&base, "Tasks", json!({"record_id": "Task 07"})),
    )
    .await;
    assert!(error.contains("not a record id"), "{error}");

    // Case-insensitive, in every text-like field by default.
    let search = |extra: Value| {
        ok(
            &client,
            "airtable_search_records",
            on(&base, "Tasks", extra),
        )
    };
    let found = search(json!({"query": "bLuE"})).await;
    assert_eq!(
        names(&found["records"]),
        ["Task 05", "Task 10", "Task 15", "Task 20 Blue edition"],
        "{found}"
    );
    let searched: BTreeSet<&str> = found["searched_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        searched.contains("Name") && searched.contains("Notes") && !searched.contains("Points"),
        "{found}"
    );
    // Only the fields asked for.
    let found = search(json!({"query": "BLUE", "fields": ["Name"]})).await;
    assert_eq!(names(&found["records"]), ["Task 20 Blue edition"]);
    let found = search(json!({"query": "blue", "fields": ["Notes"]})).await;
    assert_eq!(names(&found["records"]), ["Task 05", "Task 10", "Task 15"]);
    // Select values are text too; `limit` bounds the answer.
    let found = search(json!({"query": "doing", "limit": 3})).await;
    assert_eq!(names(&found["records"]), ["Task 01", "Task 04", "Task 07"]);
    assert_eq!(found["truncated"], true, "{found}");
    let found = search(json!({"query": "no such text"})).await;
    assert_eq!(found["count"], 0, "{found}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn create_250_records_in_25_batches_each_once() {
    let s = Setup::new();
    let base = s.fake.add_base("Bulk", "create");
    s.fake.add_table(
        &base,
        "Rows",
        &[
            ("Name", "singleLineText", None),
            ("N", "number", Some(json!({"precision": 0}))),
        ],
    );
    let client = s.client().await;
    let records: Vec<Value> = (1..=250)
        .map(|i| json!({"fields": {"Name": format!("Row {i}"), "N": i}}))
        .collect();
    s.fake.reset_stats();
    let created = ok(
        &client,
        "airtable_create_records",
        json!({"base": base, "table": "Rows", "records": records}),
    )
    .await;
    assert_eq!(created["count"], 250, "{created}");
    assert_eq!(created["requested"], 250);
    assert!(created.get("failed").is_none(), "{created}");
    let stats = s.fake.stats();
    assert_eq!(stats.requests_total, 25, "{stats:?}");
    assert_eq!(stats.requests_per_base.get(&base), Some(&25), "{stats:?}");
    assert_eq!(stats.total_429(), 0, "{stats:?}");
    assert!(stats.max_requests_1s_per_base[&base] <= 5, "{stats:?}");

    let rows = fields_of(&s.fake, &base, "Rows");
    assert_eq!(rows.len(), 250);
    let numbers: Vec<u64> = rows.iter().map(|r| r["N"].as_u64().unwrap()).collect();
    assert_eq!(
        numbers,
        (1..=250).collect::<Vec<u64>>(),
        "each once, in order"
    );
    for r in &rows {
        assert_eq!(r["Name"], json!(format!("Row {}", r["N"])));
    }
    // The answer names the records as they landed.
    let landed: BTreeSet<String> = ids(&created["records"]).into_iter().collect();
    let in_fake: BTreeSet<String> = fake_ids(&s.fake, &base, "Rows").into_iter().collect();
    assert_eq!(landed, in_fake);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn update_upsert_and_delete_records() {
    let s = Setup::new();
    let base = work(&s);
    let all = fake_ids(&s.fake, &base, "Tasks");
    let client = s.client().await;
    let record = |id: &str| -> Map<String, Value> {
        s.fake
            .records(&base, "Tasks")
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} is gone"))["fields"]
            .as_object()
            .unwrap()
            .clone()
    };

    // merge changes the fields given; replace clears the others.
    let updated = ok(
        &client,
        "airtable_update_records",
        on(
            &base,
            "Tasks",
            json!({"records": [{"id": all[0], "fields": {"Points": 100}}]}),
        ),
    )
    .await;
    assert_eq!(updated["count"], 1, "{updated}");
    assert_eq!(
        Value::Object(record(&all[0])),
        json!({"Name": "Task 01", "Notes": "note 1", "Status": "Doing", "Points": 100})
    );
    ok(
        &client,
        "airtable_update_records",
        on(
            &base,
            "Tasks",
            json!({"records": [{"id": all[1], "fields": {"Name": "Replaced"}}], "mode": "replace"}),
        ),
    )
    .await;
    assert_eq!(Value::Object(record(&all[1])), json!({"Name": "Replaced"}));

    // upsert: the same input twice; the second run creates nothing.
    let input = on(
        &base,
        "Tasks",
        json!({
            "records": [
                {"fields": {"Name": "Upsert A", "Points": 1}},
                {"fields": {"Name": "Upsert B", "Points": 2}},
                {"fields": {"Name": "Task 03", "Points": 33}},
            ],
            "fields_to_merge_on": ["Name"],
        }),
    );
    let first = ok(&client, "airtable_upsert_records", input.clone()).await;
    assert_eq!(first["created_ids"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(first["updated_ids"], json!([all[2]]), "{first}");
    let second = ok(&client, "airtable_upsert_records", input).await;
    assert_eq!(second["created_ids"], json!([]), "{second}");
    let mut again = ids(&second["records"]);
    again.sort();
    let mut expected: Vec<String> = first["created_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    expected.push(all[2].clone());
    expected.sort();
    let mut updated_ids: Vec<String> = second["updated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    updated_ids.sort();
    assert_eq!(updated_ids, expected, "{second}");
    assert_eq!(again, expected, "{second}");
    let tasks = fields_of(&s.fake, &base, "Tasks");
    assert_eq!(tasks.len(), 27);
    for name in ["Upsert A", "Upsert B", "Task 03"] {
        assert_eq!(
            tasks.iter().filter(|r| r["Name"] == name).count(),
            1,
            "{name}"
        );
    }
    assert_eq!(record(&all[2])["Points"], 33);

    // delete: announced as destructive; the records are gone, the others stay.
    let tools = client.list_all_tools().await.unwrap();
    let annotations = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} is published"))
            .annotations
            .clone()
            .unwrap()
    };
    assert_eq!(
        annotations("airtable_delete_records").destructive_hint,
        Some(true)
    );
    assert_eq!(
        annotations("airtable_delete_records").read_only_hint,
        Some(false)
    );
    assert_eq!(
        annotations("airtable_list_records").read_only_hint,
        Some(true)
    );
    let gone: Vec<String> = first["created_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let deleted = ok(
        &client,
        "airtable_delete_records",
        on(&base, "Tasks", json!({"record_ids": gone})),
    )
    .await;
    assert_eq!(deleted["count"], 2, "{deleted}");
    let left = fake_ids(&s.fake, &base, "Tasks");
    assert_eq!(left, all, "exactly the two upserted records are gone");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn tables_and_fields_are_created_and_renamed() {
    let s = Setup::new();
    let base = work(&s);
    let client = s.client().await;

    let table = ok(
        &client,
        "airtable_create_table",
        json!({
            "base": base,
            "name": "Projects",
            "description": "what we build",
            "fields": [
                {"name": "Title", "type": "singleLineText"},
                {"name": "Budget", "type": "number", "options": {"precision": 2}},
                {"name": "Stage", "type": "singleSelect", "options": {"choices": [{"name": "Idea"}, {"name": "Live"}]}},
            ],
        }),
    )
    .await;
    let schema = s.fake.table_schema(&base, "Projects");
    assert_eq!(table, schema, "the answer is the table as created");
    let fields = schema["fields"].as_array().unwrap();
    let field_names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(field_names, ["Title", "Budget", "Stage"]);
    assert_eq!(schema["primaryFieldId"], fields[0]["id"]);
    assert_eq!(schema["description"], "what we build");
    assert_eq!(fields[1]["options"], json!({"precision": 2}));

    let field = ok(
        &client,
        "airtable_create_field",
        json!({"base": base, "table": "Projects", "name": "Owner", "type": "email", "description": "who asked"}),
    )
    .await;
    let schema = s.fake.table_schema(&base, "Projects");
    let owner = schema["fields"][3].clone();
    assert_eq!(field, owner);
    assert_eq!(owner["name"], "Owner");
    assert_eq!(owner["type"], "email");
    assert_eq!(owner["description"], "who asked");
    // By the table's id: one request, no schema read first; an id that is no table's is
    // Airtable's answer, said plainly.
    let before = s.fake.stats().requests_total;
    ok(
        &client,
        "airtable_create_field",
        json!({"base": base, "table": schema["id"], "name": "Due", "type": "date", "options": {"dateFormat": {"name": "iso"}}}),
    )
    .await;
    assert_eq!(s.fake.stats().requests_total - before, 1);
    assert_eq!(
        s.fake.table_schema(&base, "Projects")["fields"][4]["name"],
        "Due"
    );
    let error = fails(
        &client,
        "airtable_create_field",
        json!({"base": base, "table": "tblNoSuchTable000", "name": "X", "type": "email"}),
    )
    .await;
    assert!(error.contains("creating field `X`"), "{error}");

    let renamed = ok(
        &client,
        "airtable_update_field",
        json!({"base": base, "table": "Projects", "field": "Owner", "name": "Lead", "description": "who leads"}),
    )
    .await;
    let schema = s.fake.table_schema(&base, "Projects");
    let lead = schema["fields"][3].clone();
    assert_eq!(renamed, lead);
    assert_eq!(
        lead,
        json!({"id": owner["id"], "name": "Lead", "type": "email", "description": "who leads"})
    );
    // By id too.
    ok(
        &client,
        "airtable_update_field",
        json!({"base": base, "table": schema["id"], "field": owner["id"], "name": "Owner"}),
    )
    .await;
    assert_eq!(
        s.fake.table_schema(&base, "Projects")["fields"][3]["name"],
        "Owner"
    );
    let error = fails(
        &client,
        "airtable_update_field",
        json!({"base": base, "table": "Projects", "field": "Budgett", "name": "Cost"}),
    )
    .await;
    assert!(
        error.contains("no field `Budgett`") && error.contains("Title, Budget, Stage, Owner"),
        "{error}"
    );

    // A field's type cannot be changed: the tool does not offer it.
    let tools = client.list_all_tools().await.unwrap();
    let update_field = tools
        .iter()
        .find(|t| t.name == "airtable_update_field")
        .unwrap();
    let properties: Vec<&str> = update_field.input_schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        properties.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["base", "table", "field", "name", "description"]),
        "{properties:?}"
    );
    assert!(
        update_field
            .description
            .as_deref()
            .unwrap_or("")
            .contains("type"),
        "the description says why the type is not offered"
    );
    let error = fails(
        &client,
        "airtable_update_field",
        json!({"base": base, "table": "Projects", "field": "Owner", "type": "number"}),
    )
    .await;
    assert!(error.contains("'type' was unexpected"), "{error}");
    assert_eq!(
        s.fake.table_schema(&base, "Projects")["fields"][3]["type"],
        "email"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn errors_say_what_to_fix() {
    let s = Setup::new();
    let base = work(&s);
    let client: Client = s.client().await;

    // An unknown field: Airtable's words and the table's fields; nothing written.
    let error = fails(
        &client,
        "airtable_create_records",
        on(
            &base,
            "Tasks",
            json!({"records": [{"fields": {"Nmae": "x"}}]}),
        ),
    )
    .await;
    assert!(
        error.contains("Unknown field name") && error.contains("Nmae"),
        "{error}"
    );
    assert!(
        error.contains("The fields of `Tasks` are: Name, Notes, Status, Points"),
        "{error}"
    );
    let error = fails(
        &client,
        "airtable_list_records",
        on(&base, "Tasks", json!({"sort": [{"field": "Pionts"}]})),
    )
    .await;
    assert!(
        error.contains("Pionts") && error.contains("Name, Notes, Status, Points"),
        "{error}"
    );
    assert_eq!(s.fake.records(&base, "Tasks").len(), 25);

    // A select value that is not an option: use one, or typecast.
    let error = fails(
        &client,
        "airtable_create_records",
        on(
            &base,
            "Tasks",
            json!({"records": [{"fields": {"Name": "x", "Status": "Blocked"}}]}),
        ),
    )
    .await;
    assert!(error.contains("typecast"), "{error}");
    assert_eq!(s.fake.records(&base, "Tasks").len(), 25);

    // A bad formula: the formula rules.
    let error = fails(
        &client,
        "airtable_list_records",
        on(
            &base,
            "Tasks",
            json!({"filter_by_formula": "AND({Points} > 3"}),
        ),
    )
    .await;
    assert!(
        error.contains("filterByFormula is invalid") && error.contains("Field names go in braces"),
        "{error}"
    );

    // The token loses the base: scopes and base access.
    s.fake.deny_base(&base);
    for (tool, extra) in [
        ("airtable_list_records", json!({})),
        ("airtable_describe_base", json!({})),
    ] {
        let mut a = on(&base, "Tasks", extra);
        if tool == "airtable_describe_base" {
            a.as_object_mut().unwrap().remove("table");
        }
        let error = fails(&client, tool, a).await;
        assert!(
            error.contains("INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND")
                && error.contains("scopes")
                && error.contains("data.records:read")
                && error.contains("add the base to the token"),
            "{tool}: {error}"
        );
    }
    let bases = ok(&client, "airtable_list_bases", json!({})).await;
    assert_eq!(bases["bases"], json!([]), "{bases}");
    s.fake.allow_base(&base);
    ok(
        &client,
        "airtable_list_records",
        on(&base, "Tasks", json!({"max_records": 1})),
    )
    .await;

    // Base ids: not one at all, or one the token cannot see.
    for tool in ["airtable_list_records", "airtable_create_records"] {
        let error = fails(
            &client,
            tool,
            on(
                "Work",
                "Tasks",
                json!({"records": [{"fields": {"Name": "x"}}]}),
            )
            .as_object()
            .map(|a| {
                let mut a = a.clone();
                if tool == "airtable_list_records" {
                    a.remove("records");
                }
                Value::Object(a)
            })
            .unwrap(),
        )
        .await;
        assert!(
            error.contains("`Work` is not a base id") && error.contains("app"),
            "{tool}: {error}"
        );
    }
    let error = fails(
        &client,
        "airtable_list_records",
        on("appAAAAAAAAAAAAAA", "Tasks", json!({})),
    )
    .await;
    assert!(
        error.contains("airtable_list_bases") && error.contains("does not exist"),
        "{error}"
    );
    assert_eq!(s.fake.records(&base, "Tasks").len(), 25);
    let stats = s.fake.stats();
    assert_eq!(stats.total_429(), 0, "{stats:?}");
    client.cancel().await.unwrap();
}

/// A write that may have landed (a 500, or the connection cut after the request was sent) is
/// reported as such and never sent again; one Airtable surely refused (503) is sent again;
/// updates are safe to repeat and are retried after a 500.
#[tokio::test]
async fn a_create_that_may_have_landed_is_reported_not_repeated() {
    let s = Setup::new();
    let base = work(&s);
    let client = s.client().await;
    let create = |prefix: &str| {
        let records: Vec<Value> = (1..=3)
            .map(|i| json!({"fields": {"Name": format!("{prefix}{i}")}}))
            .collect();
        call_tool(
            &client,
            "airtable_create_records",
            on(&base, "Tasks", json!({"records": records})),
        )
    };
    let count = |name: &str| {
        fields_of(&s.fake, &base, "Tasks")
            .iter()
            .filter(|r| r["Name"] == name)
            .count()
    };
    let limit = Duration::from_secs(20);

    // 503: nothing was applied; sent again once Airtable answers, and lands once.
    s.fake.set_faults(Faults {
        rate_503: 1.0,
        ..Faults::default()
    });
    let clear = async {
        until("a 503", limit, s.fake.until(|f| f.stats().injected_503 > 0)).await;
        s.fake.set_faults(Faults::default());
    };
    let (created, ()) = tokio::join!(create("A"), clear);
    assert_ne!(created.is_error, Some(true), "{}", text(&created));
    for name in ["A1", "A2", "A3"] {
        assert_eq!(count(name), 1, "{name}");
    }

    // The connection is cut after the write was applied: reported, not sent again.
    s.fake.set_faults(Faults {
        rate_reset_after: 1.0,
        ..Faults::default()
    });
    let cut = create("B").await;
    s.fake.set_faults(Faults::default());
    assert_eq!(cut.is_error, Some(true), "{}", text(&cut));
    let report = cut.structured_content.clone().expect("a report");
    assert_eq!(report["count"], 0, "{report}");
    assert_eq!(report["failed"][0]["records"], "1-3", "{report}");
    assert!(
        report["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("may or may not have been applied"),
        "{report}"
    );
    assert_eq!(s.fake.stats().injected_reset_after, 1, "sent once");
    for name in ["B1", "B2", "B3"] {
        assert_eq!(count(name), 1, "{name} landed once");
    }

    // A 500 on a create: maybe applied (here: not); reported, not sent again.
    s.fake.set_faults(Faults {
        rate_500: 1.0,
        ..Faults::default()
    });
    let failed = create("C").await;
    s.fake.set_faults(Faults::default());
    assert_eq!(failed.is_error, Some(true), "{}", text(&failed));
    assert!(
        text(&failed).contains("may or may not have been applied"),
        "{}",
        text(&failed)
    );
    assert_eq!(s.fake.stats().injected_500, 1, "sent once");
    assert_eq!(count("C1"), 0);

    // A 500 on an update: safe to repeat, so repeated.
    let id = s.fake.records(&base, "Tasks")[0]["id"].clone();
    s.fake.set_faults(Faults {
        rate_500: 1.0,
        ..Faults::default()
    });
    let update = call_tool(
        &client,
        "airtable_update_records",
        on(
            &base,
            "Tasks",
            json!({"records": [{"id": id, "fields": {"Points": 7}}]}),
        ),
    );
    let clear = async {
        until(
            "a second 500",
            limit,
            s.fake.until(|f| f.stats().injected_500 > 1),
        )
        .await;
        s.fake.set_faults(Faults::default());
    };
    let (updated, ()) = tokio::join!(update, clear);
    assert_ne!(updated.is_error, Some(true), "{}", text(&updated));
    assert_eq!(fields_of(&s.fake, &base, "Tasks")[0]["Points"], 7);
    client.cancel().await.unwrap();
}

/// Another program overdraws the base and Airtable locks it for its 30 seconds: the plugin's
/// request meets the lockout once, waits out exactly those 30 seconds from its 429 instead of
/// hammering, and then goes through.
#[tokio::test(start_paused = true)]
async fn a_lockout_caused_elsewhere_is_waited_out() {
    let s = Setup::in_process(FakeConfig::default()).await;
    let base = work(&s);
    let client = s.in_process_client().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v0/{base}/Tasks?maxRecords=1", s.fake.url);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = http.get(&url).bearer_auth(&s.token).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    let started = Instant::now();
    let listed = ok(
        &client,
        "airtable_list_records",
        on(&base, "Tasks", json!({"max_records": 2})),
    )
    .await;
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(listed["count"], 2, "{listed}");
    let stats = s.fake.stats();
    // The other program's 429, and the plugin's one.
    assert_eq!(stats.rate_limited_429, 2, "{stats:?}");
    assert_eq!(stats.lockouts_started, 1, "{stats:?}");
    ok(
        &client,
        "airtable_list_records",
        on(&base, "Tasks", json!({"max_records": 1})),
    )
    .await;
    assert_eq!(s.fake.stats().rate_limited_429, 2);
    client.cancel().await.unwrap();
}
