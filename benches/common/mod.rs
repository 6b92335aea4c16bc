//! What every benchmark needs: the release binary it measures, and a plain stdio MCP client.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// Build `plugboard` in release mode and return its path.
pub fn binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "plugboard"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "release build failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/plugboard")
}

/// A home whose plugins folder holds only the testkit plugin (its echo is the no-op call).
#[allow(dead_code)] // not every bench uses every helper
pub fn testkit_home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("plugins/testkit/plugin.toml");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(manifest, "name = \"testkit\"\nkind = \"builtin\"\n").unwrap();
    dir
}

/// `plugboard serve` (or any MCP server) on stdio, spoken to line by line: initialized on
/// start, then requests answered in order.
#[allow(dead_code)] // not every bench uses every method
pub struct McpStdio {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

#[allow(dead_code)]
impl McpStdio {
    pub async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut server = Self {
            _child: child,
            stdin,
            stdout,
            next_id: 1,
        };
        server
            .request(json!({"method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"}}}))
            .await;
        server
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self._child.id().expect("running")
    }

    pub async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Send a request; its answer as the line that carried it.
    pub async fn request_line(&mut self, mut message: Value) -> String {
        let id = self.next_id;
        self.next_id += 1;
        message["jsonrpc"] = "2.0".into();
        message["id"] = id.into();
        self.send(message).await;
        loop {
            let line = self.stdout.next_line().await.unwrap().expect("a reply");
            let reply: Value = serde_json::from_str(&line).unwrap();
            if reply["id"] == id {
                return line;
            }
        }
    }

    pub async fn request(&mut self, message: Value) -> Value {
        serde_json::from_str(&self.request_line(message).await).unwrap()
    }

    /// The `tools/list` answer: (tools, bytes of the JSON-RPC message).
    pub async fn tools(&mut self) -> (usize, usize) {
        let line = self.request_line(json!({"method": "tools/list"})).await;
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert!(
            reply["result"]["nextCursor"].is_null(),
            "one page of tools expected"
        );
        (
            reply["result"]["tools"].as_array().unwrap().len(),
            line.len(),
        )
    }

    pub async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let reply = self
            .request(
                json!({"method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
            )
            .await;
        let result = &reply["result"];
        assert_ne!(result["isError"], true, "{tool} failed: {reply}");
        result["structuredContent"].clone()
    }
}

/// Start `command` (a `plugboard serve --http 127.0.0.1:0`) with its stderr read for the
/// address it listens on, and drained afterwards; the child and its base URL.
#[allow(dead_code)] // not every bench serves HTTP
pub async fn serve_http(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("server announces its address");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}
