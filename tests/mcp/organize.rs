//! `airtable_ai_organize` as a user runs it: the binary over stdio with the shipped files,
//! airtable, agents and organize manifests, against the fake Airtable and a scripted model on
//! the fake OpenAI API. The model's answers are computed from the prompt (each document's
//! category from its name, tags from its `Topics:` line), so what lands in the table is known.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::{
    airtable::{Client, LOCKOUT_SECS, call_tool, ok},
    fake_airtable::{FakeAirtable, FakeConfig},
    fake_llm::{Behaviour, FakeLlm, KEY, Provider, Script},
    support::{Fixture, text, write},
};

/// A home with the four plugins, a fake Airtable with an empty `Research` table (only its
/// primary `Title` field), and the scripted model.
struct Org {
    fx: Fixture,
    airtable: FakeAirtable,
    llm: FakeLlm,
    base: String,
}

fn head(shipped: &str) -> &str {
    shipped.split("\n[settings]").next().expect("a manifest")
}

impl Org {
    fn new() -> Self {
        let airtable = FakeAirtable::start_in_thread(FakeConfig {
            lockout: std::time::Duration::from_secs(LOCKOUT_SECS),
            ..FakeConfig::default()
        });
        Self::with(airtable, FakeLlm::start_in_thread(), LOCKOUT_SECS)
    }

    /// Both fakes on the test's runtime (for paused time), Airtable's real 30 s lockout.
    async fn in_process(config: FakeConfig) -> Self {
        let lockout = config.lockout.as_secs();
        let airtable = FakeAirtable::start(config).await;
        Self::with(airtable, FakeLlm::start().await, lockout)
    }

    fn with(airtable: FakeAirtable, llm: FakeLlm, lockout_secs: u64) -> Self {
        let base = airtable.add_base("Research base", "create");
        airtable.add_table(&base, "Research", &[("Title", "singleLineText", None)]);
        llm.set(
            Provider::OpenAi,
            Behaviour::Script(Script(std::sync::Arc::new(model))),
        );
        let fx = Fixture::empty();
        let data = fx.data().display().to_string();
        let state = fx.home.path().join("state").display().to_string();
        fx.manifest(
            "files",
            &format!("name = \"files\"\nkind = \"builtin\"\n[settings]\nroots = [{data:?}]\n"),
        );
        fx.manifest(
            "airtable",
            &format!(
                "{}\n[settings]\nlockout_secs = {lockout_secs}\ncheckpoint_dir = {:?}\n",
                head(include_str!("../../plugins/airtable/plugin.toml")),
                format!("{state}/imports"),
            ),
        );
        fx.manifest(
            "agents",
            &format!(
                "{}\n[settings]\n[settings.providers.openai]\nmodel = \"gpt-5-mini\"\n",
                head(include_str!("../../plugins/agents/plugin.toml")),
            ),
        );
        let organize = include_str!("../../plugins/organize/plugin.toml").replace(
            "# checkpoint_dir = \"~/.local/state/plugboard/organize\"",
            &format!("checkpoint_dir = {:?}", format!("{state}/organize")),
        );
        assert!(
            organize.contains("\ncheckpoint_dir = "),
            "the shipped manifest changed"
        );
        fx.manifest("organize", &organize);
        std::fs::write(fx.home.path().join("organize.toml"), &organize).unwrap();
        Self {
            fx,
            airtable,
            llm,
            base,
        }
    }

    /// Change a line of the organize manifest's settings.
    fn setting(&self, from: &str, to: &str) {
        let kept = self.fx.home.path().join("organize.toml");
        let text = std::fs::read_to_string(&kept).unwrap();
        assert!(text.contains(from), "no `{from}` in the organize manifest");
        let text = text.replace(from, to);
        std::fs::write(&kept, &text).unwrap();
        self.fx.manifest("organize", &text);
    }

    /// What the server needs: the fake Airtable, and (with `model`) the fake OpenAI.
    fn env(&self, model: bool) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AIRTABLE_API_KEY", self.airtable_token().to_owned()),
            ("AIRTABLE_BASE_URL", self.airtable.url.clone()),
        ];
        if model {
            env.push(("OPENAI_API_KEY", KEY.to_owned()));
            env.push(("OPENAI_BASE_URL", self.llm.openai_base()));
        }
        env
    }

    async fn client(&self) -> Client {
        let env = self.env(true);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.fx.stdio_env(&[], &env, None).await.0
    }

    /// `plugboard ARGS…` with the fakes' environment.
    fn cli(&self, args: &[&str], model: bool) -> tokio::process::Command {
        let mut cmd = self.fx.command(args);
        cmd.envs(self.env(model));
        cmd
    }

    fn airtable_token(&self) -> &'static str {
        crate::fake_airtable::DEFAULT_TOKEN
    }

    fn records(&self) -> Vec<Value> {
        self.airtable.records(&self.base, "Research")
    }

    fn model_requests(&self) -> usize {
        self.llm.request_count(Provider::OpenAi)
    }
}

/// The scripted model: a taxonomy when asked for one, else each document's class.
fn model(prompt: &str) -> String {
    if prompt.contains("propose the categories") {
        return json!({"categories": [
            {"name": "Frameworks", "description": "software frameworks"},
            {"name": "Systems", "description": "operating and distributed systems"},
            {"name": "Research", "description": "everything else"},
        ]})
        .to_string();
    }
    if prompt.starts_with("Task: relate") {
        return relate(prompt);
    }
    if !prompt.starts_with("Task: classify") {
        // A turn of `ask` (the tool's result came back): the model's last word.
        return "Your research is organized.".into();
    }
    let mut documents = Vec::new();
    for line in prompt.lines().filter(|l| l.starts_with("{\"id\"")) {
        let doc: Value = serde_json::from_str(line).expect("a document line");
        let path = doc["path"].as_str().unwrap();
        let body = doc["text"].as_str().unwrap();
        // A record organized in place is known by its id: its title says what it is.
        let name = match path.rsplit('/').next().unwrap() {
            id if id.starts_with("rec") => doc["title"].as_str().unwrap().to_lowercase(),
            file => file.to_owned(),
        };
        let category = if name.starts_with("framework") {
            "Frameworks"
        } else if name.starts_with("system") {
            "Systems"
        } else {
            "Research"
        };
        let topics = body
            .split("Topics:")
            .nth(1)
            .and_then(|t| t.split('.').next())
            .unwrap_or("misc");
        // Tags as a model writes them: capitals and plurals, normalised by the organizer.
        let tags: Vec<String> = topics
            .split(',')
            .map(|t| {
                let t = t.trim().to_uppercase();
                if t.ends_with('S') { t } else { format!("{t}S") }
            })
            .collect();
        let edited = if body.contains("EDITED") {
            " (revised)"
        } else {
            ""
        };
        documents.push(json!({
            "id": doc["id"],
            "category": category,
            "tags": tags,
            "summary": format!("About {}{edited}.", doc["title"].as_str().unwrap()),
        }));
    }
    // Fenced, as models do despite being asked not to.
    format!("```json\n{}\n```", json!({ "documents": documents }))
}

