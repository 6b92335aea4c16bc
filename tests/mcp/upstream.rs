//! Custom plugins: a real MCP server (`@modelcontextprotocol/server-everything`, installed from
//! npm by `npm ci --prefix tests/upstreams`, pinned in its package-lock.json) hosted as a
//! `kind = "mcp"` plugin, driven through plugboard with rmcp's client, and compared with the
//! same server called directly.

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); the upstream uses them.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ServiceExt,
    transport::{ConfigureCommandExt, TokioChildProcess},
};
use serde_json::{Value, json};

use crate::{
    airtable::{call_tool, fails},
    support::{Fixture, text},
};

/// `path`, which the test setup provides (`how` says what makes it).
fn provided(path: PathBuf, how: &str) -> PathBuf {
    assert!(path.is_file(), "{} is missing: {how}", path.display());
    path
}

/// The server's entry point, installed by `npm ci --prefix tests/upstreams`.
fn everything() -> PathBuf {
    provided(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/upstreams/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        ),
        "run `npm ci --prefix tests/upstreams` (as .ci/run does)",
    )
}

/// A home whose only plugin is server-everything, under the prefix `ev`.
fn fixture(extra: &str) -> Fixture {
    let fx = Fixture::empty();
    fx.manifest(
        "everything",
        &format!(
            "name = \"everything\"\nkind = \"mcp\"\nprefix = \"ev\"\n\
             description = \"The MCP reference server\"\n\
             [mcp]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n{extra}",
            everything().display().to_string()
        ),
    );
    fx
}

/// The processes whose working folder is `dir` (the children plugboard started there).
fn processes_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    // A bound so a broken test fails instead of hanging; it measures nothing.
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test]
async fn an_mcp_server_is_hosted_as_a_plugin_and_relayed_unchanged() {
    let fx = fixture(
        "exclude_tools = [\"simulate-research-query\"]\n\
         env = { PLUGBOARD_TEST_GREETING = \"hello ${GREETING_NAME}\" }\n",
    );
    let (client, _) = fx
        .stdio_env(
            &[],
            &[
                ("GREETING_NAME", "world"),
                ("OPENAI_API_KEY", "sk-not-for-the-upstream-000"),
            ],
            None,
        )
        .await;
    let tools = client.list_all_tools().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for name in [
        "ev_echo",
        "ev_get-sum",
        "ev_get-tiny-image",
        "ev_get-structured-content",
    ] {
        assert!(names.contains(name), "no {name} in {names:?}");
    }
    assert!(!names.contains("ev_simulate-research-query"), "excluded");

    // The same server called directly, for what it says itself.
    let (direct_transport, _) = TokioChildProcess::builder(
        tokio::process::Command::new("node").configure_args(&[&everything(), Path::new("stdio")]),
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let direct = ().serve(direct_transport).await.unwrap();
    let direct_tools = direct.list_all_tools().await.unwrap();
    let echo = tools.iter().find(|t| t.name == "ev_echo").unwrap();
    let direct_echo = direct_tools.iter().find(|t| t.name == "echo").unwrap();
    assert_eq!(echo.input_schema, direct_echo.input_schema);
    assert_eq!(echo.description, direct_echo.description);
    assert_eq!(echo.annotations, direct_echo.annotations);
    assert_eq!(
        echo.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );

    // Results as the server writes them: text, an image, structured content.
    for (tool, args) in [
        ("get-sum", json!({"a": 2, "b": 3})),
        ("get-tiny-image", json!({})),
        ("get-structured-content", json!({"location": "New York"})),
        ("echo", json!({"message": "ünïcode ✓"})),
    ] {
        let through = call_tool(&client, &format!("ev_{tool}"), args.clone()).await;
        let itself = direct
            .call_tool(
                rmcp::model::CallToolRequestParams::new(tool)
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&through).unwrap(),
            serde_json::to_value(&itself).unwrap(),
            "{tool}"
        );
    }
    assert!(text(&call_tool(&client, "ev_get-sum", json!({"a": 2, "b": 3})).await).contains('5'));

    // Arguments are checked against the server's schema before it sees them.
    let error = fails(&client, "ev_get-sum", json!({"a": "two", "b": 3})).await;
    assert!(error.contains('a'), "{error}");

    // The child sees the variables its manifest gives it, and none of plugboard's keys.
    let env = text(&call_tool(&client, "ev_get-env", json!({})).await);
    assert!(env.contains("hello world"), "{env}");
    assert!(!env.contains("sk-not-for-the-upstream"), "{env}");
    assert!(env.contains("PATH"), "{env}");

    direct.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_server_that_dies_is_started_again_and_none_is_left_behind() {
    let fx = fixture("");
    let folder = fx.plugins().join("everything");
    let (client, plugboard) = fx.stdio(&[]).await;
    let children = processes_in(&folder);
    assert_eq!(children.len(), 1, "one child: {children:?}");
    assert!(text(&call_tool(&client, "ev_echo", json!({"message": "one"})).await).contains("one"));

    // Killed: its tools stay listed; calls fail with the reason until it is back, then work.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(children[0] as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_for("the first child gone", || {
        !processes_in(&folder).contains(&children[0])
    })
    .await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "ev_echo"), "still listed");
    let mut said_why = false;
    let mut said_when = false;
    let mut back = false;
    for _ in 0..400 {
        let result = call_tool(&client, "ev_echo", json!({"message": "two"})).await;
        if result.is_error == Some(true) {
            let why = text(&result);
            assert!(
                why.contains("not running") && why.contains("started again"),
                "{why}"
            );
            said_why = true;
            // The supervisor's state: which attempt comes next, and when.
            said_when |= why.contains("restarting (attempt 1, next in 1 s)")
                || why.contains("restarting (attempt 1, starting now)");
        } else {
            assert!(text(&result).contains("two"));
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(back, "the server did not come back");
    assert!(said_why, "a call while it was down got no error");
    assert!(said_when, "no error said when it would be started again");
    let now = processes_in(&folder);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], children[0]);

    // plugboard exits: the child goes with it.
    client.cancel().await.unwrap();
    wait_for("plugboard to exit", || {
        !Path::new(&format!("/proc/{plugboard}")).exists()
    })
    .await;
    wait_for("no child left", || processes_in(&folder).is_empty()).await;
}

