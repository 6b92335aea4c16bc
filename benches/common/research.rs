//! The research collection the organizer benches work on, and the scripted model that
//! classifies it (included by `organize` and `faults`).

use std::path::Path;

use serde_json::{Value, json};

pub const TOPICS: [&str; 12] = [
    "rust",
    "async",
    "consensus",
    "vision",
    "nlp",
    "kernel",
    "storage",
    "network",
    "compiler",
    "database",
    "security",
    "graphics",
];

/// The scripted model: three categories; each document's category from its name, its tags
/// from its `Topics:` line; related documents: the candidates sharing a tag, most first.
pub fn model(prompt: &str) -> String {
    if prompt.starts_with("Task: relate") {
        let briefs: Vec<Value> = prompt
            .lines()
            .filter(|l| l.starts_with("{\"id\""))
            .map(|l| serde_json::from_str(l).expect("a document line"))
            .collect();
        let tags_of = |b: &Value| -> Vec<String> {
            b["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        };
        let answers: Vec<Value> = briefs
            .iter()
            .filter(|b| b.get("candidates").is_some())
            .map(|d| {
                let mine = tags_of(d);
                let mut chosen: Vec<(usize, &str)> = d["candidates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        let c = c.as_str()?;
                        let brief = briefs.iter().find(|b| b["id"] == c)?;
                        let shared = tags_of(brief).iter().filter(|t| mine.contains(t)).count();
                        (shared > 0).then_some((shared, c))
                    })
                    .collect();
                chosen.sort_by_key(|c| std::cmp::Reverse(c.0));
                json!({"id": d["id"], "related": chosen.iter().map(|(_, c)| *c).collect::<Vec<_>>()})
            })
            .collect();
        return json!({ "documents": answers }).to_string();
    }
    if prompt.contains("propose the categories") {
        return json!({"categories": [
            {"name": "Frameworks"}, {"name": "Systems"}, {"name": "Research"}
        ]})
        .to_string();
    }
    let mut documents = Vec::new();
    for line in prompt.lines().filter(|l| l.starts_with("{\"id\"")) {
        let doc: Value = serde_json::from_str(line).expect("a document line");
        let path = doc["path"].as_str().unwrap_or_default();
        let text = doc["text"].as_str().unwrap_or_default();
        let category = match path.rsplit('/').next().unwrap_or_default() {
            n if n.starts_with("framework") => "Frameworks",
            n if n.starts_with("system") => "Systems",
            _ => "Research",
        };
        let tags: Vec<&str> = text
            .split("Topics:")
            .nth(1)
            .and_then(|t| t.split('.').next())
            .unwrap_or("misc")
            .split(',')
            .map(str::trim)
            .collect();
        documents.push(json!({
            "id": doc["id"],
            "category": category,
            "tags": tags,
            "summary": format!("A note on {}.", tags.join(" and ")),
        }));
    }
    json!({ "documents": documents }).to_string()
}

/// `docs` Markdown notes in seven folders under `dir`: every third a framework, a system or a
/// paper (the model's category), two topics each (its tags).
pub fn write_corpus(dir: &Path, docs: usize) {
    for i in 0..docs {
        let name = ["framework", "system", "paper"][i % 3];
        let (a, b) = (TOPICS[i % 12], TOPICS[(i / 12 + 5) % 12]);
        let path = dir.join(format!("{}/{name}-{i:04}.md", i % 7));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            format!(
                "# Document {i}\n\nNotes about {a} and {b}. Topics: {a}, {b}.\n\n{}\n",
                "Body text of the note. ".repeat(40)
            ),
        )
        .unwrap();
    }
}

/// What the scripted model answers for document `i` of [`write_corpus`]: its category and
/// its tags.
#[allow(dead_code)] // the faults bench checks it; the organize bench counts
pub fn expected(i: usize) -> (&'static str, [&'static str; 2]) {
    let category = ["Frameworks", "Systems", "Research"][i % 3];
    (category, [TOPICS[i % 12], TOPICS[(i / 12 + 5) % 12]])
}

/// The manifests `plugboard organize` needs under `home/plugins`: files (root `home`),
/// Airtable (with this lockout), agents (OpenAI) and the organizer (its checkpoints in
/// `home/state`).
pub fn write_manifests(home: &Path, lockout_secs: f64) -> std::path::PathBuf {
    let plugins = home.join("plugins");
    let manifest = |name: &str, text: String| {
        std::fs::create_dir_all(plugins.join(name)).unwrap();
        std::fs::write(plugins.join(name).join("plugin.toml"), text).unwrap();
    };
    let head = |shipped: &str| shipped.split("\n[settings]").next().unwrap().to_owned();
    manifest(
        "files",
        format!(
            "name = \"files\"\nkind = \"builtin\"\n[settings]\nroots = [{:?}]\n",
            home.display().to_string()
        ),
    );
    manifest(
        "airtable",
        format!(
            "{}\n[settings]\nlockout_secs = {lockout_secs:?}\n",
            head(include_str!("../../plugins/airtable/plugin.toml"))
        ),
    );
    manifest(
        "agents",
        format!(
            "{}\n[settings]\n[settings.providers.openai]\nmodel = \"gpt-5-mini\"\n",
            head(include_str!("../../plugins/agents/plugin.toml"))
        ),
    );
    let organize = include_str!("../../plugins/organize/plugin.toml").replace(
        "# checkpoint_dir = \"~/.local/state/plugboard/organize\"",
        &format!(
            "checkpoint_dir = {:?}",
            home.join("state").display().to_string()
        ),
    );
    manifest("organize", organize);
    plugins
}
