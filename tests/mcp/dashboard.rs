//! The dashboard (`/`) in a real browser: Debian's headless chromium, driven by
//! `tests/dashboard/dashboard.mjs` (playwright-core, pinned in its package-lock.json), against
//! `plugboard serve --http` with a token — the login prompt, every plugin, a tool run from its
//! generated form, the live log, a tool error, a problem document, the token in no URL.
//!
//! Without chromium or the driver's node modules the test says so and passes, unless
//! `PLUGBOARD_REQUIRE_CHROMIUM=1` (CI installs both and sets it).

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};

use crate::support::Fixture;

/// The server's token (also in tests/secrets.txt: nothing the server writes may hold it).
const TOKEN: &str = "tok-dashboard-5e4d3c2b1a";

/// What the browser test needs: node, the driver's modules, a chromium.
struct Browser {
    dir: PathBuf,
    chromium: PathBuf,
}

impl Browser {
    /// The browser setup, or `None` (after saying why) when it is missing and not required.
    fn find() -> Option<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/bin/chromium".into());
        let node = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let missing = if !chromium.exists() {
            Some(format!("no chromium at {}", chromium.display()))
        } else if !node {
            Some("no `node` on PATH".to_owned())
        } else if !dir.join("node_modules/playwright-core").exists() {
            Some("no tests/dashboard/node_modules (npm ci --prefix tests/dashboard)".to_owned())
        } else {
            None
        };
        let Some(missing) = missing else {
            return Some(Self { dir, chromium });
        };
        let required = std::env::var("PLUGBOARD_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "the dashboard's browser test is required here (PLUGBOARD_REQUIRE_CHROMIUM=1): {missing}"
        );
        eprintln!(
            "SKIPPED the dashboard's browser test: {missing}; install Debian's chromium and run \
             `npm ci --prefix tests/dashboard` (CI does both and requires it)"
        );
        None
    }
}

/// Where the screenshots go: `$PLUGBOARD_TEST_OUTPUT`, else target/test-output.
fn output_dir() -> PathBuf {
    std::env::var_os("PLUGBOARD_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output"))
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_dashboard_logs_in_shows_every_plugin_and_runs_a_tool_in_a_browser() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let fx = Fixture::new();
    let mut cmd = fx.command(&["serve", "--http", "127.0.0.1:0"]);
    cmd.env("PLUGBOARD_HTTP_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let url = fx.listening_url(&mut child).await;
    let base = url.trim_end_matches('/');
    let http = reqwest::Client::new();

    // The page and its assets load without the token, under the strict CSP; the data does not.
    let page = get(&http, &format!("{base}/"), None).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(
        get(&http, &format!("{base}/assets/app.js"), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&http, &format!("{base}/api/v1/plugins"), None)
            .await
            .status(),
        401
    );

    // Every plugin the server has must show, the failing one with its reason.
    let plugins: Value = get(&http, &format!("{base}/api/v1/plugins"), Some(TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"broken"), "{names:?}");
    let expect = json!({
        "plugins": names,
        "failed": { "name": "broken", "reason": "the database is on fire" },
        "readable": "docs/guide.md",
    });

    let out = output_dir();
    let mut driver = tokio::process::Command::new("node");
    driver
        .arg("dashboard.mjs")
        .current_dir(&browser.dir)
        .env("DASHBOARD_URL", format!("{base}/"))
        .env("DASHBOARD_TOKEN", TOKEN)
        .env("DASHBOARD_EXPECT", expect.to_string())
        .env("PLUGBOARD_TEST_OUTPUT", &out)
        .env("CHROMIUM", &browser.chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let ran = tokio::time::timeout(Duration::from_secs(180), driver.output())
        .await
        .expect("the browser test finished within 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    fx.keep_text("the dashboard driver", &format!("{stdout}\n{stderr}"));
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("the driver printed no summary:\n{stdout}\n{stderr}"));
    assert!(
        ran.status.success() && summary["ok"] == true,
        "the browser test failed (screenshots in {}):\n{summary:#}\n{stderr}",
        out.join("dashboard").display()
    );
    let checks = summary["checks"].as_array().unwrap();
    assert!(checks.len() >= 15, "{summary:#}");
    for shot in ["laptop.png", "phone.png"] {
        assert!(out.join("dashboard").join(shot).exists(), "no {shot}");
    }

    // The server counted the page's calls as the dashboard's own face.
    let metrics = get(&http, &format!("{base}/metrics"), Some(TOKEN))
        .await
        .text()
        .await
        .unwrap();
    let counted = |tool: &str, outcome: &str| {
        metrics.lines().any(|line| {
            line.starts_with("plugboard_tool_calls_total{")
                && line.contains(&format!("tool=\"{tool}\""))
                && line.contains("face=\"dashboard\"")
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(counted("testkit_echo", "ok"), "{metrics}");
    assert!(counted("testkit_echo", "invalid_arguments"), "{metrics}");
    assert!(counted("files_read", "failed"), "{metrics}");
    assert!(counted("files_read", "ok"), "{metrics}");
}