/// A server whose command is not installed, or whose `${…}` names a variable not set, is
/// `unconfigured` saying what to do; one that does not answer `initialize` has failed.
#[tokio::test]
async fn a_server_that_cannot_start_is_a_plugin_that_failed() {
    let fx = fixture("");
    fx.manifest(
        "missing",
        "name = \"missing\"\nkind = \"mcp\"\n[mcp]\ncommand = \"no-such-mcp-server-xyz\"\n",
    );
    fx.manifest(
        "silent",
        "name = \"silent\"\nkind = \"mcp\"\n[mcp]\ncommand = \"sleep\"\nargs = [\"60\"]\n\
         init_timeout_secs = 0.5\n",
    );
    fx.manifest(
        "keyless",
        "name = \"keyless\"\nkind = \"mcp\"\n[mcp]\ncommand = \"sleep\"\n\
         env = { TOKEN = \"${NO_SUCH_TOKEN_SET}\" }\n",
    );
    let out = fx.output(&mut fx.command(&["plugins", "--json"])).await;
    let listed: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let status = |name: &str| -> String {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["status"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        status("missing"),
        "unconfigured (install no-such-mcp-server-xyz)",
        "{listed:#}"
    );
    assert_eq!(
        status("keyless"),
        "unconfigured (set NO_SUCH_TOKEN_SET)",
        "{listed:#}"
    );
    assert!(
        status("silent").contains("did not answer initialize"),
        "{listed:#}"
    );
    assert_eq!(status("everything"), "ready", "{listed:#}");
}

trait ConfigureArgs {
    fn configure_args(self, args: &[&Path]) -> Self;
}

impl ConfigureArgs for tokio::process::Command {
    fn configure_args(mut self, args: &[&Path]) -> Self {
        self.args(args);
        self
    }
}

/// The upstream's progress reaches the client that made the call, under that client's token;
/// a call cancelled by its client is dropped upstream, and the plugin serves on.
#[tokio::test]
async fn progress_reaches_the_caller_and_cancellation_goes_upstream() {
    use rmcp::{
        model::{ClientRequest, Request, ServerResult},
        service::PeerRequestOptions,
    };
    let fx = fixture("");
    let (client, _) = fx.stdio(&[]).await;
    let call = |steps: u32, duration: f64| {
        ClientRequest::CallToolRequest(Request::new(crate::scenario::call(
            "ev_trigger-long-running-operation",
            json!({"duration": duration, "steps": steps}),
        )))
    };
    let handle = client
        .send_cancellable_request(call(4, 0.4), PeerRequestOptions::no_options())
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let ServerResult::CallToolResult(result) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let recorder = client.service().clone();
    let heard = || -> Vec<(f64, Option<f64>)> {
        recorder
            .progress
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.progress_token == token)
            .map(|p| (p.progress, p.total))
            .collect()
    };
    // All four, though the last was sent just before the result (the client hears each
    // notification in a task of its own, so it may note them after the result).
    crate::airtable::until(
        "the four progress notifications",
        Duration::from_secs(10),
        recorder.until(|_| heard().len() >= 4),
    )
    .await;
    let seen = heard();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1].0 > w[0].0), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &(4.0, Some(4.0)), "{seen:?}");

    // Cancelled by the client: it ends, and the next call is served.
    let handle = client
        .send_cancellable_request(call(10, 30.0), PeerRequestOptions::no_options())
        .await
        .unwrap();
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    assert!(
        text(&call_tool(&client, "ev_echo", json!({"message": "after"})).await).contains("after")
    );
    client.cancel().await.unwrap();
}

