//! The command line: plugins, tools, call, check, filters and `.env`.

use serde_json::Value;

use crate::snapshots::snapshotted;
use crate::support::{Fixture, write};

/// Run the CLI to its end; its output is checked for secrets.
async fn run(fx: &Fixture, args: &[&str]) -> (bool, String, String) {
    let ran = fx.output(&mut fx.command(args)).await;
    (ran.ok, ran.stdout, ran.stderr)
}

async fn tool_names(fx: &Fixture, args: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.extend(["tools", "--json"]);
    let (ok, stdout, stderr) = run(fx, &all).await;
    assert!(ok, "{stderr}");
    let tools: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn plugins_shows_every_status() {
    let fx = Fixture::new();
    // Same tool names as `testkit`, which comes first in name order: this one fails whole.
    fx.manifest(
        "twin",
        "name = \"twin\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\nprefix = \"testkit\"\n",
    );
    let (ok, stdout, _) = run(&fx, &["plugins"]).await;
    assert!(ok);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
            .to_owned()
    };
    let files = format!("ready  ({} tools)", snapshotted("files_").len());
    assert!(line("files").contains(&files), "{stdout}");
    assert!(line("testkit").contains("ready"), "{stdout}");
    assert!(
        line("broken").contains("failed (the database is on fire)"),
        "{stdout}"
    );
    assert!(
        line("panicky").contains("failed (init panicked: testkit was asked to panic during init)"),
        "{stdout}"
    );
    assert!(
        line("keyed").contains("unconfigured (set PLUGBOARD_TEST_API_KEY)"),
        "{stdout}"
    );
    assert!(line("sleepy").contains("disabled"), "{stdout}");
    assert!(
        line("twin")
            .contains("failed (tool `testkit_echo` is already published by plugin `testkit`"),
        "{stdout}"
    );
    let typo = line("typo");
    assert!(
        typo.contains("plugin.toml: line 3, column 1: unknown field `enabld`"),
        "{typo}"
    );
}

#[tokio::test]
async fn check_reports_missing_variables_and_never_prints_secrets() {
    let fx = Fixture::new();
    let (ok, stdout, _) = run(&fx, &["check"]).await;
    assert!(!ok, "check fails while a plugin is unconfigured or failed");
    assert!(
        stdout.contains("PLUGBOARD_TEST_API_KEY") && stdout.contains("MISSING (required), secret"),
        "{stdout}"
    );

    // From .env: the plugin becomes ready, and the value appears nowhere.
    write(
        &fx.home.path().join(".env"),
        "PLUGBOARD_TEST_API_KEY=sk-live-abcdef123456\n",
    );
    let (_, stdout, stderr) = run(&fx, &["check"]).await;
    assert!(stdout.contains("keyed: ready"), "{stdout}");
    assert!(
        !stdout.contains("sk-live") && !stderr.contains("sk-live"),
        "secret leaked:\n{stdout}\n{stderr}"
    );
    let (_, plugins, _) = run(&fx, &["plugins", "--json"]).await;
    assert!(!plugins.contains("sk-live"));
    // The real environment wins over .env.
    let out = fx
        .output(fx.command(&["check"]).env("PLUGBOARD_TEST_API_KEY", ""))
        .await;
    assert!(out.stdout.contains("keyed: unconfigured"), "{}", out.stdout);
}

#[tokio::test]
async fn tools_and_filters() {
    let fx = Fixture::new();
    let all = tool_names(&fx, &[]).await;
    assert!(
        all.contains(&"files_read".to_owned()) && all.contains(&"testkit_panic".to_owned()),
        "{all:?}"
    );

    let only_files = tool_names(&fx, &["--toolsets", "files"]).await;
    assert!(
        only_files.iter().all(|t| t.starts_with("files_")) && only_files.len() == 4,
        "{only_files:?}"
    );

    let picked = tool_names(&fx, &["--tools", "files_read,testkit_echo"]).await;
    assert_eq!(picked, ["files_read", "testkit_echo"]);

    let excluded = tool_names(
        &fx,
        &[
            "--tools",
            "files_read,testkit_echo",
            "--exclude-tools",
            "testkit_echo",
        ],
    )
    .await;
    assert_eq!(excluded, ["files_read"], "exclude wins");

    let out = fx
        .output(
            fx.command(&["tools", "--json"])
                .env("PLUGBOARD_EXCLUDE_TOOLS", "files_list, files_search"),
        )
        .await;
    let names: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        !names
            .iter()
            .any(|t| t["name"] == "files_list" || t["name"] == "files_search")
    );

    let (ok, table, _) = run(&fx, &["tools"]).await;
    assert!(
        ok && table.contains("files_read") && table.contains("read-only"),
        "{table}"
    );
}