/// The scripted model's judgement of related documents: a candidate sharing a tag is
/// related, most shared tags first, except where the one tag shared is `replication` (Raft's
/// and GFS's mean different things) — so a link the tag rule would make is declined, and one
/// it would not (one tag across categories: Tokio and Ideas share `async`) is made.
fn relate(prompt: &str) -> String {
    let mut candidates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut documents = Vec::new();
    for line in prompt.lines().filter(|l| l.starts_with("{\"id\"")) {
        let brief: Value = serde_json::from_str(line).expect("a document line");
        let tags: Vec<String> = brief["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        match brief.get("candidates") {
            None => {
                candidates.insert(brief["id"].as_str().unwrap().to_owned(), tags);
            }
            Some(theirs) => documents.push((brief["id"].clone(), tags, theirs.clone())),
        }
    }
    let answers: Vec<Value> = documents
        .into_iter()
        .map(|(id, tags, theirs)| {
            let mut chosen: Vec<(usize, &str)> = theirs
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .filter_map(|c| {
                    let shared: Vec<&String> =
                        candidates[c].iter().filter(|t| tags.contains(t)).collect();
                    let declined = shared.len() == 1 && shared[0] == "replication";
                    (!shared.is_empty() && !declined).then_some((shared.len(), c))
                })
                .collect();
            chosen.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            json!({"id": id, "related": chosen.iter().map(|(_, c)| *c).collect::<Vec<_>>()})
        })
        .collect();
    json!({ "documents": answers }).to_string()
}

/// Documents under data/research: 17 to organize (14 Markdown or text, two PDFs, a DOCX), an
/// image, a binary file, a damaged PDF, a folder
/// `.gitignore` leaves out.
fn corpus(fx: &Fixture) -> BTreeMap<String, (&'static str, Vec<&'static str>)> {
    corpus_with_notes(fx, 0)
}

/// [`corpus`] and `notes` more Markdown notes in nested folders, on topics of their own.
fn corpus_with_notes(
    fx: &Fixture,
    notes: usize,
) -> BTreeMap<String, (&'static str, Vec<&'static str>)> {
    let data = fx.data();
    let mut expected = BTreeMap::new();
    const OWN: [&str; 6] = [
        "ecology",
        "botany",
        "geology",
        "astronomy",
        "chemistry",
        "optics",
    ];
    for i in 0..notes {
        // Two different topics: the second 1 to 5 places after the first.
        let (a, b) = (OWN[i % 6], OWN[(i % 6 + 1 + (i / 6) % 5) % 6]);
        let path = format!("research/notes/{}/note-{i:02}.md", i % 4);
        write(
            &data.join(&path),
            &format!("# Note {i}\n\nField notes. Topics: {a}, {b}.\n"),
        );
        expected.insert(path, ("Research", vec![a, b]));
    }
    let docs: [(&str, &str, &str, &'static str, &[&'static str]); 14] = [
        (
            "framework-tokio.md",
            "Tokio",
            "rust, async",
            "Frameworks",
            &["rust", "async"],
        ),
        (
            "framework-axum.md",
            "Axum",
            "rust, http",
            "Frameworks",
            &["rust", "http"],
        ),
        (
            "framework-react.md",
            "React",
            "javascript, frontend",
            "Frameworks",
            &["javascript", "frontend"],
        ),
        (
            "system-raft.md",
            "Raft",
            "consensus, replication",
            "Systems",
            &["consensus", "replication"],
        ),
        (
            "system-paxos.md",
            "Paxos",
            "consensus, proofs",
            "Systems",
            &["consensus", "proof"],
        ),
        (
            "nested/deeper/system-linux.md",
            "Linux",
            "kernels, schedulers",
            "Systems",
            &["kernel", "scheduler"],
        ),
        (
            "nested/paper-attention.md",
            "Attention",
            "transformers, nlp",
            "Research",
            &["transformer", "nlp"],
        ),
        (
            "nested/paper-bert.md",
            "BERT",
            "transformers, nlp",
            "Research",
            &["transformer", "nlp"],
        ),
        (
            "paper-gpt.txt",
            "",
            "transformers, generation",
            "Research",
            &["transformer", "generation"],
        ),
        (
            "paper-resnet.md",
            "ResNet",
            "vision, cnns",
            "Research",
            &["vision", "cnn"],
        ),
        (
            "paper-vit.md",
            "ViT",
            "vision, transformers",
            "Research",
            &["vision", "transformer"],
        ),
        (
            "notes-reading.md",
            "Reading list",
            "books",
            "Research",
            &["book"],
        ),
        (
            "notes-ideas.md",
            "Ideas",
            "ideas, async",
            "Research",
            &["idea", "async"],
        ),
        (
            "framework-tower.md",
            "Tower",
            "rust, middleware",
            "Frameworks",
            &["rust", "middleware"],
        ),
    ];
    for (path, title, topics, category, tags) in docs {
        let body = if title.is_empty() {
            format!("Plain text notes about generative models. Topics: {topics}.\n")
        } else {
            format!("# {title}\n\nNotes on {title}. Topics: {topics}. More text follows.\n")
        };
        write(&data.join("research").join(path), &body);
        expected.insert(format!("research/{path}"), (category, tags.to_vec()));
    }
    // Research is mostly PDFs: two real ones (one titled by its metadata, one by its first
    // line), a DOCX, and a damaged PDF reported as such.
    use plugboard::plugins::files::extract::samples::{docx_bytes, pdf_bytes};
    std::fs::create_dir_all(data.join("research/papers")).unwrap();
    std::fs::write(
        data.join("research/papers/paper-transformer.pdf"),
        pdf_bytes(
            Some("The Transformer"),
            &[
                "Attention replaces recurrence.",
                "Topics: transformers, attention.",
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        data.join("research/papers/system-gfs.pdf"),
        pdf_bytes(
            None,
            &["The Google File System\nA distributed file system. Topics: storage, replication."],
        ),
    )
    .unwrap();
    std::fs::write(
        data.join("research/framework-notes.docx"),
        docx_bytes(
            Some("Framework notes"),
            &["Notes on frameworks.", "Topics: rust, http."],
        ),
    )
    .unwrap();
    let broken = pdf_bytes(None, &["This one is cut short."]);
    std::fs::write(
        data.join("research/papers/broken.pdf"),
        &broken[..broken.len() / 3],
    )
    .unwrap();
    for (path, category, tags) in [
        (
            "papers/paper-transformer.pdf",
            "Research",
            vec!["transformer", "attention"],
        ),
        (
            "papers/system-gfs.pdf",
            "Systems",
            vec!["storage", "replication"],
        ),
        ("framework-notes.docx", "Frameworks", vec!["rust", "http"]),
    ] {
        expected.insert(format!("research/{path}"), (category, tags));
    }
    write(&data.join("research/figure.png"), "\u{89}PNG\r\n\u{1a}\n");
    std::fs::write(data.join("research/blob.md"), b"# x\0\x01binary").unwrap();
    write(&data.join("research/.gitignore"), "drafts/\n");
    write(
        &data.join("research/drafts/wip.md"),
        "# WIP\n\nTopics: secret.\n",
    );
    expected
}

fn organize_args(base: &str, apply: bool) -> Value {
    json!({"base": base, "table": "Research", "path": "research", "apply": apply})
}

/// The `key` of every object in `list`.
fn names<'a>(list: &'a Value, key: &str) -> BTreeSet<&'a str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item[key].as_str().expect("a string"))
        .collect()
}