/// `plugboard import claude-desktop FILE`: one manifest per server, the token moved into
/// `.env` (never printed), the manifests working as written, none replaced without --force.
#[tokio::test]
async fn a_claude_desktop_config_is_imported_in_one_command() {
    let fx = Fixture::empty();
    let token = "ghp_importedTokenValue0123456789abcdef";
    let config = json!({"mcpServers": {
        "Everything": {
            "command": "node",
            "args": [everything(), "stdio"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": token, "LOG_LEVEL": "debug"}
        },
        "remote": {
            "type": "sse",
            "url": "https://example.com/sse",
            "headers": {"Authorization": "Bearer remote-token-abcdef0123456789"}
        },
        "plugboard": {"command": "/usr/local/bin/plugboard", "args": ["serve"]}
    }});
    let file = fx.home.path().join("claude_desktop_config.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let env_file = fx.home.path().join(".env");
    std::fs::write(&env_file, "OTHER=1\n").unwrap();
    let import = |force: bool| {
        let mut args = vec![
            "--env-file".to_owned(),
            env_file.display().to_string(),
            "import".into(),
            "claude-desktop".into(),
            file.display().to_string(),
        ];
        if force {
            args.push("--force".into());
        }
        args
    };
    let args = import(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fx.output(&mut fx.command(&args)).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
    assert!(out.stdout.contains("Everything: wrote "), "{}", out.stdout);
    assert!(
        out.stdout.contains("GITHUB_PERSONAL_ACCESS_TOKEN"),
        "says what moved: {}",
        out.stdout
    );
    assert!(out.stdout.contains("remote: wrote "), "{}", out.stdout);
    assert!(!out.stdout.contains("remote-token-abcdef0123456789"));
    let remote = std::fs::read_to_string(fx.plugins().join("remote/plugin.toml")).unwrap();
    assert!(
        !remote.contains("remote-token-abcdef0123456789"),
        "{remote}"
    );
    assert!(
        remote.contains("url = \"https://example.com/sse\"")
            && remote.contains("transport = \"sse\"")
            && remote.contains("Authorization = \"Bearer ${REMOTE_TOKEN}\""),
        "{remote}"
    );
    assert!(
        out.stdout
            .contains("plugboard: skipped: this is plugboard itself")
    );

    let manifest = std::fs::read_to_string(fx.plugins().join("everything/plugin.toml")).unwrap();
    assert!(!manifest.contains(token), "{manifest}");
    assert!(
        manifest.contains("GITHUB_PERSONAL_ACCESS_TOKEN = \"${GITHUB_PERSONAL_ACCESS_TOKEN}\""),
        "{manifest}"
    );
    assert!(manifest.contains("LOG_LEVEL = \"debug\""), "{manifest}");
    let dotenv = std::fs::read_to_string(&env_file).unwrap();
    assert_eq!(
        dotenv,
        format!(
            "OTHER=1\nGITHUB_PERSONAL_ACCESS_TOKEN={token}\n\
             REMOTE_TOKEN=remote-token-abcdef0123456789\n"
        )
    );

    // The imported plugin runs, with the token from .env.
    let (client, _) = fx
        .stdio(&["--env-file", &env_file.display().to_string()])
        .await;
    let env = text(&call_tool(&client, "everything_get-env", json!({})).await);
    // It has the token; plugboard masks a value it holds as secret in whatever it returns.
    assert!(
        env.contains("\"GITHUB_PERSONAL_ACCESS_TOKEN\": \"[redacted]\""),
        "{env}"
    );
    assert!(!env.contains(token));
    client.cancel().await.unwrap();

    // Again: nothing replaced (exit status 1, saying how), unless --force.
    let out = fx.output(&mut fx.command(&args)).await;
    assert!(!out.ok);
    assert!(
        out.stdout.contains("exists (--force to replace it)"),
        "{}",
        out.stdout
    );
    let forced = import(true);
    let forced: Vec<&str> = forced.iter().map(String::as_str).collect();
    let out = fx.output(&mut fx.command(&forced)).await;
    assert!(out.ok, "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        dotenv,
        "the token is not written twice"
    );
}

/// A client with a person and a model behind it: it answers the upstream's sampling,
/// elicitation and roots requests that plugboard relays, and keeps what it hears.
#[derive(Clone, Default)]
struct Person {
    sampled: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl rmcp::ClientHandler for Person {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        rmcp::model::ClientConfig::new(
            rmcp::model::ClientCapabilities::builder()
                .enable_roots()
                .enable_sampling()
                .enable_elicitation()
                .build(),
            rmcp::model::Implementation::new("person", "1"),
        )
    }

    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _cx: rmcp::service::RequestContext<rmcp::service::RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        self.sampled
            .lock()
            .unwrap()
            .push(serde_json::to_string(&params.messages).unwrap());
        Ok(rmcp::model::CreateMessageResult::new(
            rmcp::model::SamplingMessage::assistant_text("the client's model answers"),
            "client-model".into(),
        )
        .with_stop_reason(rmcp::model::CreateMessageResult::STOP_REASON_END_TURN))
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _cx: rmcp::service::RequestContext<rmcp::service::RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        assert!(matches!(
            request,
            rmcp::model::ElicitRequestParams::FormElicitationParams { .. }
        ));
        Ok(
            rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                .with_content(json!({"name": "Ada Lovelace", "check": true})),
        )
    }

    async fn list_roots(
        &self,
        _cx: rmcp::service::RequestContext<rmcp::service::RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        let mut root = rmcp::model::Root::new("file:///home/ada/analytical-engine");
        root.name = Some("engine".into());
        Ok(rmcp::model::ListRootsResult::new(vec![root]))
    }

    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _cx: rmcp::service::NotificationContext<rmcp::service::RoleClient>,
    ) {
        self.logs
            .lock()
            .unwrap()
            .push(serde_json::to_value(&params).unwrap());
    }
}

/// A tool call that must succeed, for a client of any kind.
async fn call_as<H: rmcp::ClientHandler>(
    client: &rmcp::service::RunningService<rmcp::service::RoleClient, H>,
    tool: &str,
    arguments: Value,
) -> rmcp::model::CallToolResult {
    let result = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new(tool.to_owned())
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result
}

/// Resources, templates, prompts and completions are relayed as the server answers them
/// (prompt names under the prefix, URIs as the server gives them); the server's requests to
/// the client — sampling, elicitation, roots — reach the client whose call made them, and
/// are answered back; its log messages reach the client at the session's level.
#[tokio::test]
async fn resources_prompts_and_the_servers_requests_are_relayed() {
    let fx = fixture("");
    let person = Person::default();
    let (transport, stderr) = TokioChildProcess::builder(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_plugboard")).configure(|cmd| {
            fx.configure(cmd);
            cmd.arg("serve");
        }),
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    fx.keep("plugboard serve (person)".into(), stderr.unwrap());
    let client = person.clone().serve(transport).await.unwrap();
    let (direct_transport, _) = TokioChildProcess::builder(
        tokio::process::Command::new("node").configure_args(&[&everything(), Path::new("stdio")]),
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let direct = ().serve(direct_transport).await.unwrap();

    // Resources and templates: listed and read as the server itself answers.
    let resources = client.list_all_resources().await.unwrap();
    assert!(!resources.is_empty());
    assert_eq!(resources, direct.list_all_resources().await.unwrap());
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(!templates.is_empty());
    assert_eq!(
        templates,
        direct.list_all_resource_templates().await.unwrap()
    );
    let read = |uri: String| rmcp::model::ReadResourceRequestParams::new(uri);
    let fixed = resources[0].uri.clone();
    let from_template = templates[0].uri_template.replace("{resourceId}", "7");
    for uri in [fixed, from_template] {
        // The dynamic resources say when they were made: compared without the time.
        let undated = |r: rmcp::model::ReadResourceResult| {
            let text = serde_json::to_string(&r).unwrap();
            match text.find(" created at ") {
                Some(at) => text[..at].to_owned(),
                None => text,
            }
        };
        let through = client.read_resource(read(uri.clone())).await.unwrap();
        let itself = direct.read_resource(read(uri.clone())).await.unwrap();
        assert_eq!(undated(through), undated(itself), "{uri}");
    }
    let missing = client
        .read_resource(read("demo://resource/static/document/none.md".into()))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("none.md"), "{missing}");

    // Prompts: under the prefix, their messages as the server writes them.
    let prompts = client.list_all_prompts().await.unwrap();
    let direct_prompts = direct.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), direct_prompts.len());
    for (p, d) in prompts.iter().zip(&direct_prompts) {
        assert_eq!(p.name, format!("ev_{}", d.name));
        assert_eq!(
            (&p.description, &p.arguments),
            (&d.description, &d.arguments)
        );
    }
    let args = json!({"city": "Paris", "state": "Texas"});
    let get = |name: &str| {
        rmcp::model::GetPromptRequestParams::new(name)
            .with_arguments(args.as_object().unwrap().clone())
    };
    assert_eq!(
        client.get_prompt(get("ev_args-prompt")).await.unwrap(),
        direct.get_prompt(get("args-prompt")).await.unwrap()
    );

    // Completions, with the arguments already chosen as context.
    let complete = |name: &str, arg: &str, value: &str, context: &[(&str, &str)]| {
        let mut params = rmcp::model::CompleteRequestParams::new(
            rmcp::model::Reference::for_prompt(name),
            rmcp::model::ArgumentInfo::new(arg, value),
        );
        if !context.is_empty() {
            params.context = Some(rmcp::model::CompletionContext::with_arguments(
                context
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ));
        }
        params
    };
    let values = |r: rmcp::model::CompleteResult| r.completion.values;
    assert_eq!(
        values(
            client
                .complete(complete("ev_completable-prompt", "department", "En", &[]))
                .await
                .unwrap()
        ),
        ["Engineering"]
    );
    assert_eq!(
        values(
            client
                .complete(complete(
                    "ev_completable-prompt",
                    "name",
                    "",
                    &[("department", "Sales")]
                ))
                .await
                .unwrap()
        ),
        ["David", "Eve", "Frank"]
    );

    // The server asks the client's model, through plugboard, during a call.
    let sampled = call_as(
        &client,
        "ev_trigger-sampling-request",
        json!({"prompt": "name a prime", "maxTokens": 20}),
    )
    .await;
    assert!(
        text(&sampled).contains("the client's model answers"),
        "{sampled:?}"
    );
    assert!(person.sampled.lock().unwrap()[0].contains("name a prime"));

    // The user answers a form the server asks for.
    let elicited = call_as(&client, "ev_trigger-elicitation-request", json!({})).await;
    let said = serde_json::to_string(&elicited.content).unwrap();
    assert!(said.contains("Ada Lovelace"), "{said}");

    // The client's roots, asked during a call (at connection time nobody's call was in
    // flight, so the server was told to ask again).
    let roots = call_as(&client, "ev_get-roots-list", json!({})).await;
    assert!(
        serde_json::to_string(&roots.content)
            .unwrap()
            .contains("file:///home/ada/analytical-engine"),
        "{roots:?}"
    );

    // Log messages at the session's level: everything from debug up.
    client
        .set_level(rmcp::model::SetLevelRequestParams::new(
            rmcp::model::LoggingLevel::Debug,
        ))
        .await
        .unwrap();
    call_as(&client, "ev_toggle-simulated-logging", json!({})).await;
    wait_for("a log message from the server", || {
        person
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.to_string().contains("-level message"))
    })
    .await;
    let logs = person.logs.lock().unwrap().clone();
    assert!(logs.iter().all(|l| l["logger"] == "everything"), "{logs:?}");
    client.cancel().await.unwrap();
    direct.cancel().await.unwrap();
}

