//! Observers of the call pipeline: told when a call starts and how it ended, so logs,
//! metrics and a live event stream follow every call without touching the call path.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use super::Caller;

/// A call about to run (its arguments passed the schema check or are about to be checked).
#[derive(Debug)]
pub struct CallStarted<'a> {
    pub plugin: &'a str,
    pub tool: &'a str,
    pub caller: &'a Caller,
}

/// A call that ended, however it ended.
#[derive(Debug)]
pub struct CallFinished<'a> {
    /// Empty when no plugin was reached (an unknown tool).
    pub plugin: &'a str,
    pub tool: &'a str,
    pub caller: &'a Caller,
    /// From the start of the call (schema check included) to its result.
    pub duration: Duration,
    pub outcome: Outcome,
    /// What the client was told, when the pipeline (not the tool) failed the call.
    pub error: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The tool answered.
    Ok,
    /// The tool answered with `isError: true` (an upstream 4xx, a refusal it explained).
    ToolError,
    /// The pipeline failed the call.
    Failed(ErrorKind),
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// A short label: `ok`, `tool_error`, or the error kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Failed(kind) => kind.as_str(),
        }
    }
}

/// Why the pipeline failed a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such tool (or not one this caller may see).
    UnknownTool,
    /// The arguments do not fit the tool's schema.
    InvalidArguments,
    /// It ran out of time and was stopped.
    Timeout,
    /// The client cancelled it.
    Cancelled,
    /// The handler panicked.
    Panic,
    /// The plugin cannot serve now (its MCP server is restarting, its service is down).
    Unavailable,
    /// The handler returned an error.
    Failed,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownTool => "unknown_tool",
            ErrorKind::InvalidArguments => "invalid_arguments",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Panic => "panic",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Failed => "failed",
        }
    }

    /// The kind of a handler's error: bad arguments and a plugin that cannot serve now are
    /// told apart (the REST API answers 400 and 409); everything else is `failed`.
    pub fn of(e: &super::ToolError) -> Self {
        match e {
            super::ToolError::InvalidArguments(_) => ErrorKind::InvalidArguments,
            super::ToolError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Failed,
        }
    }
}

/// Subscribes to the call pipeline. Called inline on the call path: keep it quick (count,
/// log, or hand the event to a channel).
pub trait CallObserver: Send + Sync + 'static {
    fn started(&self, call: &CallStarted<'_>) {
        let _ = call;
    }
    fn finished(&self, call: &CallFinished<'_>);
}

/// The observers of one manager. Adding one never blocks a call for long: calls read a
/// snapshot.
#[derive(Clone)]
pub struct Observers(Arc<RwLock<List>>);

/// A snapshot of the observers: calls clone the `Arc`, adding one replaces it.
type List = Arc<Vec<Arc<dyn CallObserver>>>;

impl Default for Observers {
    /// With the log observer, which writes the `tool call` log line.
    fn default() -> Self {
        let log: Arc<dyn CallObserver> = Arc::new(LogObserver);
        Self(Arc::new(RwLock::new(Arc::new(vec![log]))))
    }
}

impl Observers {
    pub fn add(&self, observer: Arc<dyn CallObserver>) {
        let mut list = self.0.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**list).clone();
        next.push(observer);
        *list = Arc::new(next);
    }

    fn snapshot(&self) -> List {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn started(&self, call: &CallStarted<'_>) {
        for o in self.snapshot().iter() {
            o.started(call);
        }
    }

    pub(crate) fn finished(&self, call: &CallFinished<'_>) {
        for o in self.snapshot().iter() {
            o.finished(call);
        }
    }
}

/// One structured log line per call.
struct LogObserver;

impl CallObserver for LogObserver {
    fn finished(&self, call: &CallFinished<'_>) {
        let ms = call.duration.as_secs_f64() * 1000.0;
        let face = call.caller.face.as_str();
        let client = call.caller.client.as_deref().unwrap_or("");
        match call.error {
            None => tracing::info!(
                plugin = %call.plugin, tool = %call.tool, face, client, ms,
                ok = call.outcome.is_ok(), "tool call"
            ),
            Some(error) => tracing::info!(
                plugin = %call.plugin, tool = %call.tool, face, client, ms, ok = false,
                outcome = call.outcome.as_str(), error = %error, "tool call"
            ),
        }
    }
}
