//! The files plugin through MCP: what it reads, and everything it refuses.

use serde_json::{Value, json};

use crate::{
    scenario::{Client, call},
    support::{Fixture, text, write},
};

async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let result = client.call_tool(call(tool, args.clone())).await.unwrap();
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {args}: {}",
        text(&result)
    );
    result
        .structured_content
        .clone()
        .unwrap_or_else(|| json!({ "text": text(&result) }))
}

async fn refused(client: &Client, tool: &str, args: Value) -> String {
    let result = client.call_tool(call(tool, args.clone())).await.unwrap();
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {args} should be refused: {}",
        text(&result)
    );
    let message = text(&result);
    assert!(!message.contains("TOP SECRET"), "{message}");
    message
}

#[tokio::test]
async fn nothing_outside_the_roots_is_ever_read() {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&[]).await;
    let outside = fx.home.path().join("outside.txt").display().to_string();
    let attempts = [
        ("files_read", json!({"path": "../outside.txt"})),
        ("files_read", json!({"path": "docs/../../outside.txt"})),
        ("files_read", json!({"path": outside})),
        ("files_read", json!({"path": "/etc/passwd"})),
        ("files_read", json!({"path": "escape.txt"})),
        ("files_read", json!({"path": "docs/guide.md\u{0}"})),
        // Paths are not URLs: a percent-encoded escape is a literal name, found nowhere.
        ("files_read", json!({"path": "%2e%2e/outside.txt"})),
        ("files_read", json!({"path": "..%2foutside.txt"})),
        ("files_read", json!({"path": "%2E%2E%2Foutside.txt"})),
        ("files_list", json!({"path": ".."})),
        ("files_list", json!({"path": "/"})),
        ("files_search", json!({"pattern": "SECRET", "path": ".."})),
        ("files_analyze", json!({"path": ".."})),
    ];
    for (tool, args) in attempts {
        refused(&client, tool, args).await;
    }
    // Walking never follows the escaping link either.
    let hits = ok(&client, "files_search", json!({"pattern": "SECRET"})).await;
    assert_eq!(hits["hits"].as_array().unwrap().len(), 0, "{hits}");
    let listed = ok(&client, "files_list", json!({"depth": 5})).await;
    assert!(!listed.to_string().contains("outside.txt"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn list_read_search_analyze() {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&[]).await;

    let listed = ok(&client, "files_list", json!({"path": "docs"})).await;
    let paths: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["docs/guide.md", "docs/notes.txt"], "{listed}");

    let lines = ok(
        &client,
        "files_read",
        json!({"path": "docs/notes.txt", "start_line": 2, "end_line": 3}),
    )
    .await;
    assert_eq!(lines["text"], "beta\ngamma needle\n", "{lines}");
    // The schema leaves `null` out of optional arguments' types, and a model that sends
    // `null` for one it leaves out (as OpenAI's strict mode does) is not refused for it.
    let nulls = ok(
        &client,
        "files_read",
        json!({"path": "docs/notes.txt", "start_line": 3, "end_line": null, "offset": null}),
    )
    .await;
    assert_eq!(nulls["text"], "gamma needle\n", "{nulls}");
    let required_null = refused(&client, "files_read", json!({"path": null})).await;
    assert!(required_null.contains("path"), "{required_null}");

    let hits = ok(&client, "files_search", json!({"pattern": "needle"})).await;
    let mut found: Vec<(String, u64)> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_owned(),
                h["line"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("docs/notes.txt".to_owned(), 3),
            ("src/main.rs".to_owned(), 2)
        ]
    );

    let bad_regex = refused(&client, "files_search", json!({"pattern": "("})).await;
    assert!(bad_regex.contains("invalid arguments"), "{bad_regex}");

    let docs = ok(&client, "files_analyze", json!({"path": "docs"})).await;
    let guide = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "docs/guide.md")
        .expect("guide analysed");
    assert_eq!(guide["title"], "User Guide");
    assert_eq!(guide["type"], "markdown");
    assert!(
        guide["extract"]
            .as_str()
            .unwrap()
            .starts_with("plugboard connects your AI"),
        "{guide}"
    );
    assert_eq!(guide["words"], 11);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn listings_are_bounded_and_resume_with_a_cursor() {
    let fx = Fixture::new();
    for i in 0..25 {
        write(&fx.data().join(format!("many/f{i:02}.txt")), "x\n");
    }
    let (client, _) = fx.stdio(&[]).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"path": "many", "limit": 10});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = ok(&client, "files_list", args).await;
        seen.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["path"].as_str().unwrap().to_owned()),
        );
        if page["truncated"] == true {
            cursor = Some(
                page["next_cursor"]
                    .as_str()
                    .expect("cursor when truncated")
                    .to_owned(),
            );
        } else {
            break;
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("many/f{i:02}.txt")).collect();
    assert_eq!(seen, expected, "every entry once, in order");
    client.cancel().await.unwrap();
}