/// server-everything serving over HTTP (`streamableHttp` or `sse`) on a free port; killed
/// when dropped.
async fn everything_over_http(mode: &str) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new("node")
        .arg(everything())
        .arg(mode)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.start_kill().unwrap();
    panic!("server-everything {mode} did not listen on {port} within 10 s");
}

/// A remote server is a plugin too: over Streamable HTTP, and over the legacy HTTP+SSE
/// transport when that is all it speaks (found without being told, or named with
/// `transport = "sse"`); its tools answer as over stdio, headers are sent from variables.
#[tokio::test]
async fn a_remote_server_is_reached_over_streamable_http_or_legacy_sse() {
    let (_streamable, http_port) = everything_over_http("streamableHttp").await;
    let (_sse, sse_port) = everything_over_http("sse").await;
    for (what, url, transport) in [
        (
            "streamable",
            format!("http://127.0.0.1:{http_port}/mcp"),
            "",
        ),
        ("sse found", format!("http://127.0.0.1:{sse_port}/sse"), ""),
        (
            "sse named",
            format!("http://127.0.0.1:{sse_port}/sse"),
            "transport = \"sse\"\n",
        ),
    ] {
        let fx = Fixture::empty();
        fx.manifest(
            "remote",
            &format!(
                "name = \"remote\"\nkind = \"mcp\"\nprefix = \"rm\"\n\
                 [mcp]\nurl = {url:?}\n{transport}\
                 headers = {{ Authorization = \"Bearer ${{REMOTE_TOKEN}}\" }}\n"
            ),
        );
        let (client, _) = fx
            .stdio_env(&[], &[("REMOTE_TOKEN", "remote-token-0123456789")], None)
            .await;
        let tools = client.list_all_tools().await.unwrap();
        assert!(
            tools.iter().any(|t| t.name == "rm_get-sum"),
            "{what}: {:?}",
            tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        let sum = call_tool(&client, "rm_get-sum", json!({"a": 20, "b": 22})).await;
        assert!(text(&sum).contains("42"), "{what}: {sum:?}");
        let echo = call_tool(&client, "rm_echo", json!({"message": "über HTTP"})).await;
        assert_eq!(text(&echo), "Echo: über HTTP", "{what}");
        let resources = client.list_all_resources().await.unwrap();
        assert!(!resources.is_empty(), "{what}");
        client.cancel().await.unwrap();
    }

    // Nothing listening: the plugin failed, saying what was tried.
    let fx = Fixture::empty();
    fx.manifest(
        "remote",
        &format!(
            "name = \"remote\"\nkind = \"mcp\"\nprefix = \"rm\"\n\
             [mcp]\nurl = \"http://127.0.0.1:{}/mcp\"\ninit_timeout_secs = 5\n",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        ),
    );
    let ran = fx.output(&mut fx.command(&["plugins"])).await;
    assert!(
        ran.stdout.contains("Streamable HTTP") && ran.stdout.contains("legacy SSE"),
        "{}",
        ran.stdout
    );
}

/// The misbehaving fixture server (tests/fixture/mcp_fixture.rs), built by `cargo test` as
/// an example.
fn mcp_fixture() -> PathBuf {
    provided(
        Path::new(env!("CARGO_BIN_EXE_plugboard"))
            .parent()
            .unwrap()
            .join("examples/mcp_fixture"),
        "`cargo test` builds it (or `cargo build --example mcp_fixture`)",
    )
}

/// A home whose plugin `fx` is the fixture server (prefix `fx`), with `extra` in [mcp].
fn fixture_server(extra: &str) -> Fixture {
    let fx = Fixture::empty();
    fx.manifest(
        "fixture",
        &format!(
            "name = \"fixture\"\nkind = \"mcp\"\nprefix = \"fx\"\n\
             [mcp]\ncommand = {:?}\n{extra}",
            mcp_fixture().display().to_string()
        ),
    );
    fx
}

/// An upstream killed in the middle of a call: the call gets an error saying so, not a
/// hang; one that sends 10 MB gets it to the client whole; a flood of progress reaches the
/// caller before the result; a tool added upstream appears in the client's list.
#[tokio::test]
async fn calls_survive_an_upstream_that_crashes_floods_and_changes_its_tools() {
    let fx = fixture_server("");
    let (client, _) = fx.stdio(&[]).await;

    // Killed mid-call.
    let hung = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(rmcp::model::CallToolRequestParams::new("fx_hang"))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crash = call_tool(&client, "fx_crash", json!({})).await;
    assert_eq!(crash.is_error, Some(true), "{crash:?}");
    let hung = hung.await.unwrap();
    assert_eq!(hung.is_error, Some(true), "{hung:?}");
    assert!(
        text(&hung).contains("stopped during the call"),
        "{}",
        text(&hung)
    );

    // Back, with 10 MB in one result.
    let mut big = None;
    for _ in 0..400 {
        let result = call_tool(&client, "fx_big", json!({"bytes": 10_000_000})).await;
        if result.is_error != Some(true) {
            big = Some(result);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let big = big.expect("the fixture came back");
    assert_eq!(text(&big).len(), 10_000_000);

    // 2,000 progress notifications, all before the result.
    let call = rmcp::model::CallToolRequestParams::new("fx_flood")
        .with_arguments(json!({"count": 2000}).as_object().unwrap().clone());
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(call)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let answer = handle.await_response().await.unwrap();
    let rmcp::model::ServerResult::CallToolResult(result) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(text(&result), "flooded 2000");
    // rmcp's client runs each notification's handler on a task of its own, so the last ones
    // it read before the result may be recorded just after it: wait for them (bounded).
    let all = client
        .service()
        .until(|heard| heard.progress_of(&token).len() >= 2000);
    let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
    let heard = client.service().progress_of(&token);
    assert_eq!(heard.len(), 2000, "every progress notification");
    assert!(heard.windows(2).all(|w| w[0] < w[1]), "in order");

    // A tool added upstream is published and announced.
    call_tool(&client, "fx_add_tool", json!({"name": "late_arrival"})).await;
    wait_for_async("fx_late_arrival listed", async || {
        client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "fx_late_arrival")
    })
    .await;
    client.cancel().await.unwrap();
}

async fn wait_for_async(what: &str, done: impl AsyncFn() -> bool) {
    // A bound so a broken test fails instead of hanging; it measures nothing.
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 10 s");
}

/// A server that never answers `initialize` fails its plugin after `init_timeout_secs`,
/// one slow to answer joins when it does (clients are served meanwhile, and get
/// `list_changed`), and the other plugins serve; one that crashes at every start is retried with back-off,
/// attempt after attempt, its tools answering why.
#[tokio::test]
async fn a_hung_initialize_and_a_crash_loop_hold_up_nothing_else() {
    let fx = fixture_server("init_timeout_secs = 1\nenv = { FIXTURE_HANG_INIT = \"1\" }\n");
    fx.manifest(
        "other",
        &format!(
            "name = \"other\"\nkind = \"mcp\"\nprefix = \"ok\"\n[mcp]\ncommand = {:?}\n",
            mcp_fixture().display().to_string()
        ),
    );
    fx.manifest(
        "late",
        &format!(
            "name = \"late\"\nkind = \"mcp\"\nprefix = \"late\"\n[mcp]\ncommand = {:?}\n\
             env = {{ FIXTURE_INIT_DELAY_MS = \"4000\" }}\n",
            mcp_fixture().display().to_string()
        ),
    );
    let (client, _) = fx.stdio(&[]).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "ok_echo"));
    assert!(!tools.iter().any(|t| t.name.starts_with("fx_")));
    // Served without the server still starting; it joins when it answers.
    assert!(
        !tools.iter().any(|t| t.name.starts_with("late_")),
        "served before the late server was up"
    );
    let starting = call_tool(&client, "ok_echo", json!({"text": "meanwhile"})).await;
    assert_eq!(text(&starting), "meanwhile");
    wait_for_async("the late server's tools", async || {
        client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "late_echo")
    })
    .await;
    assert_eq!(
        text(&call_tool(&client, "late_echo", json!({"text": "joined"})).await),
        "joined"
    );
    let echo = call_tool(&client, "ok_echo", json!({"text": "still here"})).await;
    assert_eq!(text(&echo), "still here");
    client.cancel().await.unwrap();
    let plugins = fx.output(&mut fx.command(&["plugins"])).await;
    assert!(
        plugins
            .stdout
            .contains("did not answer initialize within 1 s"),
        "{}",
        plugins.stdout
    );

    // Up once, then crashing at every start: attempts count up, waits double.
    let flag = tempfile::NamedTempFile::new().unwrap();
    let crash = fixture_server(&format!(
        "env = {{ FIXTURE_CRASH_FILE = {:?} }}\n",
        flag.path().display().to_string()
    ));
    let (client, _) = crash.stdio(&[]).await;
    assert_eq!(
        text(&call_tool(&client, "fx_echo", json!({"text": "up"})).await),
        "up"
    );
    std::fs::write(flag.path(), "crash from now on").unwrap();
    call_tool(&client, "fx_crash", json!({})).await;
    let mut seen = BTreeSet::new();
    let mut said_stderr = false;
    for _ in 0..400 {
        let why = text(&call_tool(&client, "fx_echo", json!({"text": "x"})).await);
        if let Some(at) = why.find("restarting (attempt ") {
            let n: String = why[at + 20..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            seen.insert(n.parse::<u32>().unwrap());
            // What the child said on its way out, when it was read in time.
            said_stderr |= why.contains("crashing at start as told");
        }
        if seen.contains(&3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen.contains(&3), "attempts seen: {seen:?}");
    assert!(said_stderr, "no error carried the child's last words");
    client.cancel().await.unwrap();
}

/// Hot reload without SIGHUP: a manifest added, changed or a variable set in `.env` is seen
/// by the running server (the plugins folder and `.env` are watched); only the changed plugin
/// restarts, and the client hears `list_changed`.
#[tokio::test]
async fn a_changed_manifest_or_env_reloads_only_its_plugin() {
    let fx = fixture_server("");
    let env_file = fx.home.path().join(".env");
    std::fs::write(&env_file, "UNRELATED=1\n").unwrap();
    let log = fx.home.path().join("serve.log");
    let (client, _) = fx
        .stdio_env(
            &["--env-file", &env_file.display().to_string()],
            &[],
            Some(&log),
        )
        .await;
    let fixture_dir = fx.plugins().join("fixture");
    let first = processes_in(&fixture_dir);
    assert_eq!(first.len(), 1, "{first:?}");
    let names = async || -> BTreeSet<String> {
        client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    };
    assert!(names().await.contains("fx_echo"));

    // A new plugin, needing a variable that is not set yet.
    fx.manifest(
        "second",
        &format!(
            "name = \"second\"\nkind = \"mcp\"\nprefix = \"two\"\n[mcp]\ncommand = {:?}\n\
             env = {{ TOKEN = \"${{SECOND_TOKEN}}\" }}\n",
            mcp_fixture().display().to_string()
        ),
    );
    std::fs::write(
        &env_file,
        "UNRELATED=1\nSECOND_TOKEN=second-token-0123456789\n",
    )
    .unwrap();
    wait_for_async("the second plugin's tools", async || {
        names().await.contains("two_echo")
    })
    .await;
    assert_eq!(
        text(&call_tool(&client, "two_echo", json!({"text": "hot"})).await),
        "hot"
    );
    assert_eq!(
        processes_in(&fixture_dir),
        first,
        "the first plugin was not restarted"
    );

    // The first plugin's manifest changes: it restarts, with its new filter.
    fx.manifest(
        "fixture",
        &format!(
            "name = \"fixture\"\nkind = \"mcp\"\nprefix = \"fx\"\n[mcp]\ncommand = {:?}\n\
             exclude_tools = [\"echo\"]\n",
            mcp_fixture().display().to_string()
        ),
    );
    wait_for_async("fx_echo gone", async || !names().await.contains("fx_echo")).await;
    let now = names().await;
    assert!(
        now.contains("fx_noop") && now.contains("two_echo"),
        "{now:?}"
    );
    wait_for("the first plugin's new child", || {
        let now = processes_in(&fixture_dir);
        now.len() == 1 && now != first
    })
    .await;
    // Reading the manifests is no change: nothing reloads until something changes (an
    // earlier watcher counted its own reads as changes and reloaded every 300 ms).
    let reloads = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("changed: reloading")
            .count()
    };
    let settled = reloads();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reloads(), settled, "reloads with nothing changed");
    client.cancel().await.unwrap();
}

