//! The dashboard (`/`) in real browsers, against `plugboard serve --http` with a token:
//! Debian's headless chromium, driven by `tests/dashboard/dashboard.mjs` (playwright-core) — the
//! login prompt, every plugin, a tool run from its generated form, the live log, a tool error, a
//! problem document, a consensus asked of four fake model providers (each answer landing in
//! turn, then the synthesis and who agreed), the providers panel's requests, tokens and costs
//! checked against `GET /api/v1/providers`, the token in no URL — and Debian's headless
//! firefox-esr, driven by `tests/dashboard/firefox.mjs` (puppeteer-core over WebDriver BiDi)
//! through the core of that path. Both drivers are pinned in tests/dashboard/package-lock.json.
//!
//! Without a browser or its driver's node modules the test says so and skips that browser,
//! unless `PLUGBOARD_REQUIRE_CHROMIUM=1` / `PLUGBOARD_REQUIRE_FIREFOX=1` (CI installs all and
//! sets both).

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};

use crate::{
    agents::manifest_waiting,
    fake_llm::{Behaviour, FakeLlm, KEY, Provider},
    support::Fixture,
};

/// The server's token (also in tests/secrets.txt: nothing the server writes may hold it).
const TOKEN: &str = "tok-dashboard-5e4d3c2b1a";

/// The fake providers the consensus panel asks, in the order their answers must land: each
/// answers after its own delay (ms), far enough apart for the page to show them one at a time.
/// deepseek-test has no price in the manifest.
const PROVIDERS: [(Provider, &str, u64); 4] = [
    (Provider::DeepSeek, "deepseek-test", 300),
    (Provider::Gemini, "gemini-test", 700),
    (Provider::OpenAi, "gpt-test", 1100),
    (Provider::Anthropic, "claude-test", 1500),
];

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
            shots: &["laptop.png", "phone.png", "consensus.png"],
            min_checks: 19,
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

    /// Run the script against the server at `base`, check that it passed; its summary.
    async fn run(&self, fx: &Fixture, base: &str, expect: &Value) -> Value {
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
        summary
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

/// What the driver read off the providers panel (`summary.providers`: each one's requests,
/// tokens and cost cells; `summary.providers_total`) is what `GET /api/v1/providers` says,
/// written as providers.js writes it: counts by `count()`, dollars by `usd()` (two significant
/// digits under a cent), "no price set" for a model without a price.
fn providers_panel_matches(summary: &Value, report: &Value) {
    let shown = &summary["providers"];
    for (provider, ..) in PROVIDERS {
        let name = provider.label();
        let p = report["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in {report:#}"));
        let (row, stats) = (&shown[name], &p["stats"]);
        let what = format!("{name}: the panel shows {row}, the API says {p}");
        assert_eq!(row["requests"], grouped(&stats["requests"]), "{what}");
        let tokens = format!(
            "{} / {}",
            grouped(&stats["input_tokens"]),
            grouped(&stats["output_tokens"])
        );
        assert_eq!(row["tokens"], tokens, "{what}");
        assert!(stats["output_tokens"].as_u64() > Some(0), "{what}");
        let cost = row["cost"].as_str().unwrap_or_else(|| panic!("{what}"));
        if provider == Provider::DeepSeek {
            assert!(
                p.get("price").is_none() && stats.get("cost_usd").is_none(),
                "{what}"
            );
            assert_eq!(cost, "no price set", "{what}");
            continue;
        }
        let usd = stats["cost_usd"]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}"));
        assert!(usd > 0.0, "{what}");
        assert!(shows_dollars(cost, usd), "{what}");
        let per_million = |way: &str| p["price"][way].as_f64().unwrap_or_else(|| panic!("{what}"));
        let price = format!(
            " ${}/${} per M",
            per_million("input"),
            per_million("output")
        );
        assert!(cost.ends_with(&price), "{what}");
    }
    let t = &report["totals"];
    let total = summary["providers_total"].as_str().unwrap_or_default();
    let want = format!(
        "Total: {} tokens in, {} out, ",
        grouped(&t["input_tokens"]),
        grouped(&t["output_tokens"])
    );
    let what = format!("the panel's total is {total:?}, the API's {t}");
    assert!(total.starts_with(&want), "{what}");
    let cost = t["cost_usd"].as_f64().unwrap_or_else(|| panic!("{what}"));
    assert!(shows_dollars(&total[want.len()..], cost), "{what}");
}