/// A hard link inside a root to a file outside it passes every path check, so a file with more
/// than one name is refused — read, search, list and analyze alike — unless the user allows it.
#[cfg(unix)]
#[tokio::test]
async fn hard_links_out_of_the_roots_are_refused_unless_allowed() {
    let fx = Fixture::new();
    let outside = fx.home.path().join("outside.txt");
    assert!(
        std::fs::read_to_string(&outside)
            .unwrap()
            .contains("TOP SECRET")
    );
    std::fs::hard_link(&outside, fx.data().join("hard.txt")).unwrap();
    let (client, _) = fx.stdio(&[]).await;
    let message = refused(&client, "files_read", json!({"path": "hard.txt"})).await;
    assert!(
        message.contains("hard link") && message.contains("`allow_hard_links`"),
        "{message}"
    );
    let hits = ok(&client, "files_search", json!({"pattern": "SECRET"})).await;
    assert_eq!(hits["hits"].as_array().unwrap().len(), 0, "{hits}");
    let listed = ok(&client, "files_list", json!({"depth": 5})).await;
    assert!(!listed.to_string().contains("hard.txt"), "{listed}");
    let analyzed = ok(&client, "files_analyze", json!({"path": "."})).await;
    assert!(!analyzed.to_string().contains("hard.txt"), "{analyzed}");
    client.cancel().await.unwrap();

    // Allowed in the manifest, it reads like any file.
    fx.manifest(
        "files",
        &format!(
            "name = \"files\"\nkind = \"builtin\"\n[env.PLUGBOARD_FILES_ROOTS]\n[settings]\n\
             roots = [{:?}]\nallow_hard_links = true\n",
            fx.data().display().to_string()
        ),
    );
    let (client, _) = fx.stdio(&[]).await;
    let read = client
        .call_tool(call("files_read", json!({"path": "hard.txt"})))
        .await
        .unwrap();
    assert!(text(&read).contains("TOP SECRET"), "{}", text(&read));
    client.cancel().await.unwrap();
}