/// A server that stops answering (its process alive, nothing read) is found by the ping
/// health check, killed with its group and started again; the call it was stuck on gets an
/// error, and the tools work again.
#[tokio::test]
async fn a_hung_server_is_found_by_ping_and_restarted() {
    let fx = fixture_server("ping_secs = 0.5\n");
    let folder = fx.plugins().join("fixture");
    let (client, _) = fx.stdio(&[]).await;
    let first = processes_in(&folder);
    assert_eq!(first.len(), 1, "{first:?}");
    let frozen = call_tool(&client, "fx_freeze", json!({})).await;
    assert_eq!(frozen.is_error, Some(true), "{frozen:?}");
    assert!(text(&frozen).contains("not running"), "{}", text(&frozen));
    let mut back = None;
    for _ in 0..400 {
        let result = call_tool(&client, "fx_echo", json!({"text": "thawed"})).await;
        if result.is_error != Some(true) {
            back = Some(result);
            break;
        }
        let why = text(&result);
        assert!(
            why.contains("stopped answering") || why.contains("restarting"),
            "{why}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(text(&back.expect("back after the restart")), "thawed");
    let now = processes_in(&folder);
    assert!(
        !now.contains(&first[0]),
        "the hung child was killed: {now:?}"
    );
    client.cancel().await.unwrap();
}

/// `lazy = true`: the first run starts the server to learn its tools and keeps them; the next
/// publishes them without starting it, and the first call starts it (and waits for it).
#[tokio::test]
async fn a_lazy_server_starts_with_its_first_call() {
    let fx = fixture_server("lazy = true\n");
    let folder = fx.plugins().join("fixture");
    let (client, _) = fx.stdio(&[]).await;
    assert_eq!(processes_in(&folder).len(), 1, "the first run starts it");
    client.cancel().await.unwrap();
    wait_for("the first run's child gone", || {
        processes_in(&folder).is_empty()
    })
    .await;

    let (client, _) = fx.stdio(&[]).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(
        tools.iter().any(|t| t.name == "fx_echo"),
        "listed from the last run"
    );
    assert!(
        processes_in(&folder).is_empty(),
        "not started before its first call"
    );
    let plugins = fx.output(&mut fx.command(&["plugins"])).await;
    assert!(plugins.stdout.contains("fixture"), "{}", plugins.stdout);
    let echo = call_tool(&client, "fx_echo", json!({"text": "woken"})).await;
    assert_eq!(text(&echo), "woken");
    assert_eq!(processes_in(&folder).len(), 1);
    client.cancel().await.unwrap();
}

/// `--tool-discovery`: a client sees three tools instead of the catalog; through them it
/// finds, describes and calls every tool it would otherwise see, with the same results.
#[tokio::test]
async fn discovery_mode_shows_three_tools_and_reaches_every_one() {
    let fx = fixture("");
    fx.manifest(
        "fixture",
        &format!(
            "name = \"fixture\"\nkind = \"mcp\"\nprefix = \"fx\"\n[mcp]\ncommand = {:?}\n",
            mcp_fixture().display().to_string()
        ),
    );
    let (direct, _) = fx.stdio(&[]).await;
    let all = direct.list_all_tools().await.unwrap();
    assert!(all.len() > 15, "{}", all.len());
    let (client, _) = fx.stdio(&["--tool-discovery"]).await;
    let shown = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = shown.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "plugboard_find_tools",
            "plugboard_describe_tool",
            "plugboard_call_tool"
        ]
    );
    let bytes = |tools: &[rmcp::model::Tool]| serde_json::to_string(tools).unwrap().len();
    assert!(
        bytes(&shown) * 5 < bytes(&all),
        "{} bytes shown against {} for the catalog",
        bytes(&shown),
        bytes(&all)
    );

    let found = call_tool(
        &client,
        "plugboard_find_tools",
        json!({"query": "sum of two numbers"}),
    )
    .await;
    let found = found.structured_content.unwrap();
    assert_eq!(found["tools"][0]["name"], "ev_get-sum", "{found:#}");
    let described = call_tool(
        &client,
        "plugboard_describe_tool",
        json!({"name": "ev_get-sum"}),
    )
    .await;
    let sum = all.iter().find(|t| t.name == "ev_get-sum").unwrap();
    assert_eq!(
        described.structured_content.unwrap(),
        serde_json::to_value(sum).unwrap()
    );
    let through = call_tool(
        &client,
        "plugboard_call_tool",
        json!({"name": "ev_get-sum", "arguments": {"a": 2, "b": 3}}),
    )
    .await;
    let itself = call_tool(&direct, "ev_get-sum", json!({"a": 2, "b": 3})).await;
    assert_eq!(
        serde_json::to_value(&through).unwrap(),
        serde_json::to_value(&itself).unwrap()
    );
    let echoed = call_tool(
        &client,
        "plugboard_call_tool",
        json!({"name": "fx_echo", "arguments": {"text": "found"}}),
    )
    .await;
    assert_eq!(text(&echoed), "found");

    // What is wrong comes back as the tool's error, saying what to do.
    let unknown = fails(
        &client,
        "plugboard_call_tool",
        json!({"name": "ev_no_such"}),
    )
    .await;
    assert!(unknown.contains("find_tools"), "{unknown}");
    let bad = fails(
        &client,
        "plugboard_call_tool",
        json!({"name": "ev_get-sum", "arguments": {"a": "two", "b": 3}}),
    )
    .await;
    let bad_direct = fails(&direct, "ev_get-sum", json!({"a": "two", "b": 3})).await;
    assert_eq!(bad, bad_direct);
    client.cancel().await.unwrap();
    direct.cancel().await.unwrap();
}