#[tokio::test]
async fn read_only_hides_writing_tools() {
    let fx = Fixture::new();
    // Every built-in tool so far is read-only; a plugin's tools are hidden when they are not.
    let all = tool_names(&fx, &["--read-only"]).await;
    assert!(all.contains(&"files_read".to_owned()));
    let (_, out, _) = run(&fx, &["tools", "--json", "--read-only"]).await;
    let tools: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        tools
            .iter()
            .all(|t| t["annotations"]["readOnlyHint"] == true)
    );
}

#[tokio::test]
async fn call_runs_a_tool_from_the_shell() {
    let fx = Fixture::new();
    let (ok, stdout, stderr) = run(
        &fx,
        &[
            "call",
            "files_read",
            "--args",
            r#"{"path":"docs/guide.md"}"#,
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("# User Guide"), "{stdout}");

    let (ok, stdout, _) = run(
        &fx,
        &[
            "call",
            "files_read",
            "--args",
            r#"{"path":"../outside.txt"}"#,
            "--json",
        ],
    )
    .await;
    assert!(!ok, "an error result exits non-zero");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["isError"], true);
    assert!(!stdout.contains("TOP SECRET"));

    let (ok, _, stderr) = run(&fx, &["call", "files_read", "--args", "[1]"]).await;
    assert!(!ok && stderr.contains("JSON object"), "{stderr}");
}

#[tokio::test]
async fn help_is_everywhere() {
    let fx = Fixture::empty();
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["plugins", "--help"],
        &["tools", "--help"],
        &["call", "--help"],
        &["check", "--help"],
    ] {
        let (ok, stdout, _) = run(&fx, cmd).await;
        assert!(
            ok && stdout.contains("Usage: plugboard"),
            "{cmd:?}: {stdout}"
        );
    }
    let (_, serve, _) = run(&fx, &["serve", "--help"]).await;
    assert!(
        serve.contains("--max-sse-sessions") && serve.contains("[default: 256]"),
        "{serve}"
    );
    let (ok, stdout, _) = run(&fx, &["plugins"]).await;
    assert!(ok && stdout.contains("no plugins found"), "{stdout}");
}

#[tokio::test]
async fn a_bad_setting_names_the_manifest_line() {
    let fx = Fixture::new();
    fx.manifest(
        "files",
        "name = \"files\"\nkind = \"builtin\"\n\n[settings]\nlist_limit = \"many\"\n",
    );
    let (ok, stdout, _) = run(&fx, &["plugins"]).await;
    assert!(ok);
    let files = stdout.lines().find(|l| l.starts_with("files")).unwrap();
    assert!(
        files.contains("bad settings in") && files.contains("plugin.toml: line 5, column 14"),
        "{files}"
    );
}

/// A client that launches the bare binary from any folder still gets the shipped plugins.
#[tokio::test]
async fn shipped_manifests_when_there_is_no_plugins_folder() {
    let fx = Fixture::new();
    let out = fx
        .output(
            fx.command(&["plugins"])
                .env_remove("PLUGBOARD_PLUGINS_DIR")
                .current_dir(fx.data()),
        )
        .await;
    let stdout = out.stdout;
    assert!(out.ok);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let files = format!("ready ({} tools)", snapshotted("files_").len());
    assert_eq!(line("files"), files, "{stdout}");
    assert_eq!(line("testkit"), "disabled", "{stdout}");
    assert_eq!(
        line("airtable"),
        "unconfigured (set AIRTABLE_API_KEY)",
        "{stdout}"
    );

    // An explicit folder that does not exist is not silently replaced.
    let (_, stdout, _) = run(&fx, &["--plugins-dir", "nowhere", "plugins"]).await;
    assert!(stdout.contains("no plugins found in nowhere"), "{stdout}");
}

