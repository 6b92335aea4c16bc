//! A tool as a plugin declares it: one self-describing value (name, description, schema,
//! annotations) plus the handler that runs it.

use std::{future::Future, sync::Arc};

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, JsonObject, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::{ToolContext, ToolError, schema};

/// What a handler returns: a result the client sees as-is, or an error the manager turns into
/// an `isError: true` result that says what to fix.
pub type ToolOutcome = Result<CallToolResult, ToolError>;

/// A type-erased handler. Arguments have already been validated against the input schema.
pub type Handler =
    Arc<dyn Fn(JsonObject, ToolContext) -> BoxFuture<'static, ToolOutcome> + Send + Sync>;

/// One tool of a plugin, before the manager prefixes its name.
#[derive(Clone)]
pub struct ToolDef {
    /// Name within the plugin (`read`); published as `<prefix>_read`.
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    /// JSON Schema of the arguments: root `type: object`, inlined, portable.
    pub input_schema: Arc<JsonObject>,
    pub output_schema: Option<Arc<JsonObject>>,
    /// Every tool says whether it reads or writes, destroys, repeats safely and reaches out:
    /// clients use these to decide what needs the user's confirmation.
    pub annotations: ToolAnnotations,
    pub handler: Handler,
    /// Overrides the server's `--call-timeout` for this tool (long imports).
    pub timeout: Option<std::time::Duration>,
    /// Listed only to clients that support sampling (the tool needs the client's model).
    pub sampling_clients_only: bool,
    /// A top-level `null` argument means the argument is not given: the tool's arguments are
    /// a Rust type (an `Option` is `None` either way) whose published schema leaves `null` out
    /// of its optional arguments' types, and some models send `null` for what they leave out.
    pub null_is_absent: bool,
}

impl ToolDef {
    /// A tool whose arguments are the Rust type `A`: the schema is generated from it by
    /// schemars, and the handler receives it already deserialized.
    pub fn new<A, F, Fut>(name: &str, description: &str, hints: Hints, handler: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ToolOutcome> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |args: JsonObject, cx: ToolContext| {
            let handler = handler.clone();
            Box::pin(async move {
                // The schema check already passed; this catches what a schema cannot say.
                let args: A = serde_json::from_value(serde_json::Value::Object(args))
                    .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
                handler(args, cx).await
            })
        });
        Self {
            name: name.to_owned(),
            title: None,
            description: description.to_owned(),
            input_schema: Arc::new(schema::input_schema::<A>()),
            output_schema: None,
            annotations: hints.into(),
            handler: erased,
            timeout: None,
            sampling_clients_only: false,
            null_is_absent: true,
        }
    }

    /// A tool whose input schema is written out as JSON and published exactly so (`$schema`,
    /// `$defs`, `additionalProperties` and all); the root must be `type: object`. The handler
    /// receives the arguments as a JSON object, already validated against the schema.
    pub fn with_schema<F, Fut>(
        name: &str,
        description: &str,
        input_schema: JsonObject,
        hints: Hints,
        handler: F,
    ) -> Self
    where
        F: Fn(JsonObject, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ToolOutcome> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self {
            name: name.to_owned(),
            title: None,
            description: description.to_owned(),
            input_schema: Arc::new(input_schema),
            output_schema: None,
            annotations: hints.into(),
            handler: Arc::new(move |args, cx| {
                let handler = handler.clone();
                Box::pin(async move { handler(args, cx).await })
            }),
            timeout: None,
            sampling_clients_only: false,
            null_is_absent: false,
        }
    }

    /// Let this tool run longer (or shorter) than the server's call timeout.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// List this tool only to clients that declared the sampling capability. It stays
    /// callable by name (the CLI), where it should explain what it lacks.
    pub fn for_sampling_clients_only(mut self) -> Self {
        self.sampling_clients_only = true;
        self
    }

    pub fn with_title(mut self, title: &str) -> Self {
        self.title = Some(title.to_owned());
        self
    }

    /// Declare the shape of `structuredContent` this tool returns.
    pub fn with_output<O: JsonSchema>(mut self) -> Self {
        self.output_schema = Some(Arc::new(schema::output_schema::<O>()));
        self
    }
}

/// The four behaviour hints every tool must state. Constructors name the common cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    /// Talks to something outside this machine (an API, the web).
    pub open_world: bool,
}

impl Hints {
    /// Reads and changes nothing.
    pub const fn read_only() -> Self {
        Self {
            read_only: true,
            destructive: false,
            idempotent: true,
            open_world: false,
        }
    }
    /// Adds something new; repeating it adds it again.
    pub const fn additive() -> Self {
        Self {
            read_only: false,
            destructive: false,
            idempotent: false,
            open_world: false,
        }
    }
    /// Overwrites or deletes.
    pub const fn destructive(idempotent: bool) -> Self {
        Self {
            read_only: false,
            destructive: true,
            idempotent,
            open_world: false,
        }
    }
    pub const fn open_world(mut self) -> Self {
        self.open_world = true;
        self
    }
}

impl From<Hints> for ToolAnnotations {
    fn from(h: Hints) -> Self {
        ToolAnnotations::new()
            .read_only(h.read_only)
            .destructive(h.destructive)
            .idempotent(h.idempotent)
            .open_world(h.open_world)
    }
}