/// `@modelcontextprotocol/server-filesystem` (from npm, pinned): its tools under the prefix,
/// its annotations deciding what `--read-only` publishes, its own refusals relayed as tool
/// errors.
#[tokio::test]
async fn the_reference_filesystem_server_is_hosted_with_its_own_rules() {
    let server = provided(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/upstreams/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js",
        ),
        "run `npm ci --prefix tests/upstreams` (as .ci/run does)",
    );
    let fx = Fixture::empty();
    let shared = fx.data().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("notes.md"), "# Notes\nhosted\n").unwrap();
    std::fs::write(fx.data().join("private.txt"), "not shared").unwrap();
    fx.manifest(
        "filesystem",
        &format!(
            "name = \"filesystem\"\nkind = \"mcp\"\nprefix = \"fs\"\n[mcp]\ncommand = \"node\"\n\
             args = [{:?}, {:?}]\n",
            server.display().to_string(),
            shared.display().to_string()
        ),
    );
    let (client, _) = fx.stdio(&[]).await;
    let names: BTreeSet<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    for name in [
        "fs_read_text_file",
        "fs_write_file",
        "fs_list_allowed_directories",
    ] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    let path = |name: &str| shared.join(name).display().to_string();
    let read = call_tool(
        &client,
        "fs_read_text_file",
        json!({"path": path("notes.md")}),
    )
    .await;
    assert!(text(&read).contains("hosted"), "{read:?}");
    let written = call_tool(
        &client,
        "fs_write_file",
        json!({"path": path("new.md"), "content": "written through plugboard"}),
    )
    .await;
    assert_ne!(written.is_error, Some(true), "{written:?}");
    assert_eq!(
        std::fs::read_to_string(shared.join("new.md")).unwrap(),
        "written through plugboard"
    );
    // Its own rule: nothing outside the folders it was given.
    let outside = fx.data().join("private.txt").display().to_string();
    let refused = fails(&client, "fs_read_text_file", json!({"path": outside})).await;
    assert!(!refused.contains("not shared"), "{refused}");
    client.cancel().await.unwrap();

    // --read-only keeps what the server marks read-only, and nothing it does not.
    let (client, _) = fx.stdio(&["--read-only"]).await;
    let tools = client.list_all_tools().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains("fs_read_text_file"), "{names:?}");
    assert!(
        !names.contains("fs_write_file") && !names.contains("fs_move_file"),
        "{names:?}"
    );
    assert!(
        tools
            .iter()
            .all(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true)),
        "only tools the server marks read-only"
    );
    client.cancel().await.unwrap();
}