/// `ask` and `consensus` find the agents plugin's tools under whatever prefix its manifest
/// gives them; without the plugin they say so.
#[tokio::test]
async fn ask_and_consensus_follow_the_agents_prefix() {
    use crate::fake_llm::{Behaviour, FakeLlm, KEY, Provider};

    let fx = Fixture::new();
    let (ok, _, stderr) = run(&fx, &["ask", "hi"]).await;
    assert!(
        !ok && stderr.contains("no `ask` tool: the agents plugin is not loaded"),
        "{stderr}"
    );

    let fake = FakeLlm::start_in_thread();
    let shipped = include_str!("../../plugins/agents/plugin.toml");
    let head = shipped.split("\n[settings]").next().unwrap();
    assert!(head.contains("prefix = \"\"\n"));
    fx.manifest(
        "agents",
        &format!(
            "{}\n[settings]\nsynthesizer = \"anthropic\"\n\
             [settings.providers.openai]\nmodel = \"gpt-test\"\n\
             [settings.providers.anthropic]\nmodel = \"claude-test\"\n",
            head.replace("prefix = \"\"\n", "prefix = \"ai\"\n")
        ),
    );
    let command = |args: &[&str]| {
        let mut cmd = fx.command(args);
        cmd.env("OPENAI_API_KEY", KEY)
            .env("OPENAI_BASE_URL", fake.openai_base())
            .env("ANTHROPIC_API_KEY", KEY)
            .env("ANTHROPIC_BASE_URL", fake.anthropic_base());
        cmd
    };
    let names = fx.output(&mut command(&["tools", "--json"])).await;
    assert!(
        names.stdout.contains("\"ai_ask\"") && !names.stdout.contains("\"ask\""),
        "{}",
        names.stdout
    );

    let asked = fx
        .output(&mut command(&["ask", "--provider", "openai", "Say hi"]))
        .await;
    assert!(asked.ok, "{}", asked.stderr);
    assert_eq!(asked.stdout, "openai (gpt-test) says: Say hi\n");

    fake.push_once(Provider::Anthropic, Behaviour::Echo);
    fake.push_once(
        Provider::Anthropic,
        Behaviour::Answer("Same.\nAGREED: openai, anthropic".into()),
    );
    let agreed = fx
        .output(&mut command(&[
            "consensus",
            "--providers",
            "anthropic,openai",
            "2+2?",
        ]))
        .await;
    assert!(agreed.ok, "{}", agreed.stderr);
    assert!(
        agreed
            .stdout
            .contains("\n2 of 2 answered; agreed: openai, anthropic; "),
        "{}",
        agreed.stdout
    );
}

/// A malformed `.env` line may hold a secret: the error names the file and the line number,
/// never the line.
#[tokio::test]
async fn a_malformed_env_line_is_named_by_number_only() {
    let fx = Fixture::new();
    let env = fx.home.path().join(".env");
    write(
        &env,
        "# test keys\nPLUGBOARD_LOG=info\n\nPLUGBOARD_TEST_API_KEY sk-dotenv-7d6c5b4a3\n",
    );
    // Checked for the secret by `run`, on stdout and stderr.
    let (ok, _, stderr) = run(&fx, &["check"]).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{}: line 4 is not `NAME=value`", env.display())),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&fx, &["--env-file", ".env", "plugins"]).await;
    assert!(
        !ok && stderr.contains(".env: line 4 is not `NAME=value`"),
        "{stderr}"
    );
}

