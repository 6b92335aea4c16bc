//! The dashboard (`/`) in real browsers, against `plugboard serve --http` with a token:
//! Debian's headless chromium, driven by `tests/dashboard/dashboard.mjs` (playwright-core) — the
//! login prompt, every plugin, a tool run from its generated form, the live log, a tool error, a
//! problem document, the token in no URL — and Debian's headless firefox-esr, driven by
//! `tests/dashboard/firefox.mjs` (puppeteer-core over WebDriver BiDi) through the core of that
//! path. Both drivers are pinned in tests/dashboard/package-lock.json.
//!
//! Without a browser or its driver's node modules the test says so and skips that browser,
//! unless `PLUGBOARD_REQUIRE_CHROMIUM=1` / `PLUGBOARD_REQUIRE_FIREFOX=1` (CI installs all and
//! sets both).

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};

use crate::support::Fixture;

/// The server's token (also in tests/secrets.txt: nothing the server writes may hold it).
const TOKEN: &str = "tok-dashboard-5e4d3c2b1a";

/// One browser and the node script that drives it (in tests/dashboard).
struct Driver {
    script: &'static str,
    /// The screenshots it must save (in the output folder's dashboard/), and how many checks
    /// it must report: a driver that skipped its work does not pass.
    shots: &'static [&'static str],
    min_checks: usize,
    /// The environment variable that names the browser, to us and to the script.
    browser_var: &'static str,
    browser: PathBuf,
}

impl Driver {
    /// Debian's chromium and playwright-core.
    fn chromium() -> Option<Self> {
        Self {
            script: "dashboard.mjs",
            shots: &["laptop.png", "phone.png"],
            min_checks: 15,
            browser_var: "CHROMIUM",
            browser: browser_at("CHROMIUM", "/usr/bin/chromium"),
        }
        .if_ready("playwright-core", "PLUGBOARD_REQUIRE_CHROMIUM")
    }

    /// Debian's firefox-esr and puppeteer-core (WebDriver BiDi).
    fn firefox() -> Option<Self> {
        Self {
            script: "firefox.mjs",
            shots: &["firefox.png"],
            min_checks: 9,
            browser_var: "FIREFOX",
            browser: browser_at("FIREFOX", "/usr/bin/firefox-esr"),
        }
        .if_ready("puppeteer-core", "PLUGBOARD_REQUIRE_FIREFOX")
    }

    /// The driver, or `None` (after saying why) when its browser, node or node `module` is
    /// missing and `required_var` is not `1`.
    fn if_ready(self, module: &str, required_var: &str) -> Option<Self> {
        let node = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let missing = if !self.browser.exists() {
            format!("no browser at {}", self.browser.display())
        } else if !node {
            "no `node` on PATH".to_owned()
        } else if !dashboard_dir().join("node_modules").join(module).exists() {
            format!("no tests/dashboard/node_modules/{module} (npm ci --prefix tests/dashboard)")
        } else {
            return Some(self);
        };
        let script = self.script;
        let required = std::env::var(required_var).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "the dashboard's {script} browser test is required here ({required_var}=1): {missing}"
        );
        eprintln!(
            "SKIPPED the dashboard's {script} browser test: {missing}; install the browser and \
             run `npm ci --prefix tests/dashboard` (CI does both and requires it)"
        );
        None
    }

    /// Run the script against the server at `base`, and check that it passed.
    async fn run(&self, fx: &Fixture, base: &str, expect: &Value) {
        let out = output_dir();
        for shot in self.shots {
            let _ = std::fs::remove_file(out.join("dashboard").join(shot));
        }
        let mut driver = tokio::process::Command::new("node");
        driver
            .arg(self.script)
            .current_dir(dashboard_dir())
            .env("DASHBOARD_URL", format!("{base}/"))
            .env("DASHBOARD_TOKEN", TOKEN)
            .env("DASHBOARD_EXPECT", expect.to_string())
            .env("PLUGBOARD_TEST_OUTPUT", &out)
            .env(self.browser_var, &self.browser)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let ran = tokio::time::timeout(Duration::from_secs(180), driver.output())
            .await
            .unwrap_or_else(|_| panic!("{} finished within 180 s", self.script))
            .unwrap();
        let stdout = String::from_utf8_lossy(&ran.stdout);
        let stderr = String::from_utf8_lossy(&ran.stderr);
        fx.keep_text(
            &format!("the dashboard driver {}", self.script),
            &format!("{stdout}\n{stderr}"),
        );
        let summary: Value = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("{} printed no summary:\n{stdout}\n{stderr}", self.script));
        assert!(
            ran.status.success() && summary["ok"] == true,
            "the {} browser test failed (screenshots in {}):\n{summary:#}\n{stderr}",
            self.script,
            out.join("dashboard").display()
        );
        let checks = summary["checks"].as_array().map_or(0, Vec::len);
        assert!(checks >= self.min_checks, "{summary:#}");
        for shot in self.shots {
            assert!(
                out.join("dashboard").join(shot).exists(),
                "{} saved no {shot}",
                self.script
            );
        }
    }
}

/// The browser named by `$var`, else at `default`.
fn browser_at(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| default.into(), PathBuf::from)
}

fn dashboard_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard")
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
    let (chromium, firefox) = (Driver::chromium(), Driver::firefox());
    if chromium.is_none() && firefox.is_none() {
        return;
    }
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

    for driver in chromium.iter().chain(&firefox) {
        driver.run(&fx, base, &expect).await;
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
    if chromium.is_some() {
        assert!(counted("testkit_echo", "invalid_arguments"), "{metrics}");
        assert!(counted("files_read", "failed"), "{metrics}");
        assert!(counted("files_read", "ok"), "{metrics}");
    }
}
