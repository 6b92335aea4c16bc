//! Shared test fixtures: a plugins folder with real manifests, a data folder for `files`,
//! the built binary launched as users launch it, and rmcp clients for every transport.
//!
//! Every binary a fixture launches has its stderr (and a CLI run its stdout) kept and checked
//! for the suite's fake secrets ([`secrets`], from `tests/secrets.txt`): a run is checked when
//! it ends, a server when its fixture drops. A leak fails the test, quoting the line; a failing
//! test shows what the servers wrote. With `PLUGBOARD_TEST_OUTPUT=<dir>` set, all of it (and the
//! notifications a [`Recorder`] heard) is also saved there, one file per capture, for
//! `scripts/secret-scan` to search after the run.

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
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::Notify,
};

// Each fake carries its own copy: a bench includes one fake without the others.
#[path = "../support/output.rs"]
#[allow(clippy::duplicate_mod)]
mod output;

pub const BIN: &str = env!("CARGO_BIN_EXE_plugboard");

/// Every fake key and token the suite and the benches hand the binary, one a line
/// (`tests/secrets.txt`, which `scripts/secret-scan` reads too). None may appear in anything
/// the binary writes: not in a log line, an error, or a CLI's output.
const SECRETS_TXT: &str = include_str!("../secrets.txt");

/// The entries of [`SECRETS_TXT`]: its lines without blanks and `#` comments.
pub fn secrets() -> impl Iterator<Item = &'static str> {
    SECRETS_TXT
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// The lines of `text` that contain one of [`secrets`].
pub fn leaks(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| secrets().any(|secret| line.contains(secret)))
        .collect()
}

/// Fail, quoting the line, if `text` (what `what` wrote) holds one of [`secrets`].
pub fn assert_no_secrets(what: &str, text: &str) {
    let leaked = leaks(text);
    assert!(
        leaked.is_empty(),
        "{what} leaked a secret:\n{}",
        leaked.join("\n")
    );
}

/// What a launched server has written to stderr so far.
struct Log {
    what: String,
    text: Arc<Mutex<String>>,
}