/// Path → the record's fields.
fn by_path(records: &[Value]) -> BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| {
            (
                r["fields"]["File Path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn organize_plans_applies_and_then_has_nothing_to_do() {
    let org = Org::new();
    // 60 documents: 57 Markdown or text in nested folders, two PDFs, a DOCX; and an image, a
    // binary file, a damaged PDF and an ignored folder.
    let expected = corpus_with_notes(&org.fx, 43);
    assert_eq!(expected.len(), 60);
    let client = org.client().await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "airtable_ai_organize"));

    // The dry run: the plan, nothing written.
    let plan = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, false),
    )
    .await;
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["documents"], 60);
    assert_eq!(plan["create"].as_array().unwrap().len(), 60, "{plan:#}");
    assert_eq!(plan["update"], json!([]));
    assert_eq!(plan["taxonomy"], "proposed");
    let skipped: BTreeMap<&str, &str> = plan["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped["research/blob.md"], "binary content");
    assert_eq!(skipped["research/figure.png"], "not a text document (.png)");
    let damaged = skipped["research/papers/broken.pdf"];
    assert!(damaged.starts_with("damaged PDF: "), "{damaged}");
    let fields = names(&plan["fields_to_create"], "name");
    assert_eq!(
        fields,
        BTreeSet::from([
            "Category",
            "Content Hash",
            "File Path",
            "Related",
            "Status",
            "Summary",
            "Tags"
        ])
    );
    assert_eq!(
        plan["categories"],
        json!([
            {"name": "Research", "records": 51},
            {"name": "Frameworks", "records": 5},
            {"name": "Systems", "records": 4},
        ])
    );
    // One taxonomy request, 60 documents in batches of 8, then the 57 sharing a tag with
    // another (not Reading list, Linux or React) related 10 per request.
    assert_eq!(org.model_requests(), 15);
    assert_eq!(plan["links_judged"], 57);
    let usage = &plan["models"][0];
    assert_eq!(
        (usage["provider"].as_str(), usage["requests"].as_u64()),
        (Some("openai"), Some(15))
    );
    assert!(
        usage["input_tokens"].as_u64().unwrap() > 0 && usage["cost_usd"].as_f64().unwrap() > 0.0
    );
    assert!(org.records().is_empty(), "a dry run writes nothing");
    // Each request held to its answer's schema (OpenAI's structured output).
    for request in org.llm.requests(Provider::OpenAi) {
        let format = &request.body["response_format"];
        assert_eq!(format["type"], "json_schema");
        let prompt = request.body["messages"][1]["content"].as_str().unwrap();
        let wanted = if prompt.contains("propose the categories") {
            "categories"
        } else {
            "documents"
        };
        assert_eq!(
            format["json_schema"]["schema"]["required"],
            json!([wanted]),
            "{format}"
        );
    }
    let said = text(
        &call_tool(
            &client,
            "airtable_ai_organize",
            organize_args(&org.base, false),
        )
        .await,
    );
    assert!(said.contains("a dry run: nothing was written"), "{said}");
    assert_eq!(
        org.model_requests(),
        15,
        "a second plan reuses what the model said"
    );

    // Apply: exactly one record per document, as the model said, linked both ways; the
    // model is not asked again.
    let done = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    assert_eq!(done["applied"], true);
    assert_eq!(done["failed"], json!([]), "{done:#}");
    assert_eq!(org.model_requests(), 15);
    let records = org.records();
    assert_eq!(records.len(), 60);
    let stored = by_path(&records);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let id_of: BTreeMap<&str, &str> = stored
        .iter()
        .map(|(p, r)| (r["id"].as_str().unwrap(), p.as_str()))
        .collect();
    for (path, (category, tags)) in &expected {
        let f = &stored[path]["fields"];
        assert_eq!(f["Category"], *category, "{path}");
        assert_eq!(f["Tags"], json!(tags), "{path}");
        assert_eq!(f["Status"], "Organized");
        assert_eq!(f["Content Hash"].as_str().unwrap().len(), 64);
        assert!(f["Summary"].as_str().unwrap().starts_with("About "), "{f}");
    }
    assert_eq!(
        stored["research/paper-gpt.txt"]["fields"]["Title"],
        "paper-gpt"
    );
    let mut pairs = 0;
    for (path, record) in &stored {
        for id in record["fields"]["Related"].as_array().into_iter().flatten() {
            let other = id_of[id.as_str().unwrap()];
            let back = &stored[other]["fields"]["Related"];
            assert!(
                back.as_array().unwrap().contains(&record["id"]),
                "{path} → {other} has no way back"
            );
            pairs += 1;
        }
    }
    assert!(pairs > 0);
    assert_eq!(done["links"], pairs / 2);
    // The model's judgement: Attention and BERT (two tags) are related, and so are Tokio and
    // Ideas (one tag, two categories: shared tags alone would not link them); Raft and GFS
    // (Systems, sharing `replication`) are not, as the model declined.
    let linked = |a: &str, b: &str| {
        stored[&format!("research/{a}")]["fields"]["Related"]
            .as_array()
            .is_some_and(|ids| ids.contains(&stored[&format!("research/{b}")]["id"]))
    };
    assert!(linked("nested/paper-attention.md", "nested/paper-bert.md"));
    assert!(linked("framework-tokio.md", "notes-ideas.md"));
    assert!(linked("notes-ideas.md", "framework-tokio.md"));
    assert!(!linked("system-raft.md", "papers/system-gfs.pdf"));
    assert!(linked("system-raft.md", "system-paxos.md"));
    assert_eq!(done["links_judged"], 57, "reused from the plan");

    // Again over unchanged files: no model request, no write.
    let before = org.airtable.stats().requests_total;
    let again = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    assert_eq!(again["unchanged"], 60);
    assert_eq!(
        (
            again["create"].as_array().unwrap().len(),
            again["update"].as_array().unwrap().len()
        ),
        (0, 0)
    );
    assert_eq!(again["link_updates"], 0);
    assert_eq!(again["links_judged"], 0);
    assert_eq!(again["airtable_requests"]["writes"], 0);
    assert_eq!(org.model_requests(), 15);
    assert_eq!(
        org.airtable.stats().requests_total - before,
        2,
        "the schema and one page of records"
    );
    assert_eq!(by_path(&org.records()), stored);

    // Two files edited: exactly two updates, one model request, no new category.
    let data = org.fx.data().join("research");
    for name in ["framework-axum.md", "paper-resnet.md"] {
        let body = std::fs::read_to_string(data.join(name)).unwrap();
        write(&data.join(name), &format!("{body}EDITED later.\n"));
    }
    let edited = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    assert_eq!(edited["taxonomy"], "table");
    let updated: Vec<&str> = edited["update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        updated,
        ["research/framework-axum.md", "research/paper-resnet.md"]
    );
    assert_eq!(edited["create"], json!([]));
    assert_eq!(edited["unchanged"], 58);
    let changes = &edited["update"][0]["changes"];
    assert_eq!(
        changes.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["Content Hash", "Summary"]
    );
    assert_eq!(changes["Summary"]["to"], "About Axum (revised).");
    // One request classifies the two, one relates them again (to the same documents).
    assert_eq!(org.model_requests(), 17);
    assert_eq!(edited["links_judged"], 2);
    assert_eq!(edited["link_updates"], 0);
    let after = org.records();
    assert_eq!(after.len(), 60, "updated, not duplicated");
    assert_eq!(
        by_path(&after)["research/framework-axum.md"]["id"],
        stored["research/framework-axum.md"]["id"]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn organize_without_a_model_says_how_to_get_one() {
    let org = Org::new();
    corpus(&org.fx);
    // No provider key: the test client does not sample, so no model can answer.
    let env = org.env(false);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (client, _) = org.fx.stdio_env(&[], &env, None).await;
    let result = call_tool(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, false),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    let said = text(&result);
    assert!(
        said.contains("configure a provider") && said.contains("sampling"),
        "{said}"
    );
    assert!(org.records().is_empty());
    client.cancel().await.unwrap();
}

/// The command line: the plan, then `--apply`, with the same engine.
#[tokio::test]
async fn organize_from_the_command_line() {
    let org = Org::new();
    corpus(&org.fx);
    let base = org.base.clone();
    let args = [
        "organize",
        "data/research",
        "--base",
        &base,
        "--table",
        "Research",
    ];
    let plan = org.fx.output(&mut org.cli(&args, true)).await;
    assert!(plan.ok, "{}", plan.stderr);
    assert!(
        plan.stdout
            .starts_with("Plan for organizing research into Research")
            && plan.stdout.contains("17 documents · 17 to create"),
        "{}",
        plan.stdout
    );
    for line in [
        "Categories (proposed): Research (8), Frameworks (5), Systems (4)",
        "Fields to create: Category (singleSelect), Tags (multipleSelects), Summary",
        "Model: openai gpt-5-mini — 6 requests",
        "- research/papers/broken.pdf: damaged PDF: ",
    ] {
        assert!(
            plan.stdout.contains(line),
            "no `{line}` in:\n{}",
            plan.stdout
        );
    }
    assert!(org.records().is_empty());
    let mut apply: Vec<&str> = args.to_vec();
    apply.extend(["--apply", "--json"]);
    let done = org.fx.output(&mut org.cli(&apply, true)).await;
    assert!(done.ok, "{}", done.stderr);
    let report: Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(report["applied"], true);
    assert_eq!(report["create"].as_array().unwrap().len(), 17);
    assert_eq!(org.records().len(), 17);
    assert_eq!(
        org.model_requests(),
        6,
        "the apply used the plan's classification and links"
    );

    // With no provider, the command line has no client to sample: it says so.
    let none = org
        .fx
        .output(&mut org.cli(&[&apply[..], &["--restart"]].concat(), false))
        .await;
    // Everything is unchanged, so no model is needed at all...
    assert!(none.ok, "{}", none.stderr);
    // ...until a document changes.
    write(
        &org.fx.data().join("research/new.md"),
        "# New\n\nTopics: fresh.\n",
    );
    let none = org
        .fx
        .output(&mut org.cli(&[&apply[..], &["--restart"]].concat(), false))
        .await;
    assert!(!none.ok);
    assert!(
        none.stderr.contains("configure a provider") && none.stderr.contains("sampling"),
        "{}",
        none.stderr
    );
}

/// A client that answers sampling requests with the scripted model.
#[derive(Clone, Default)]
struct Sampler {
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl rmcp::ClientHandler for Sampler {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut capabilities = rmcp::model::ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("sampler", "0"),
        )
    }

    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _cx: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        use rmcp::model::{CreateMessageResult, SamplingMessage};
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let prompt: String = params
            .messages
            .iter()
            .flat_map(|m| m.content.clone().into_vec())
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(model(&prompt)),
            "client-model".into(),
        )
        .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN))
    }
}