/// A sparse file far larger than the machine's memory is never read whole: `files_read`
/// reads at most its limit, search skips it by size, and `files_analyze` counts words in its
/// first 64 MiB only (scaled to the size); each answers, and the server's memory stays small.
#[tokio::test]
async fn a_huge_sparse_file_is_read_only_up_to_the_limit() {
    let fx = Fixture::new();
    let words = "word ".repeat(4096);
    for name in ["huge.log", "huge.md"] {
        let file = std::fs::File::create(fx.data().join(name)).unwrap();
        std::io::Write::write_all(&mut &file, words.as_bytes()).unwrap();
        // 64 GiB, almost all of it a hole.
        file.set_len(64 << 30).unwrap();
    }
    let (client, pid) = fx.stdio(&[]).await;
    let result = client
        .call_tool(call("files_read", json!({"path": "huge.log"})))
        .await
        .unwrap();
    let said = text(&result);
    assert!(said.len() <= 2 * 1024 * 1024, "{} bytes read", said.len());
    let hits = ok(&client, "files_search", json!({"pattern": "word"})).await;
    assert!(!hits.to_string().contains("huge"), "{hits}");
    let analyzed = ok(
        &client,
        "files_analyze",
        json!({"path": ".", "glob": "huge.md"}),
    )
    .await;
    assert!(analyzed.to_string().contains("huge.md"), "{analyzed}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kb < 512 * 1024, "RSS {rss_kb} kB after a 64 GiB file");
    client.cancel().await.unwrap();
}

/// PDFs and DOCX files are read, searched and summarised by their text (extracted in a child
/// process with limits); a damaged one is a clear reason, never a hang.
#[tokio::test]
async fn pdf_and_docx_are_read_searched_and_summarised_by_their_text() {
    use plugboard::plugins::files::extract::samples::{docx_bytes, pdf_bytes};
    let fx = Fixture::new();
    let data = fx.data();
    std::fs::write(
        data.join("docs/paper.pdf"),
        pdf_bytes(
            Some("A Paper"),
            &["First line of the paper\nneedle in a PDF", "Page two"],
        ),
    )
    .unwrap();
    std::fs::write(
        data.join("docs/notes.docx"),
        docx_bytes(None, &["Meeting notes", "A needle in a DOCX"]),
    )
    .unwrap();
    let broken = pdf_bytes(None, &["cut"]);
    std::fs::write(data.join("docs/broken.pdf"), &broken[..broken.len() / 2]).unwrap();
    let (client, _) = fx.stdio(&[]).await;

    let read = ok(&client, "files_read", json!({"path": "docs/paper.pdf"})).await;
    assert_eq!(read["extracted_from"], "pdf");
    let body = read["text"].as_str().unwrap();
    assert!(
        body.contains("needle in a PDF") && body.contains("Page two"),
        "{body}"
    );
    let lines = ok(
        &client,
        "files_read",
        json!({"path": "docs/notes.docx", "start_line": 2, "end_line": 2}),
    )
    .await;
    assert_eq!(lines["text"], "A needle in a DOCX\n");
    assert_eq!(lines["total_lines"], 2);

    let hits = ok(
        &client,
        "files_search",
        json!({"pattern": "needle in a", "path": "docs"}),
    )
    .await;
    let found: Vec<&str> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["docs/notes.docx", "docs/paper.pdf"], "{hits}");

    let summary = ok(
        &client,
        "files_analyze",
        json!({"path": "docs", "glob": "*.{pdf,docx}"}),
    )
    .await;
    let docs = summary["documents"].as_array().unwrap();
    let titles: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| (d["path"].as_str().unwrap(), d["title"].as_str().unwrap()))
        .collect();
    assert_eq!(
        titles,
        [
            ("docs/notes.docx", "Meeting notes"),
            ("docs/paper.pdf", "A Paper")
        ]
    );
    assert_eq!(docs[1]["type"], "pdf");
    let skipped = &summary["skipped"][0];
    assert_eq!(skipped["path"], "docs/broken.pdf");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .starts_with("damaged PDF"),
        "{skipped}"
    );
    let damaged = refused(&client, "files_read", json!({"path": "docs/broken.pdf"})).await;
    assert!(damaged.contains("damaged PDF"), "{damaged}");
    client.cancel().await.unwrap();
}

/// A PDF that inflates to 1.5 GB (7 MB on disk) costs the server nothing: its parser runs in
/// a child with 1 GiB of address space and a 10 s deadline, which stops it; the file is a
/// reason and the server answers the next call.
#[tokio::test]
async fn a_pdf_bomb_is_stopped_by_the_extractors_limits() {
    use plugboard::plugins::files::extract::samples::pdf_bomb;
    let fx = Fixture::new();
    std::fs::write(fx.data().join("docs/bomb.pdf"), pdf_bomb(1_500_000_000)).unwrap();
    let (client, _) = fx.stdio(&[]).await;
    let summary = ok(
        &client,
        "files_analyze",
        json!({"path": "docs", "glob": "*.pdf"}),
    )
    .await;
    let skipped = &summary["skipped"][0];
    assert_eq!(skipped["path"], "docs/bomb.pdf", "{summary}");
    let reason = skipped["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("could not be read within 1024 MiB")
            || reason.starts_with("took longer than 10 s"),
        "{reason}"
    );
    // Still serving.
    let read = ok(&client, "files_read", json!({"path": "docs/guide.md"})).await;
    assert!(read["text"].as_str().unwrap().contains("User Guide"));
    client.cancel().await.unwrap();
}
