//! Shared test fixtures: a plugins folder with real manifests, a data folder for `files`,
//! the built binary launched as users launch it, and rmcp clients for every transport.

#![allow(deprecated)] // MCP logging is marked deprecated in rmcp (SEP-2577).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{LoggingMessageNotificationParam, ProgressNotificationParam},
    service::{NotificationContext, RunningService},
    transport::{ConfigureCommandExt, TokioChildProcess},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::Notify,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_plugboard");

/// A temporary home: `plugins/` with manifests, `data/` for the files plugin, and a file
/// `outside.txt` next to `data/` that no tool may ever read.
pub struct Fixture {
    pub home: tempfile::TempDir,
}

impl Fixture {
    /// The standard set: files, testkit, and plugins that fail in each way a plugin can.
    pub fn new() -> Self {
        let fx = Self::empty();
        let data = fx.data();
        write(
            &data.join("docs/guide.md"),
            "# User Guide\n\nplugboard connects your AI to files.\nSecond line.\n",
        );
        write(&data.join("docs/notes.txt"), "alpha\nbeta\ngamma needle\n");
        write(
            &data.join("src/main.rs"),
            "fn main() {\n    println!(\"needle\");\n}\n",
        );
        write(
            &fx.home.path().join("outside.txt"),
            "TOP SECRET outside the root\n",
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink(fx.home.path().join("outside.txt"), data.join("escape.txt"))
            .unwrap();
        fx.manifest(
            "files",
            &format!(
                "name = \"files\"\nkind = \"builtin\"\n[env.PLUGBOARD_FILES_ROOTS]\n[settings]\nroots = [{:?}]\n",
                data.display().to_string()
            ),
        );
        fx.manifest(
            "testkit",
            "name = \"testkit\"\nkind = \"builtin\"\ndescription = \"test tools\"\n",
        );
        fx.manifest(
            "broken",
            "name = \"broken\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\n[settings]\nfail_init = \"the database is on fire\"\n",
        );
        fx.manifest(
            "panicky",
            "name = \"panicky\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\n[settings]\npanic_init = true\n",
        );
        fx.manifest(
            "keyed",
            "name = \"keyed\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\n[env.PLUGBOARD_TEST_API_KEY]\nrequired = true\nsecret = true\n",
        );
        fx.manifest(
            "sleepy",
            "name = \"sleepy\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\nenabled = false\n",
        );
        fx.manifest(
            "typo",
            "name = \"typo\"\nkind = \"builtin\"\nenabld = true\n",
        );
        fx
    }

    pub fn empty() -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("plugins")).unwrap();
        std::fs::create_dir_all(home.path().join("data")).unwrap();
        Self { home }
    }

    pub fn plugins(&self) -> PathBuf {
        self.home.path().join("plugins")
    }

    pub fn data(&self) -> PathBuf {
        self.home.path().join("data").canonicalize().unwrap()
    }

    pub fn manifest(&self, name: &str, text: &str) {
        write(&self.plugins().join(name).join("plugin.toml"), text);
    }

    pub fn remove_manifest(&self, name: &str) {
        std::fs::remove_dir_all(self.plugins().join(name)).unwrap();
    }

    /// The binary as users run it, with this fixture's plugins and a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        self.configure(&mut cmd);
        cmd.args(args);
        cmd
    }

    fn configure(&self, cmd: &mut Command) {
        cmd.current_dir(self.home.path())
            .env("PLUGBOARD_PLUGINS_DIR", self.plugins())
            .env_remove("PLUGBOARD_FILES_ROOTS")
            .env_remove("PLUGBOARD_TEST_API_KEY")
            .env_remove("PLUGBOARD_HTTP_TOKEN")
            .env_remove("AIRTABLE_API_KEY")
            .env_remove("AIRTABLE_BASE_URL")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .env_remove("PLUGBOARD_ENV_FILE");
        // A developer's real provider keys must not reach the tests.
        for provider in ["OPENAI", "ANTHROPIC", "GEMINI", "GOOGLE", "DEEPSEEK"] {
            for what in ["API_KEY", "BASE_URL", "MODEL"] {
                cmd.env_remove(format!("{provider}_{what}"));
            }
        }
        cmd.env_remove("RUST_LOG")
            .env("PLUGBOARD_LOG", "info")
            .kill_on_drop(true);
    }

    /// Start `plugboard serve` on stdio and connect rmcp's client to it.
    pub async fn stdio(&self, extra: &[&str]) -> (RunningService<RoleClient, Recorder>, u32) {
        let recorder = Recorder::default();
        let transport = TokioChildProcess::builder(Command::new(BIN).configure(|cmd| {
            self.configure(cmd);
            cmd.arg("serve").args(extra);
        }))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
        .0;
        let pid = transport.id().unwrap();
        let client = recorder
            .serve(transport)
            .await
            .expect("initialize over stdio");
        (client, pid)
    }

    /// Like [`Fixture::stdio`], with extra environment variables for the server, and its
    /// stderr written to `stderr` (a file) instead of discarded.
    pub async fn stdio_env(
        &self,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Option<&Path>,
    ) -> (RunningService<RoleClient, Recorder>, u32) {
        let recorder = Recorder::default();
        let stderr = match stderr {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let transport = TokioChildProcess::builder(Command::new(BIN).configure(|cmd| {
            self.configure(cmd);
            cmd.envs(env.iter().copied()).arg("serve").args(extra);
        }))
        .stderr(stderr)
        .spawn()
        .unwrap()
        .0;
        let pid = transport.id().unwrap();
        let client = recorder
            .serve(transport)
            .await
            .expect("initialize over stdio");
        (client, pid)
    }

    /// Start `plugboard serve --http 127.0.0.1:0`; returns the child and its base URL.
    pub async fn http(&self, extra: &[&str]) -> (Child, String) {
        let mut child = self
            .command(&["serve", "--http", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = listening_url(&mut child).await;
        (child, url)
    }
}

/// Read the server's stderr until it says where it listens; keep draining it afterwards.
pub async fn listening_url(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server did not start listening within 20 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn sighup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A client handler that keeps what the server sent it.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    pub logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
    pub list_changed: Arc<Notify>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(params);
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.list_changed.notify_one();
    }
}

/// The text of a result's first content block.
pub fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn args(value: serde_json::Value) -> rmcp::model::JsonObject {
    match value {
        serde_json::Value::Object(map) => map,
        _ => panic!("arguments must be an object"),
    }
}