/// With no provider configured, the client's own model classifies, through sampling.
#[tokio::test]
async fn organize_with_the_clients_model_by_sampling() {
    use rmcp::{ServiceExt, transport::TokioChildProcess};
    let org = Org::new();
    let expected = corpus(&org.fx);
    let sampler = Sampler::default();
    let (transport, stderr) = TokioChildProcess::builder(org.cli(&["serve"], false))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    org.fx.keep(
        "plugboard serve (sampler)".into(),
        stderr.expect("stderr piped"),
    );
    let client = sampler.clone().serve(transport).await.unwrap();
    let result = client
        .call_tool(crate::scenario::call(
            "airtable_ai_organize",
            organize_args(&org.base, true),
        ))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let done = result.structured_content.unwrap();
    assert_eq!(done["create"].as_array().unwrap().len(), 17);
    let usage = &done["models"][0];
    assert_eq!(
        (
            usage["provider"].as_str(),
            usage["model"].as_str(),
            usage["estimated_tokens"].as_bool()
        ),
        (Some("sampling"), Some("client-model"), Some(true))
    );
    // The taxonomy, 17 documents in 3 requests, the 14 sharing a tag related in 2.
    assert_eq!(sampler.asked.load(std::sync::atomic::Ordering::SeqCst), 6);
    assert_eq!(org.model_requests(), 0);
    let stored = by_path(&org.records());
    for (path, (category, _)) in &expected {
        assert_eq!(stored[path]["fields"]["Category"], *category, "{path}");
    }
    client.cancel().await.unwrap();
}