/// `tool_discovery = true` in one manifest: that plugin's tools are found through the
/// discovery tools, the others' are listed as they are.
#[tokio::test]
async fn one_plugin_behind_discovery_the_others_listed() {
    let fx = fixture("");
    let manifest = std::fs::read_to_string(fx.plugins().join("everything/plugin.toml")).unwrap();
    // A key of the manifest itself, before its [mcp] table.
    fx.manifest(
        "everything",
        &manifest.replacen("[mcp]", "tool_discovery = true\n[mcp]", 1),
    );
    fx.manifest(
        "fixture",
        &format!(
            "name = \"fixture\"\nkind = \"mcp\"\nprefix = \"fx\"\n[mcp]\ncommand = {:?}\n",
            mcp_fixture().display().to_string()
        ),
    );
    let (client, _) = fx.stdio(&[]).await;
    let names: BTreeSet<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        names.contains("fx_echo") && names.contains("plugboard_find_tools"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("ev_")), "{names:?}");
    let found = call_tool(&client, "plugboard_find_tools", json!({"query": "sum"})).await;
    assert_eq!(
        found.structured_content.unwrap()["tools"][0]["name"],
        "ev_get-sum"
    );
    let sum = call_tool(
        &client,
        "plugboard_call_tool",
        json!({"name": "ev_get-sum", "arguments": {"a": 20, "b": 22}}),
    )
    .await;
    assert!(text(&sum).contains("42"), "{sum:?}");
    client.cancel().await.unwrap();
}

