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