/// A model that answers badly: invalid JSON is asked for again once (with the reason), and a
/// document still unanswered is reported, not guessed; its record waits for the next run.
#[tokio::test]
async fn a_model_that_answers_badly_is_asked_again_then_reported() {
    let org = Org::new();
    corpus(&org.fx);
    // One request at a time, so the scripted answers below meet the batches in order.
    org.setting("llm_in_flight = 4", "llm_in_flight = 1");
    // The taxonomy, then the first batch: not JSON, then JSON that leaves out one document.
    org.llm.push_once(
        Provider::OpenAi,
        Behaviour::Script(Script(std::sync::Arc::new(model))),
    );
    org.llm.push_once(
        Provider::OpenAi,
        Behaviour::Answer("I think these are all research.".into()),
    );
    org.llm.push_once(
        Provider::OpenAi,
        Behaviour::Script(Script(std::sync::Arc::new(|prompt: &str| {
            let full: Value = serde_json::from_str(
                model(prompt)
                    .trim_start_matches("```json\n")
                    .trim_end_matches("\n```"),
            )
            .unwrap();
            let mut docs = full["documents"].as_array().unwrap().clone();
            docs.retain(|d| d["id"] != "d1");
            json!({ "documents": docs }).to_string()
        }))),
    );
    let client = org.client().await;
    let plan = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    let failed = plan["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{plan:#}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("could not be used, twice") && reason.contains("no answer for d1"),
        "{reason}"
    );
    assert_eq!(org.records().len(), 16);
    // The retry said why the first answer was refused.
    let requests = org.llm.requests(Provider::OpenAi);
    let retry = requests[2].body.to_string();
    assert!(
        retry.contains("could not be used") && retry.contains("holds no JSON object"),
        "{retry}"
    );
    // The next run asks only about the one that failed, and nothing else changes.
    let before = org.model_requests();
    let again = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    assert_eq!(again["failed"], json!([]));
    assert_eq!(again["create"].as_array().unwrap().len(), 1);
    assert_eq!(again["unchanged"], 16);
    // Its classification, and its related documents.
    assert_eq!(org.model_requests() - before, 2);
    assert_eq!(again["links_judged"], 1);
    assert_eq!(org.records().len(), 17);
    client.cancel().await.unwrap();
}