/// A client's `resources/subscribe` reaches the hosted server, counted over clients: the
/// server is asked once, stays subscribed while anyone is, and is told to stop when the last
/// subscriber unsubscribes or its session ends. Its updates reach the subscribers, and a
/// server started again after a crash is subscribed again.
#[tokio::test]
async fn resource_subscriptions_reach_the_server_and_its_updates_the_subscribers() {
    use rmcp::model::{SubscribeRequestParams, UnsubscribeRequestParams};
    const COUNTER: &str = "fixture://counter";

    let fx = fixture_server("");
    let (_child, url) = fx.http(&[]).await;
    let connect = async || {
        let transport =
            rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
        crate::support::Recorder::default()
            .serve(transport)
            .await
            .expect("initialize over HTTP")
    };
    let (a, b, c) = (connect().await, connect().await, connect().await);
    let upstream_subscriptions = async |client: &rmcp::service::RunningService<
        rmcp::RoleClient,
        crate::support::Recorder,
    >| {
        let listed = text(&call_tool(client, "fx_subscriptions", json!({})).await);
        serde_json::from_str::<Vec<String>>(&listed).unwrap()
    };
    let resources = a.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == COUNTER), "{resources:?}");
    assert!(upstream_subscriptions(&a).await.is_empty());

    a.subscribe(SubscribeRequestParams::new(COUNTER))
        .await
        .unwrap();
    wait_for_async("the server subscribed", async || {
        upstream_subscriptions(&a).await == [COUNTER]
    })
    .await;
    b.subscribe(SubscribeRequestParams::new(COUNTER))
        .await
        .unwrap();
    a.unsubscribe(UnsubscribeRequestParams::new(COUNTER))
        .await
        .unwrap();
    // b still listens.
    assert_eq!(upstream_subscriptions(&a).await, [COUNTER]);

    // The server's update reaches the subscriber.
    call_tool(&a, "fx_touch", json!({})).await;
    b.service()
        .until(|heard| heard.updated.lock().unwrap().iter().any(|u| u == COUNTER))
        .await;

    // The last subscriber's session ends: the server is told.
    b.cancel().await.unwrap();
    wait_for_async("the server unsubscribed", async || {
        upstream_subscriptions(&a).await.is_empty()
    })
    .await;

    // Subscribed again after the server crashed and was started again.
    c.subscribe(SubscribeRequestParams::new(COUNTER))
        .await
        .unwrap();
    wait_for_async("the server subscribed", async || {
        upstream_subscriptions(&c).await == [COUNTER]
    })
    .await;
    call_tool(&c, "fx_crash", json!({})).await;
    wait_for_async("the restarted server subscribed", async || {
        let listed = call_tool(&c, "fx_subscriptions", json!({})).await;
        listed.is_error != Some(true)
            && serde_json::from_str::<Vec<String>>(&text(&listed)).unwrap() == [COUNTER]
    })
    .await;
    call_tool(&c, "fx_touch", json!({})).await;
    c.service()
        .until(|heard| heard.updated.lock().unwrap().iter().any(|u| u == COUNTER))
        .await;
    assert!(a.service().updated.lock().unwrap().is_empty());
    a.cancel().await.unwrap();
    c.cancel().await.unwrap();
}

/// A client whose roots are what it was last given.
#[derive(Clone, Default)]
struct Folders(Arc<Mutex<Vec<String>>>);

impl rmcp::ClientHandler for Folders {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        rmcp::model::ClientConfig::new(
            rmcp::model::ClientCapabilities::builder()
                .enable_roots()
                .enable_roots_list_changed()
                .build(),
            rmcp::model::Implementation::new("folders", "1"),
        )
    }

    async fn list_roots(
        &self,
        _cx: rmcp::service::RequestContext<rmcp::service::RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        let roots = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(rmcp::model::Root::new)
            .collect();
        Ok(rmcp::model::ListRootsResult::new(roots))
    }
}

/// A client's `notifications/roots/list_changed` reaches the hosted server, and the roots it
/// asks for on hearing it (outside any call) are that client's.
#[tokio::test]
async fn a_clients_roots_change_reaches_the_server() {
    let fx = fixture_server("");
    let folders = Folders::default();
    let mut cmd = fx.command(&["serve"]);
    cmd.stderr(std::process::Stdio::null());
    let client = folders
        .clone()
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap();
    let roots_heard = async || {
        let listed = text(&call_as(&client, "fx_roots", json!({})).await);
        serde_json::from_str::<Vec<String>>(&listed).unwrap()
    };
    wait_for_async("the fixture is up", async || {
        client
            .list_all_tools()
            .await
            .is_ok_and(|tools| tools.iter().any(|t| t.name == "fx_roots"))
    })
    .await;
    assert!(roots_heard().await.is_empty());

    *folders.0.lock().unwrap() = vec!["file:///home/ada/engine".into()];
    client.notify_roots_list_changed().await.unwrap();
    wait_for_async("the server asked for the new roots", async || {
        roots_heard().await == ["file:///home/ada/engine"]
    })
    .await;

    *folders.0.lock().unwrap() = vec![
        "file:///home/ada/engine".into(),
        "file:///home/ada/notes".into(),
    ];
    client.notify_roots_list_changed().await.unwrap();
    wait_for_async("the server asked again", async || {
        roots_heard().await.len() == 2
    })
    .await;
    client.cancel().await.unwrap();
}

/// A remote server that restarts has forgotten plugboard's session: while it is down a call
/// gets a clear error (not a hang), and once it is back plugboard reaches it again (a new
/// session) without being restarted itself.
#[tokio::test]
async fn a_remote_server_that_restarts_is_reached_again() {
    let upstream = Fixture::empty();
    upstream.manifest("testkit", "name = \"testkit\"\nkind = \"builtin\"\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = async || {
        let mut child = upstream
            .command(&["serve", "--http", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        upstream.listening_url(&mut child).await;
        child
    };
    let mut first = start().await;
    let fx = Fixture::empty();
    fx.manifest(
        "remote",
        &format!(
            "name = \"remote\"\nkind = \"mcp\"\nprefix = \"up\"\n\
             [mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\ninit_timeout_secs = 5\n"
        ),
    );
    let (client, _) = fx.stdio(&[]).await;
    let echo = async || {
        call_tool(
            &client,
            "up_testkit_echo",
            json!({"text": "again", "repeat": 1}),
        )
        .await
    };
    wait_for_async("the remote tools listed", async || {
        client
            .list_all_tools()
            .await
            .is_ok_and(|tools| tools.iter().any(|t| t.name == "up_testkit_echo"))
    })
    .await;
    assert_eq!(text(&echo().await), "again");

    first.kill().await.unwrap();
    first.wait().await.unwrap();
    let down = echo().await;
    assert_eq!(down.is_error, Some(true), "{down:?}");
    assert!(text(&down).contains("remote"), "{}", text(&down));

    let _second = start().await;
    wait_for_async("the restarted server answers", async || {
        let answer = echo().await;
        answer.is_error != Some(true) && text(&answer) == "again"
    })
    .await;
    client.cancel().await.unwrap();
}
