//! The in-process harness: the plugin manager over a [`Fixture`]'s plugins folder (manifests
//! as the binary tests write them), with an environment of the test's own (the variables the
//! binary tests hand `plugboard serve`), behind the MCP handler, and an rmcp client over an
//! in-memory duplex.
//!
//! Everything runs on the test's runtime: the manager, the plugins' HTTP clients and the
//! fakes, which must be started with `start`, not `start_in_thread`. Under
//! `#[tokio::test(start_paused = true)]` tokio's clock is then virtual for all of them: a
//! 30-second lockout, a one-minute rate-limit window or a call timeout passes at once, and a
//! test asserts the exact wait instead of a wall-clock bound. The fakes still answer over
//! loopback TCP (at `127.0.0.1`, so no DNS lookup on a blocking thread): paused time only
//! jumps ahead when nothing is ready to run, and a loopback write is readable at once.
//!
//! Timing is tested here; the binary-driven tests stay for the transports and the CLI.

use std::{collections::HashMap, sync::Arc, time::Duration};

use plugboard::{
    plugin::{Catalog, Face, Manager, ManagerConfig},
    server::McpHandler,
};
use rmcp::{ClientHandler, RoleClient, ServiceExt, service::RunningService};

use crate::support::{Fixture, Recorder};

pub type Client = RunningService<RoleClient, Recorder>;

/// A manager to start: the fixture's plugins folder, the built-in catalog, the CLI's call
/// timeout, and no environment until the test gives it one.
pub struct Server {
    config: ManagerConfig,
    /// What the plugins read as their environment, in place of the process's.
    env: HashMap<String, String>,
}

impl Server {
    pub fn new(fx: &Fixture) -> Self {
        Self {
            config: ManagerConfig {
                plugins_dir: fx.plugins(),
                // `plugboard serve`'s default `--call-timeout`.
                call_timeout: Duration::from_secs(120),
                catalog: plugboard::plugins::catalog(),
                ..ManagerConfig::default()
            },
            env: HashMap::new(),
        }
    }

    /// One more environment variable for the plugins.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (name, value) in vars {
            self = self.env(name, value);
        }
        self
    }

    /// `--call-timeout`.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// `--max-calls` and `--max-calls-per-session`.
    pub fn max_calls(mut self, server: usize, session: usize) -> Self {
        self.config.max_calls = server;
        self.config.max_calls_per_session = session;
        self
    }

    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.config.catalog = catalog;
        self
    }

    pub async fn start(self) -> Arc<Manager> {
        let env = self.env;
        Manager::start_with_env(self.config, Box::new(move || env.clone())).await
    }

    /// Start the manager and connect a [`Recorder`] to it, as `plugboard serve` on stdio.
    pub async fn client(self) -> Client {
        client(self.start().await, Face::Stdio).await
    }
}

/// A [`Recorder`] talking to `manager` on `face`.
pub async fn client(manager: Arc<Manager>, face: Face) -> Client {
    connect(McpHandler::new(manager).on(face), Recorder::default()).await
}

/// `client` talking to `handler` over an in-memory duplex.
pub async fn connect<C: ClientHandler>(
    handler: McpHandler,
    client: C,
) -> RunningService<RoleClient, C> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(server) = handler.serve(server_io).await {
            let _ = server.waiting().await;
        }
    });
    client
        .serve(client_io)
        .await
        .expect("initialize in process")
}