/// A finished CLI run, already checked for secrets.
pub struct Ran {
    pub ok: bool,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A temporary home: `plugins/` with manifests, `data/` for the files plugin, and a file
/// `outside.txt` next to `data/` that no tool may ever read.
pub struct Fixture {
    pub home: tempfile::TempDir,
    /// The stderr of every server this fixture launched, checked when it drops.
    logs: Mutex<Vec<Log>>,
    /// Files the servers' stderr went to (`stdio_env`, [`Fixture::log_file`]), checked when
    /// it drops.
    log_files: Mutex<Vec<PathBuf>>,
    /// Whether dropping saves the captures (`PLUGBOARD_TEST_OUTPUT`): off only where a test
    /// plants a secret on purpose, which the scan would rightly report.
    save: bool,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let mut found = Vec::new();
        let logs = self.logs.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(String, String)> = logs
            .iter()
            .map(|log| {
                let text = log.text.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (log.what.clone(), text)
            })
            .collect();
        let files = self.log_files.get_mut().unwrap_or_else(|e| e.into_inner());
        for path in files.iter() {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            all.push((format!("the server logging to {}", path.display()), text));
        }
        for (what, text) in &all {
            if self.save {
                output::save("server-stderr", what, text);
            }
            if std::thread::panicking() {
                // The test failed: show what the servers said.
                eprintln!("=== stderr of {what} ===\n{text}=== end ===");
            }
            for line in leaks(text) {
                found.push(format!("{what}: {line}"));
            }
        }
        if !found.is_empty() && !std::thread::panicking() {
            panic!("a secret leaked to the output:\n{}", found.join("\n"));
        }
    }
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
        Self {
            home,
            logs: Mutex::default(),
            log_files: Mutex::default(),
            save: true,
        }
    }

    /// Run `cmd` to its end and check everything it wrote for secrets.
    pub async fn output(&self, cmd: &mut Command) -> Ran {
        let out = self.run(cmd).await;
        Ran {
            ok: out.status.success(),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// [`Fixture::output`] for a test that reads the bytes: run `cmd` to its end, keep what it
    /// wrote (`PLUGBOARD_TEST_OUTPUT`) and check it for secrets.
    pub async fn run(&self, cmd: &mut Command) -> std::process::Output {
        let args: Vec<_> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let out = cmd.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        output::save(
            "cli",
            &format!("plugboard {args:?} ({})", out.status),
            &format!("--- stdout\n{stdout}\n--- stderr\n{stderr}"),
        );
        assert_no_secrets("the CLI's stdout", &stdout);
        assert_no_secrets("the CLI's stderr", &stderr);
        out
    }

    /// Keep what a server writes to `stderr`, to check it when the fixture drops.
    pub fn keep(&self, what: String, stderr: impl AsyncRead + Unpin + Send + 'static) {
        let text = Arc::new(Mutex::new(String::new()));
        self.logs.lock().unwrap().push(Log {
            what,
            text: text.clone(),
        });
        tokio::spawn(drain(BufReader::new(stderr).lines(), text));
    }

    /// Check (and keep) `text`, what `what` wrote that a test read itself, when the fixture
    /// drops.
    pub fn keep_text(&self, what: &str, text: &str) {
        let kept = Arc::new(Mutex::new(text.to_owned()));
        self.logs.lock().unwrap().push(Log {
            what: what.to_owned(),
            text: kept,
        });
    }

    /// Check (and keep) the file at `path` when the fixture drops: a server's stderr that a
    /// test sent to a file of its own.
    pub fn log_file(&self, path: &Path) {
        self.log_files.lock().unwrap().push(path.to_path_buf());
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

    pub fn configure(&self, cmd: &mut Command) {
        cmd.current_dir(self.home.path())
            .env("PLUGBOARD_PLUGINS_DIR", self.plugins())
            // State (checkpoints, a lazy server's tools) stays in the test's home.
            .env("XDG_STATE_HOME", self.home.path().join("state"))
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
        let (transport, stderr) = TokioChildProcess::builder(Command::new(BIN).configure(|cmd| {
            self.configure(cmd);
            cmd.arg("serve").args(extra);
        }))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let pid = transport.id().unwrap();
        self.keep(
            format!("plugboard serve {extra:?} (pid {pid})"),
            stderr.expect("stderr piped"),
        );
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
        let file = stderr.map(Path::to_path_buf);
        let stderr = match &file {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::piped(),
        };
        let (transport, piped) = TokioChildProcess::builder(Command::new(BIN).configure(|cmd| {
            self.configure(cmd);
            cmd.envs(env.iter().copied()).arg("serve").args(extra);
        }))
        .stderr(stderr)
        .spawn()
        .unwrap();
        let pid = transport.id().unwrap();
        match (file, piped) {
            (Some(path), _) => self.log_files.lock().unwrap().push(path),
            (None, Some(piped)) => {
                self.keep(format!("plugboard serve {extra:?} (pid {pid})"), piped)
            }
            (None, None) => panic!("stderr piped"),
        }
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
        let url = self.listening_url(&mut child).await;
        (child, url)
    }

    /// Read the server's stderr until it says where it listens (its URL), and keep all of it
    /// to check when the fixture drops.
    pub async fn listening_url(&self, child: &mut Child) -> String {
        let text = Arc::new(Mutex::new(String::new()));
        self.logs.lock().unwrap().push(Log {
            what: format!("plugboard serve --http (pid {})", child.id().unwrap_or(0)),
            text: text.clone(),
        });
        read_listening_url(child, text).await
    }
}

/// Read `child`'s stderr into `text` until it says where it listens; keep draining it afterwards.
async fn read_listening_url(child: &mut Child, text: Arc<Mutex<String>>) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            keep_line(&text, &line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("server exited before listening:\n{}", text.lock().unwrap());
    })
    .await
    .expect("server did not start listening within 20 s");
    tokio::spawn(drain(lines, text));
    found
}

/// Keep every line a server writes, until it closes the stream.
async fn drain<R: tokio::io::AsyncBufRead + Unpin>(
    mut lines: tokio::io::Lines<R>,
    text: Arc<Mutex<String>>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        keep_line(&text, &line);
    }
}