/// A manifest that cannot be read, a second plugin of a name already taken, and plugins whose
/// dependencies go round in a circle each get a `failed (…)` line saying what is wrong; none
/// vanishes, and the plugins beside them still start.
#[tokio::test]
async fn manifests_that_cannot_start_say_why() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.plugins().join("folder/plugin.toml")).unwrap();
    std::fs::create_dir_all(fx.plugins().join("dangling")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        fx.home.path().join("nowhere.toml"),
        fx.plugins().join("dangling/plugin.toml"),
    )
    .unwrap();
    fx.manifest("z-again", "name = \"files\"\nkind = \"builtin\"\n");
    let with_dep = |name: &str, dep: &str| {
        format!(
            "name = \"{name}\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\nprefix = \"{name}\"\n\
             [dependencies]\nplugins = [\"{dep}\"]\n"
        )
    };
    fx.manifest("ping", &with_dep("ping", "pong"));
    fx.manifest("pong", &with_dep("pong", "ping"));
    fx.manifest("leaf", &with_dep("leaf", "ping"));
    let (ok, stdout, stderr) = run(&fx, &["plugins"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line in:\n{stdout}"))
            .to_owned()
    };
    let folder = line("folder");
    assert!(
        folder.contains("failed") && folder.contains("is a folder"),
        "{folder}"
    );
    if cfg!(unix) {
        let dangling = line("dangling");
        assert!(
            dangling.contains("failed") && dangling.contains("symlink to nothing"),
            "{dangling}"
        );
    }
    let again = line("z-again (duplicate)");
    assert!(
        again.contains("failed") && again.contains("a plugin named `files` is already loaded from"),
        "{again}"
    );
    assert!(line("files").contains("ready"), "{stdout}");
    let ping = line("ping");
    assert!(
        ping.contains("failed") && ping.contains("go round in a circle: `ping` → `pong` → `ping`"),
        "{ping}"
    );
    let leaf = line("leaf");
    assert!(
        leaf.contains("failed") && leaf.contains("`ping` (which cannot start either)"),
        "{leaf}"
    );
}

// ---- check --online ------------------------------------------------------------------------

/// The services `check --online` talks to, faked, and a fixture whose plugins are the shipped
/// airtable, github and agents manifests, every key set and pointed at the fakes.
struct Online {
    fx: Fixture,
    airtable: crate::fake_airtable::FakeAirtable,
    github: crate::fake_github::FakeGitHub,
    llm: crate::fake_llm::FakeLlm,
}

impl Online {
    fn new() -> Self {
        let fx = Fixture::empty();
        fx.manifest(
            "airtable",
            include_str!("../../plugins/airtable/plugin.toml"),
        );
        fx.manifest("github", include_str!("../../plugins/github/plugin.toml"));
        fx.manifest("agents", include_str!("../../plugins/agents/plugin.toml"));
        Self {
            fx,
            airtable: crate::fake_airtable::FakeAirtable::start_in_thread(Default::default()),
            github: crate::fake_github::FakeGitHub::start_in_thread(Default::default()),
            llm: crate::fake_llm::FakeLlm::start_in_thread(),
        }
    }

    /// `plugboard <args>` with every key and base URL set; `env` overrides.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> crate::support::Ran {
        use crate::fake_llm::KEY;
        let mut cmd = self.fx.command(args);
        cmd.env("AIRTABLE_API_KEY", crate::fake_airtable::DEFAULT_TOKEN)
            .env("AIRTABLE_BASE_URL", &self.airtable.url)
            .env("GITHUB_TOKEN", crate::fake_github::TOKEN)
            .env("GITHUB_API_URL", self.github.api_url());
        for (name, base, model) in [
            ("OPENAI", self.llm.openai_base(), "gpt-5-mini"),
            ("ANTHROPIC", self.llm.anthropic_base(), "claude-sonnet-4-5"),
            ("GEMINI", self.llm.gemini_base(), "gemini-2.5-flash"),
            ("DEEPSEEK", self.llm.deepseek_base(), "deepseek-v4-flash"),
        ] {
            cmd.env(format!("{name}_API_KEY"), KEY)
                .env(format!("{name}_BASE_URL"), base)
                .env(format!("{name}_MODEL"), model);
        }
        cmd.envs(env.iter().copied());
        self.fx.output(&mut cmd).await
    }

    /// `check --online`: whether it passed, and its `Online:` section.
    async fn check(&self, env: &[(&str, &str)]) -> (bool, String) {
        let ran = self.run(&["check", "--online"], env).await;
        let online = ran
            .stdout
            .split_once("Online:\n")
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_else(|| panic!("no Online section:\n{}\n{}", ran.stdout, ran.stderr));
        (ran.ok, online)
    }
}