/// The model rate-limits and then hangs past its deadline, and Airtable answers a fifth of
/// the writes with 429s, 500s and cut connections (one applied before the cut), in paused
/// time with the real 30 s lockout: the first run reports the documents it could not
/// classify, the second finishes them, and the table ends with every document once.
#[tokio::test(start_paused = true)]
async fn faults_from_the_model_and_airtable_lose_nothing() {
    use crate::fake_airtable::Faults;
    let org = Org::in_process(FakeConfig {
        faults: Faults {
            seed: 7,
            rate_429: 0.05,
            rate_500: 0.05,
            rate_503: 0.05,
            rate_reset_after: 0.05,
            ..Faults::default()
        },
        ..FakeConfig::default()
    })
    .await;
    let expected = corpus(&org.fx);
    // One request at a time, so the scripted answers meet the requests in order.
    org.setting("llm_in_flight = 4", "llm_in_flight = 1");
    let model_script = || Behaviour::Script(Script(std::sync::Arc::new(model)));
    // The taxonomy; then the first batch: 429 (waited out and retried), then no answer.
    org.llm.push_once(Provider::OpenAi, model_script());
    org.llm.push_once(
        Provider::OpenAi,
        Behaviour::RateLimited {
            wait: std::time::Duration::from_secs(3),
        },
    );
    org.llm.push_once(Provider::OpenAi, Behaviour::Hang);
    let env = org.env(true);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = crate::inproc::Server::new(&org.fx)
        .envs(env)
        .call_timeout(std::time::Duration::from_secs(3600))
        .client()
        .await;
    let first = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    let failed = first["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 8, "the first batch: {first:#}");
    for f in failed {
        let reason = f["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("not classified: ") && reason.contains("did not answer within"),
            "{reason}"
        );
    }
    assert_eq!(org.records().len(), 9);

    let second = ok(
        &client,
        "airtable_ai_organize",
        organize_args(&org.base, true),
    )
    .await;
    assert_eq!(second["failed"], json!([]), "{second:#}");
    assert_eq!(second["unchanged"], 9);
    let records = org.records();
    let paths: Vec<&str> = records
        .iter()
        .map(|r| r["fields"]["File Path"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = paths.iter().copied().collect();
    assert_eq!(
        paths.len(),
        unique.len(),
        "a record written twice: {paths:?}"
    );
    assert_eq!(unique, expected.keys().map(String::as_str).collect());
    let stats = org.airtable.stats();
    assert!(
        stats.injected_total() > 0,
        "no fault was injected: {stats:?}"
    );
    assert_eq!(stats.rate_limited_429, 0, "the pacer kept under the limit");
    client.cancel().await.unwrap();
}

/// `plugboard organize --apply` killed with SIGKILL while it writes, then run again: every
/// document once, linked both ways, and the second run asks the model nothing (what it said
/// was kept before the writes began).
#[tokio::test]
async fn an_apply_killed_mid_write_resumes_without_duplicates() {
    let documents = |org: &Org| {
        let data = org.fx.data().join("research");
        let topics = ["rust", "async", "consensus", "vision", "nlp", "kernel"];
        for i in 0..60 {
            let (a, b) = (topics[i % 6], topics[(i / 6) % 6]);
            let name = ["framework", "system", "paper"][i % 3];
            write(
                &data.join(format!("{name}-{i:02}.md")),
                &format!("# Document {i}\n\nTopics: {a}, {b}.\n"),
            );
        }
    };
    let org = Org::new();
    documents(&org);
    let base = org.base.clone();
    let args = [
        "organize",
        "data/research",
        "--base",
        &base,
        "--table",
        "Research",
        "--apply",
    ];
    let mut child = org
        .cli(&args, true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (b, table) = (org.base.clone(), "Research");
    org.airtable
        .until(|f| f.records(&b, table).len() >= 20)
        .await;
    // Killed once the model has classified everything (the taxonomy and 8 batches, kept in
    // the checkpoint before relating begins), as the records are written.
    while org.model_requests() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let landed = org.records().len();
    assert!((20..60).contains(&landed), "killed after {landed} records");
    let asked = org.model_requests();

    let again = org.fx.output(&mut org.cli(&args, true)).await;
    assert!(again.ok, "{}\n{}", again.stdout, again.stderr);
    // Nothing answered was asked again: the classification all came from the first run;
    // relating takes 6 requests, and those in flight at the kill (at most 4) are asked again.
    let asked_to = |org: &Org, task: &str| {
        org.llm
            .requests(Provider::OpenAi)
            .iter()
            .filter(|r| {
                r.body["messages"][1]["content"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(task))
            })
            .count()
    };
    assert_eq!(asked_to(&org, "Task: classify"), 8);
    let relate = asked_to(&org, "Task: relate");
    assert!(
        (6..=10).contains(&relate),
        "{relate} ({asked} before the kill)"
    );
    // The links as an uninterrupted run makes them, the records written before the kill
    // included (their links had not been written).
    let whole = Org::new();
    documents(&whole);
    let mut whole_args = args.to_vec();
    whole_args[3] = &whole.base;
    let once = whole.fx.output(&mut whole.cli(&whole_args, true)).await;
    assert!(once.ok, "{}", once.stderr);
    let links = |org: &Org| -> BTreeMap<String, BTreeSet<String>> {
        let records = org.records();
        let path_of: BTreeMap<&str, &str> = records
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap(),
                    r["fields"]["File Path"].as_str().unwrap(),
                )
            })
            .collect();
        records
            .iter()
            .map(|r| {
                let linked = r["fields"]["Related"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|id| path_of[id.as_str().unwrap()].to_owned())
                    .collect();
                (path_of[r["id"].as_str().unwrap()].to_owned(), linked)
            })
            .collect()
    };
    assert_eq!(links(&org), links(&whole));
    let records = org.records();
    let stored = by_path(&records);
    assert_eq!(
        (records.len(), stored.len()),
        (60, 60),
        "every document once"
    );
    let ids: BTreeSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for r in &records {
        for other in r["fields"]["Related"].as_array().into_iter().flatten() {
            let other = records
                .iter()
                .find(|o| o["id"] == *other)
                .expect("a link to a record that exists");
            assert!(ids.contains(other["id"].as_str().unwrap()));
            assert!(
                other["fields"]["Related"]
                    .as_array()
                    .unwrap()
                    .contains(&r["id"])
            );
        }
    }
}

/// The natural-language path: `ask` with tools, a model that decides to call
/// airtable_ai_organize (write tools allowed by the user's settings), and the same result.
#[tokio::test]
async fn ask_with_tools_organizes_through_the_tool_calling_loop() {
    let org = Org::new();
    let expected = corpus(&org.fx);
    org.fx.manifest(
        "agents",
        &format!(
            "{}\n[settings]\nagent_tools = \"all\"\n[settings.providers.openai]\nmodel = \"gpt-5-mini\"\n",
            head(include_str!("../../plugins/agents/plugin.toml")),
        ),
    );
    org.llm.push_once(
        Provider::OpenAi,
        Behaviour::ToolThenAnswer {
            tool: "airtable_ai_organize".into(),
            args: json!({"base": org.base, "table": "Research", "path": "research", "apply": true}),
        },
    );
    let client = org.client().await;
    let answer = ok(
        &client,
        "ask",
        json!({"prompt": "Organize my research files into Airtable", "use_tools": true}),
    )
    .await;
    let calls = answer["tool_calls"]
        .as_array()
        .expect("the tool calls made");
    assert_eq!(calls.len(), 1, "{answer:#}");
    assert_eq!(
        (calls[0]["tool"].as_str(), calls[0]["is_error"].as_bool()),
        (Some("airtable_ai_organize"), Some(false))
    );
    assert_eq!(answer["answer"], "Your research is organized.");
    let stored = by_path(&org.records());
    assert_eq!(stored.len(), 17);
    for (path, (category, _)) in &expected {
        assert_eq!(stored[path]["fields"]["Category"], *category, "{path}");
    }
    client.cancel().await.unwrap();
}

/// Without `path`, the records already in a table are organized in place: categorized,
/// tagged and summarised from their own fields, updated by id; then nothing to do, until one
/// changes.
#[tokio::test]
async fn records_already_in_a_table_are_organized_in_place() {
    let org = Org::new();
    org.airtable.add_table(
        &org.base,
        "Notes",
        &[
            ("Name", "singleLineText", None),
            ("Notes", "multilineText", None),
        ],
    );
    let notes = [
        ("framework tokio", "An async runtime. Topics: rust, async."),
        (
            "system raft",
            "Replicated logs. Topics: consensus, replication.",
        ),
        ("paper bert", "Language models. Topics: transformers, nlp."),
        (
            "paper attention",
            "Attention layers. Topics: transformers, nlp.",
        ),
    ];
    let rows: Vec<serde_json::Map<String, Value>> = notes
        .iter()
        .map(|(name, text)| {
            let row = json!({"Name": name, "Notes": text});
            row.as_object().unwrap().clone()
        })
        .collect();
    org.airtable.insert_records(&org.base, "Notes", rows);
    let client = org.client().await;
    let args = json!({"base": org.base, "table": "Notes", "apply": true});
    let done = ok(&client, "airtable_ai_organize", args.clone()).await;
    assert_eq!(done["source"], "records");
    assert_eq!(done["update"].as_array().unwrap().len(), 4, "{done:#}");
    assert_eq!(done["create"], json!([]));
    let fields = names(&done["fields_to_create"], "name");
    assert_eq!(
        fields,
        BTreeSet::from([
            "Category",
            "Content Hash",
            "Related",
            "Status",
            "Summary",
            "Tags"
        ])
    );
    let records = org.airtable.records(&org.base, "Notes");
    assert_eq!(records.len(), 4, "organized in place, none added");
    let by_name: BTreeMap<&str, &Value> = records
        .iter()
        .map(|r| (r["fields"]["Name"].as_str().unwrap(), &r["fields"]))
        .collect();
    assert_eq!(by_name["framework tokio"]["Category"], "Frameworks");
    assert_eq!(
        by_name["system raft"]["Tags"],
        json!(["consensus", "replication"])
    );
    assert_eq!(by_name["paper bert"]["Summary"], "About paper bert.");
    assert_eq!(
        by_name["paper bert"]["Notes"],
        "Language models. Topics: transformers, nlp."
    );
    let bert_links = by_name["paper bert"]["Related"].as_array().unwrap();
    assert_eq!(bert_links.len(), 1);
    let asked = org.model_requests();

    let again = ok(&client, "airtable_ai_organize", args.clone()).await;
    assert_eq!(
        (
            again["unchanged"].as_u64(),
            again["airtable_requests"]["writes"].as_u64()
        ),
        (Some(4), Some(0))
    );
    assert_eq!(org.model_requests(), asked);

    // A user edits one record's notes: that one is classified again and updated.
    let raft = records
        .iter()
        .find(|r| r["fields"]["Name"] == "system raft")
        .unwrap();
    ok(
        &client,
        "airtable_update_records",
        json!({"base": org.base, "table": "Notes", "records": [
            {"id": raft["id"], "fields": {"Notes": "Replicated logs, EDITED. Topics: consensus, replication."}}
        ]}),
    )
    .await;
    let edited = ok(&client, "airtable_ai_organize", args).await;
    let updated: Vec<&str> = edited["update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["title"].as_str().unwrap())
        .collect();
    assert_eq!(updated, ["system raft"]);
    assert_eq!(edited["unchanged"], 3);
    assert_eq!(org.model_requests(), asked + 1);
    client.cancel().await.unwrap();
}

/// Every provider's wire format classifies the same collection the same way: the organizer
/// asks through the host's model service, whichever provider answers.
#[tokio::test]
async fn each_providers_wire_format_classifies() {
    let org = Org::new();
    let expected = corpus(&org.fx);
    org.fx.manifest(
        "agents",
        &format!(
            "{}\n[settings]\n[settings.providers.anthropic]\nmodel = \"claude-sonnet-4-5\"\n\
             [settings.providers.gemini]\nmodel = \"gemini-2.5-flash\"\n\
             [settings.providers.deepseek]\nmodel = \"deepseek-chat\"\n",
            head(include_str!("../../plugins/agents/plugin.toml")),
        ),
    );
    let script = || Behaviour::Script(Script(std::sync::Arc::new(model)));
    for p in [Provider::Anthropic, Provider::Gemini, Provider::DeepSeek] {
        org.llm.set(p, script());
    }
    let env = [
        ("AIRTABLE_API_KEY", org.airtable_token().to_owned()),
        ("AIRTABLE_BASE_URL", org.airtable.url.clone()),
        ("ANTHROPIC_API_KEY", KEY.to_owned()),
        ("ANTHROPIC_BASE_URL", org.llm.anthropic_base()),
        ("GEMINI_API_KEY", KEY.to_owned()),
        ("GEMINI_BASE_URL", org.llm.gemini_base()),
        ("DEEPSEEK_API_KEY", KEY.to_owned()),
        ("DEEPSEEK_BASE_URL", org.llm.deepseek_base()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (client, _) = org.fx.stdio_env(&[], &env, None).await;
    for (provider, fake) in [
        ("anthropic", Provider::Anthropic),
        ("gemini", Provider::Gemini),
        ("deepseek", Provider::DeepSeek),
    ] {
        let mut args = organize_args(&org.base, false);
        args["provider"] = provider.into();
        args["restart"] = true.into();
        let plan = ok(&client, "airtable_ai_organize", args).await;
        assert_eq!(plan["failed"], json!([]), "{provider}: {plan:#}");
        assert_eq!(plan["models"][0]["provider"], provider);
        assert_eq!(org.llm.request_count(fake), 6, "{provider}");
        // Held to the answer's schema where the provider can be: Gemini by responseSchema,
        // DeepSeek by JSON mode; Anthropic by the prompt alone.
        for request in org.llm.requests(fake) {
            let body = &request.body;
            match fake {
                Provider::Gemini => {
                    let config = &body["generationConfig"];
                    assert_eq!(config["responseMimeType"], "application/json");
                    assert_eq!(config["responseSchema"]["type"], "OBJECT", "{config}");
                }
                Provider::DeepSeek => {
                    assert_eq!(body["response_format"], json!({"type": "json_object"}));
                }
                _ => assert!(body.get("response_format").is_none()),
            }
        }
        let planned: BTreeMap<&str, &str> = plan["create"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["path"].as_str().unwrap(), c["category"].as_str().unwrap()))
            .collect();
        for (path, (category, _)) in &expected {
            assert_eq!(planned[path.as_str()], *category, "{provider}: {path}");
        }
    }
    client.cancel().await.unwrap();
}

/// Progress over MCP: one count across classifying, writing and linking that only grows (the
/// spec's rule), ending at its total.
#[tokio::test]
async fn progress_only_grows_and_reaches_its_total() {
    use rmcp::{
        model::{ClientRequest, Request, ServerResult},
        service::PeerRequestOptions,
    };
    let org = Org::new();
    corpus(&org.fx);
    let client = org.client().await;
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(crate::scenario::call(
                "airtable_ai_organize",
                organize_args(&org.base, true),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let ServerResult::CallToolResult(result) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let recorder = client.service().clone();
    // The last notification may land just after the result.
    recorder
        .until(|r| {
            r.progress
                .lock()
                .unwrap()
                .iter()
                .any(|p| p.progress_token == token && Some(p.progress) == p.total)
        })
        .await;
    let seen: Vec<(f64, Option<f64>)> = recorder
        .progress
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.progress_token == token)
        .map(|p| (p.progress, p.total))
        .collect();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[1].0 > w[0].0),
        "progress went back: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(done, total)| total.is_some_and(|t| *done <= t)),
        "{seen:?}"
    );
    client.cancel().await.unwrap();
}

/// Related documents by the model's judgement: an unusable answer falls back to shared tags
/// (said in a warning), `relink` asks the model again for every document, and links between
/// unchanged documents — a user's own among them — stay as the table has them.
#[tokio::test]
async fn related_documents_follow_the_models_judgement() {
    let org = Org::new();
    corpus(&org.fx);
    // One request at a time: the taxonomy, three batches, then the first 10 documents to
    // relate answered in prose, twice; the last four as the script says.
    org.setting("llm_in_flight = 4", "llm_in_flight = 1");
    for _ in 0..4 {
        org.llm.push_once(
            Provider::OpenAi,
            Behaviour::Script(Script(std::sync::Arc::new(model))),
        );
    }
    for _ in 0..2 {
        org.llm.push_once(
            Provider::OpenAi,
            Behaviour::Answer("They all look related to me.".into()),
        );
    }
    let client = org.client().await;
    let args = organize_args(&org.base, true);
    let done = ok(&client, "airtable_ai_organize", args.clone()).await;
    assert_eq!(done["failed"], json!([]), "{done:#}");
    assert_eq!(org.model_requests(), 1 + 3 + 3);
    let warning = done["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("10 document(s) linked by shared tags alone")
            && warning.contains("holds no JSON object"),
        "{done:#}"
    );
    assert_eq!(done["links_judged"], 4, "the four the model answered for");
    let links = |org: &Org| -> BTreeMap<String, BTreeSet<String>> {
        let records = org.records();
        let path_of: BTreeMap<&str, &str> = records
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap(),
                    r["fields"]["File Path"].as_str().unwrap(),
                )
            })
            .collect();
        records
            .iter()
            .map(|r| {
                let linked = r["fields"]["Related"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|id| path_of[id.as_str().unwrap()].trim_start_matches("research/"))
                    .map(str::to_owned)
                    .collect();
                let path = r["fields"]["File Path"].as_str().unwrap();
                (path.trim_start_matches("research/").to_owned(), linked)
            })
            .collect()
    };
    let first = links(&org);
    // By tags, Tokio and Ideas (one tag, two categories) are not related; the model's
    // answer for Raft and GFS (the second request) declined theirs.
    assert!(!first["framework-tokio.md"].contains("notes-ideas.md"));
    assert!(first["framework-tokio.md"].contains("framework-axum.md"));
    assert!(!first["system-raft.md"].contains("papers/system-gfs.pdf"));
    assert!(first["system-raft.md"].contains("system-paxos.md"));

    // A user links two documents the organizer never would; a re-run keeps that.
    let id = |path: &str| {
        org.records()
            .into_iter()
            .find(|r| r["fields"]["File Path"] == format!("research/{path}"))
            .unwrap()["id"]
            .clone()
    };
    let (reading, linux) = (id("notes-reading.md"), id("nested/deeper/system-linux.md"));
    ok(
        &client,
        "airtable_update_records",
        json!({"base": org.base, "table": "Research", "records": [
            {"id": reading, "fields": {"Related": [linux]}},
            {"id": linux, "fields": {"Related": [reading]}},
        ]}),
    )
    .await;
    let asked = org.model_requests();
    let again = ok(&client, "airtable_ai_organize", args.clone()).await;
    assert_eq!(
        (
            again["unchanged"].as_u64(),
            again["link_updates"].as_u64(),
            again["airtable_requests"]["writes"].as_u64()
        ),
        (Some(17), Some(0), Some(0)),
        "{again:#}"
    );
    assert_eq!(org.model_requests(), asked);
    assert!(links(&org)["notes-reading.md"].contains("nested/deeper/system-linux.md"));

    // `relink`: the model relates every document again (two requests, no classification).
    let mut relink = args.clone();
    relink["relink"] = true.into();
    let relinked = ok(&client, "airtable_ai_organize", relink).await;
    assert_eq!(org.model_requests(), asked + 2);
    assert_eq!(relinked["links_judged"], 14);
    assert_eq!(relinked["warnings"], json!([]));
    assert!(relinked["link_updates"].as_u64().unwrap() > 0);
    let after = links(&org);
    assert!(after["framework-tokio.md"].contains("notes-ideas.md"));
    assert!(after["notes-ideas.md"].contains("framework-tokio.md"));
    assert!(after["framework-tokio.md"].contains("framework-axum.md"));
    assert!(
        after["notes-reading.md"].is_empty() && after["nested/deeper/system-linux.md"].is_empty(),
        "judged again: nothing shares a tag with them"
    );
    // Every link stands in both records.
    for (path, linked) in &after {
        for other in linked {
            assert!(
                after[other].contains(path),
                "{path} → {other} has no way back"
            );
        }
    }
    client.cancel().await.unwrap();
}