/// A count as `toLocaleString("en")` writes it: `12,345`.
fn grouped(n: &Value) -> String {
    let digits = n
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {n}"))
        .to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Whether a `usd()` text such as `$0.000048` or `$1.20 …` is `exact` dollars as `usd()`
/// rounds it: to two significant digits under a cent, to the cent from there up.
fn shows_dollars(text: &str, exact: f64) -> bool {
    let shown = text
        .strip_prefix('$')
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse::<f64>().ok());
    let half_step = if exact < 0.01 {
        10f64.powf(exact.log10().floor() - 1.0) / 2.0
    } else {
        0.005
    };
    shown.is_some_and(|shown| (shown - exact).abs() <= half_step * (1.0 + 1e-9))
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
    // The agents plugin against the fake providers, anthropic writing the synthesis.
    let fake = FakeLlm::start_in_thread();
    fx.manifest(
        "agents",
        &manifest_waiting(
            "timeout_secs = 10\nmax_retries = 2\nmax_retry_wait_secs = 5\n",
            "synthesizer = \"anthropic\"",
        ),
    );
    let mut cmd = fx.command(&["serve", "--http", "127.0.0.1:0"]);
    for (provider, _, delay) in PROVIDERS {
        let base = match provider {
            Provider::OpenAi => fake.openai_base(),
            Provider::Anthropic => fake.anthropic_base(),
            Provider::Gemini => fake.gemini_base(),
            Provider::DeepSeek => fake.deepseek_base(),
        };
        let upper = provider.label().to_uppercase();
        cmd.env(format!("{upper}_API_KEY"), KEY)
            .env(format!("{upper}_BASE_URL"), base);
        fake.set_latency(provider, Duration::from_millis(delay));
    }
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
    assert!(
        names.contains(&"broken") && names.contains(&"agents"),
        "{names:?}"
    );

    // Anthropic answers the question, then writes the synthesis naming who agreed.
    let prompt = "Is the sky blue?";
    let synthesis = "The sky is blue, all four say.";
    let agreed = ["deepseek", "gemini", "openai"];
    fake.push_once(Provider::Anthropic, Behaviour::Echo);
    fake.push_once(
        Provider::Anthropic,
        Behaviour::Answer(format!("{synthesis}\nAGREED: {}", agreed.join(", "))),
    );
    let order: Vec<Value> = PROVIDERS
        .iter()
        .map(|(provider, model, _)| {
            let name = provider.label();
            json!({ "provider": name, "says": format!("{name} ({model}) says: {prompt}") })
        })
        .collect();
    // Each provider's requests once the consensus is in: anthropic's answer and synthesis.
    let requests: serde_json::Map<String, Value> = PROVIDERS
        .iter()
        .map(|(p, ..)| {
            (
                p.label().to_owned(),
                json!(1 + usize::from(*p == Provider::Anthropic)),
            )
        })
        .collect();
    let expect = json!({
        "plugins": names,
        "failed": { "name": "broken", "reason": "the database is on fire" },
        "readable": "docs/guide.md",
        "consensus": {
            "prompt": prompt,
            "order": order,
            "apart_ms": 200,
            "synthesis": {
                "heading": "Synthesis by anthropic (claude-test)",
                "text": synthesis,
                "agreed": format!("Agreed: {}", agreed.join(", ")),
            },
        },
        "providers": requests,
    });

    for driver in chromium.iter().chain(&firefox) {
        let summary = driver.run(&fx, base, &expect).await;
        if driver.script == "dashboard.mjs" {
            let report: Value = get(&http, &format!("{base}/api/v1/providers"), Some(TOKEN))
                .await
                .json()
                .await
                .unwrap();
            providers_panel_matches(&summary, &report);
        }
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