/// The line of `online` about `name`.
fn line_of<'a>(online: &'a str, name: &str) -> &'a str {
    online
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{online}"))
}

#[tokio::test]
async fn check_online_passes_when_every_key_works() {
    use crate::fake_llm::Provider;
    let on = Online::new();
    // Offline, nothing is asked.
    let offline = on.run(&["check"], &[]).await;
    assert!(offline.ok, "{}\n{}", offline.stdout, offline.stderr);
    assert!(!offline.stdout.contains("Online:"), "{}", offline.stdout);
    assert_eq!(on.github.requests().len(), 0);
    assert_eq!(on.llm.request_count(Provider::OpenAi), 0);

    // Lists of more than a page: the model is on the last one.
    let mut claude: Vec<String> = (1..=24).map(|i| format!("claude-old-{i:02}")).collect();
    claude.push("claude-sonnet-4-5".into());
    let claude: Vec<&str> = claude.iter().map(String::as_str).collect();
    on.llm.set_models(Provider::Anthropic, &claude);
    let mut gemini: Vec<String> = (1..=59).map(|i| format!("gemini-old-{i:02}")).collect();
    gemini.push("gemini-2.5-flash".into());
    let gemini: Vec<&str> = gemini.iter().map(String::as_str).collect();
    on.llm.set_models(Provider::Gemini, &gemini);

    let (ok, online) = on.check(&[]).await;
    assert!(ok, "{online}");
    insta::assert_snapshot!(online, @r"
      agents/anthropic  ok (key accepted; claude-sonnet-4-5 is offered)
      agents/deepseek   ok (key accepted; deepseek-v4-flash is offered)
      agents/gemini     ok (key accepted; gemini-2.5-flash is offered)
      agents/openai     ok (key accepted; gpt-5-mini is offered)
      airtable          ok (user usrBK9l87iBAhogw9; scopes data.records:read, data.records:write, schema.bases:read, schema.bases:write)
      github            ok (user octocat; scopes repo)
    ");
    let pages =
        |p: Provider| -> Vec<String> { on.llm.requests(p).into_iter().map(|r| r.path).collect() };
    assert_eq!(
        pages(Provider::Anthropic),
        [
            "/anthropic/v1/models",
            "/anthropic/v1/models?after_id=claude-old-20"
        ]
    );
    assert_eq!(
        pages(Provider::Gemini),
        [
            "/gemini/v1beta/models",
            "/gemini/v1beta/models?pageToken=page-50"
        ]
    );
    // Keys travel in headers only.
    let gemini_request = &on.llm.requests(Provider::Gemini)[0];
    assert_eq!(gemini_request.headers["x-goog-api-key"], "<key>");
    assert_eq!(
        on.llm.requests(Provider::Anthropic)[0].headers["anthropic-version"],
        "2023-06-01"
    );
}

#[tokio::test]
async fn check_online_says_a_revoked_key_is_rejected() {
    use crate::fake_llm::Provider;
    let on = Online::new();
    on.airtable.revoke_token();
    on.github.revoke_token();
    on.llm.revoke_key(Provider::OpenAi);
    on.llm.revoke_key(Provider::Gemini);
    let (ok, online) = on.check(&[]).await;
    // The keys appear nowhere: `Fixture::output` checks stdout and stderr for them.
    assert!(!ok, "a rejected key fails the check:\n{online}");
    assert_eq!(
        line_of(&online, "airtable"),
        "  airtable          FAILED: token rejected (revoked or mistyped): set AIRTABLE_API_KEY \
         to a valid personal access token (pat…)"
    );
    assert_eq!(
        line_of(&online, "github"),
        "  github            FAILED: token rejected (revoked or mistyped; GitHub says “Bad \
         credentials”): set GITHUB_TOKEN to a valid token"
    );
    assert_eq!(
        line_of(&online, "agents/openai"),
        "  agents/openai     FAILED: key rejected (revoked or mistyped): check OPENAI_API_KEY"
    );
    // Gemini refuses a bad key with a 400 (API_KEY_INVALID), not a 401.
    assert!(
        line_of(&online, "agents/gemini").ends_with(
            "FAILED: key rejected (revoked or mistyped): check GEMINI_API_KEY or GOOGLE_API_KEY"
        ),
        "{online}"
    );
    assert!(
        line_of(&online, "agents/anthropic").contains(" ok ("),
        "{online}"
    );
}

#[tokio::test]
async fn check_online_names_a_missing_scope() {
    let on = Online::new();
    on.airtable
        .set_scopes(&["data.records:read", "schema.bases:read"]);
    on.github
        .set_token_scopes(Some(&["public_repo", "read:org"]));
    let (ok, online) = on.check(&[]).await;
    assert!(!ok, "{online}");
    assert_eq!(
        line_of(&online, "airtable"),
        "  airtable          FAILED: the token of user usrBK9l87iBAhogw9 lacks data.records:write \
         (for create_records, update_records, upsert_records, delete_records, bulk_import), \
         schema.bases:write (for create_table, create_field, update_field): add the scopes to \
         the token at airtable.com/create/tokens"
    );
    assert_eq!(
        line_of(&online, "github"),
        "  github            FAILED: the token of user octocat lacks the `repo` scope: private \
         repositories are out of reach (scopes: public_repo, read:org); add `repo` to it at \
         github.com/settings/tokens"
    );

    // A fine-grained token lists no scopes: that is said, and is no failure.
    on.airtable.set_scopes(&crate::fake_airtable::ALL_SCOPES);
    on.github.set_token_scopes(None);
    let (ok, online) = on.check(&[]).await;
    assert!(ok, "{online}");
    assert_eq!(
        line_of(&online, "github"),
        "  github            ok (user octocat; a fine-grained or app token (GitHub lists no \
         scopes for it): the repositories it reaches are chosen with the token on github.com)"
    );
}

#[tokio::test]
async fn check_online_lists_the_models_offered_when_the_model_is_not() {
    use crate::fake_llm::Provider;
    let on = Online::new();
    on.llm.set_models(Provider::OpenAi, &["gpt-4o", "gpt-4.1"]);
    let (ok, online) = on.check(&[("GEMINI_MODEL", "text-embedding-004")]).await;
    assert!(!ok, "{online}");
    assert_eq!(
        line_of(&online, "agents/openai"),
        "  agents/openai     FAILED: model gpt-5-mini not offered (offered: gpt-4.1, gpt-4o): \
         set OPENAI_MODEL or settings.providers.openai.model to one it offers"
    );
    // An embedding model is listed, but cannot answer: not among those offered.
    assert_eq!(
        line_of(&online, "agents/gemini"),
        "  agents/gemini     FAILED: model text-embedding-004 not offered (offered: \
         gemini-2.5-flash, gemini-2.5-flash-lite, gemini-2.5-pro): set GEMINI_MODEL or \
         settings.providers.gemini.model to one it offers"
    );
    assert!(
        line_of(&online, "agents/deepseek").contains(" ok ("),
        "{online}"
    );
}

#[tokio::test]
async fn check_online_says_which_service_cannot_be_reached() {
    let on = Online::new();
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("http://{closed}");
    let (ok, online) = on
        .check(&[
            ("AIRTABLE_BASE_URL", nowhere.as_str()),
            ("GITHUB_API_URL", nowhere.as_str()),
            (
                "ANTHROPIC_BASE_URL",
                &format!("{nowhere}/anthropic?token=private"),
            ),
        ])
        .await;
    assert!(!ok, "{online}");
    for name in ["airtable", "github", "agents/anthropic"] {
        let line = line_of(&online, name);
        assert!(
            line.contains(&format!("FAILED: cannot reach {closed} (connection failed")),
            "{line}"
        );
    }
    assert!(
        !online.contains("private"),
        "a base URL's query is not shown:\n{online}"
    );
    assert!(
        line_of(&online, "agents/openai").contains(" ok ("),
        "{online}"
    );
}