fn keep_line(text: &Mutex<String>, line: &str) {
    let mut text = text.lock().unwrap_or_else(|e| e.into_inner());
    text.push_str(line);
    text.push('\n');
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
#[derive(Clone)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    pub logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
    pub list_changed: Arc<Notify>,
    /// The URIs of `notifications/resources/updated`, in order.
    pub updated: Arc<Mutex<Vec<String>>>,
    /// Wakes [`Recorder::until`] after each progress, log or update notification kept.
    heard: Arc<Notify>,
    /// Saves what was heard for the secret scan when the last clone drops.
    _saved: Arc<SaveHeard>,
}

impl Default for Recorder {
    fn default() -> Self {
        let progress = Arc::default();
        let logs = Arc::default();
        Self {
            _saved: Arc::new(SaveHeard {
                progress: Arc::clone(&progress),
                logs: Arc::clone(&logs),
            }),
            progress,
            logs,
            list_changed: Arc::default(),
            updated: Arc::default(),
            heard: Arc::default(),
        }
    }
}

/// The progress and log notifications a [`Recorder`] heard: text the server wrote to its
/// client, saved (`PLUGBOARD_TEST_OUTPUT`) when it drops.
struct SaveHeard {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
}

impl Drop for SaveHeard {
    fn drop(&mut self) {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if progress.is_empty() && logs.is_empty() {
            return;
        }
        let lines: Vec<String> = progress
            .iter()
            .map(|p| serde_json::to_string(p).unwrap_or_default())
            .chain(
                logs.iter()
                    .map(|l| serde_json::to_string(l).unwrap_or_default()),
            )
            .collect();
        output::save(
            "mcp-notifications",
            "progress and log notifications a client heard",
            &(lines.join("\n") + "\n"),
        );
    }
}

impl Recorder {
    /// The progress heard for `token`, in order.
    pub fn progress_of(&self, token: &rmcp::model::ProgressToken) -> Vec<f64> {
        self.progress
            .lock()
            .unwrap()
            .iter()
            .filter(|p| &p.progress_token == token)
            .map(|p| p.progress)
            .collect()
    }

    /// Resolves once `done` holds of what was kept, checked now and after each progress or
    /// log notification (an event, not a poll).
    pub async fn until(&self, done: impl Fn(&Recorder) -> bool) {
        loop {
            let heard = self.heard.notified();
            tokio::pin!(heard);
            heard.as_mut().enable();
            if done(self) {
                return;
            }
            heard.await;
        }
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
        self.heard.notify_waiters();
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(params);
        self.heard.notify_waiters();
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.list_changed.notify_one();
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.updated.lock().unwrap().push(params.uri);
        self.heard.notify_waiters();
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

#[test]
fn the_secrets_check_catches_a_leaking_line() {
    let log = format!(
        "INFO plugboard: starting\nERROR request failed: Authorization: Bearer {}\nINFO done\n",
        crate::fake_github::TOKEN
    );
    assert_eq!(
        leaks(&log),
        [format!(
            "ERROR request failed: Authorization: Bearer {}",
            crate::fake_github::TOKEN
        )]
    );
    let caught = std::panic::catch_unwind(|| assert_no_secrets("a server", &log));
    let message = caught.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        message.contains("a server leaked a secret") && message.contains("Bearer ghp_"),
        "{message}"
    );
    assert!(leaks("INFO nothing to see\n").is_empty());

    // A fixture whose server wrote a secret fails its test when it drops.
    let mut fx = Fixture::empty();
    fx.save = false;
    let text = Arc::new(Mutex::new(String::new()));
    keep_line(&text, &format!("DEBUG key={}", crate::fake_llm::KEY));
    fx.logs.lock().unwrap().push(Log {
        what: "a fake server".into(),
        text,
    });
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fx)));
    let message = dropped.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("a fake server: DEBUG key=fake-key-0123456789"),
        "{message}"
    );
}

/// The fakes' own keys are in `tests/secrets.txt`, the one list both checks read.
#[test]
fn the_secret_list_holds_the_fakes_keys() {
    let listed: Vec<&str> = secrets().collect();
    for key in [
        crate::fake_llm::KEY,
        crate::fake_airtable::DEFAULT_TOKEN,
        crate::fake_github::TOKEN,
    ] {
        assert!(listed.contains(&key), "{key} is not in tests/secrets.txt");
    }
    assert!(
        listed.iter().all(|s| !s.starts_with('#') && s.len() >= 8),
        "entries are whole keys, long enough not to match ordinary text: {listed:?}"
    );
}
