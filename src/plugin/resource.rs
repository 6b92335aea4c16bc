//! Resources and prompts as a plugin declares them, and the completions that help a client
//! fill in their arguments.
//!
//! Resource URIs are published as the plugin gives them (a plugin picks its own scheme, e.g.
//! `airtable://`); prompt names get the plugin's prefix, like tool names.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use futures::future::BoxFuture;
use rmcp::model::{
    GetPromptResult, Prompt, PromptArgument, Resource, ResourceContents, ResourceTemplate,
};

use super::{ToolContext, ToolError};

/// What a resource read returns.
pub type ReadOutcome = Result<Vec<ResourceContents>, ToolError>;

/// Reads one resource: the requested URI and, for templates, the values of its variables.
pub type Reader = Arc<
    dyn Fn(String, BTreeMap<String, String>, ToolContext) -> BoxFuture<'static, ReadOutcome>
        + Send
        + Sync,
>;

/// Suggests values for one argument of a prompt or resource template.
pub type Completer = Arc<dyn Fn(Completion) -> BoxFuture<'static, Vec<String>> + Send + Sync>;

/// A `completion/complete` request, as the plugin sees it.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The argument (prompt argument or template variable) being completed.
    pub argument: String,
    /// What the user has typed so far.
    pub value: String,
    /// Arguments the user already filled in.
    pub context: BTreeMap<String, String>,
}

/// A resource with a fixed URI.
#[derive(Clone)]
pub struct ResourceDef {
    pub resource: Resource,
    pub reader: Reader,
}

impl ResourceDef {
    /// A resource whose contents `read` produces on each read.
    pub fn new<F, Fut>(resource: Resource, read: F) -> Self
    where
        F: Fn(ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ReadOutcome> + Send + 'static,
    {
        let read = Arc::new(read);
        Self {
            resource,
            reader: Arc::new(move |_uri, _vars, cx| {
                let read = read.clone();
                Box::pin(async move { read(cx).await })
            }),
        }
    }
}

/// A family of resources named by an RFC 6570 URI template (`test://items/{id}`).
#[derive(Clone)]
pub struct TemplateDef {
    pub template: ResourceTemplate,
    pub reader: Reader,
    pub completer: Option<Completer>,
}

impl TemplateDef {
    /// `read` receives the requested URI and the template's variables taken from it.
    pub fn new<F, Fut>(template: ResourceTemplate, read: F) -> Self
    where
        F: Fn(String, BTreeMap<String, String>, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ReadOutcome> + Send + 'static,
    {
        let read = Arc::new(read);
        Self {
            template,
            reader: Arc::new(move |uri, vars, cx| {
                let read = read.clone();
                Box::pin(async move { read(uri, vars, cx).await })
            }),
            completer: None,
        }
    }

    /// Suggest values for the template's variables.
    pub fn with_completions<F, Fut>(mut self, complete: F) -> Self
    where
        F: Fn(Completion) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<String>> + Send + 'static,
    {
        self.completer = Some(completer(complete));
        self
    }
}

/// What a prompt handler returns.
pub type PromptOutcome = Result<GetPromptResult, ToolError>;

pub type PromptHandler = Arc<
    dyn Fn(BTreeMap<String, String>, ToolContext) -> BoxFuture<'static, PromptOutcome>
        + Send
        + Sync,
>;

/// A prompt template, before the manager prefixes its name.
#[derive(Clone)]
pub struct PromptDef {
    pub prompt: Prompt,
    pub handler: PromptHandler,
    pub completer: Option<Completer>,
}

impl PromptDef {
    /// `get` receives the arguments; the manager has already checked the required ones.
    pub fn new<F, Fut>(
        name: &str,
        description: &str,
        arguments: Vec<PromptArgument>,
        get: F,
    ) -> Self
    where
        F: Fn(BTreeMap<String, String>, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PromptOutcome> + Send + 'static,
    {
        let get = Arc::new(get);
        let arguments = (!arguments.is_empty()).then_some(arguments);
        Self {
            prompt: Prompt::new(name, Some(description), arguments),
            handler: Arc::new(move |args, cx| {
                let get = get.clone();
                Box::pin(async move { get(args, cx).await })
            }),
            completer: None,
        }
    }

    pub fn with_title(mut self, title: &str) -> Self {
        self.prompt.title = Some(title.to_owned());
        self
    }

    /// Suggest values for the prompt's arguments.
    pub fn with_completions<F, Fut>(mut self, complete: F) -> Self
    where
        F: Fn(Completion) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<String>> + Send + 'static,
    {
        self.completer = Some(completer(complete));
        self
    }
}

fn completer<F, Fut>(complete: F) -> Completer
where
    F: Fn(Completion) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<String>> + Send + 'static,
{
    let complete = Arc::new(complete);
    Arc::new(move |c| {
        let complete = complete.clone();
        Box::pin(async move { complete(c).await })
    })
}

/// An RFC 6570 template of the forms resources use: literal text with `{var}` (one path
/// segment: no `/`, `?` or `#`) and `{+var}` (reserved expansion: anything, slashes
/// included). Matching is exact and anchored; values are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var { name: String, reserved: bool },
}

impl UriTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("URI template `{template}` has an unclosed `{{`"))?
                + open;
            let expr = &rest[open + 1..close];
            let (name, reserved) = match expr.strip_prefix('+') {
                Some(name) => (name, true),
                None => (expr, false),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "URI template `{template}` has `{{{expr}}}`; only {{name}} and {{+name}} are supported"
                ));
            }
            if matches!(parts.last(), Some(Part::Var { .. })) {
                return Err(format!(
                    "URI template `{template}` has two variables with nothing between them"
                ));
            }
            parts.push(Part::Var {
                name: name.to_owned(),
                reserved,
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The template's variables, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The variables' values if `uri` is an instance of this template.
    pub fn matches(&self, uri: &str) -> Option<BTreeMap<String, String>> {
        let mut vars = BTreeMap::new();
        let mut rest = uri;
        let mut parts = self.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(text) => rest = rest.strip_prefix(text.as_str())?,
                Part::Var { name, reserved } => {
                    // The value runs to the next literal (or the end).
                    let end = match parts.peek() {
                        Some(Part::Literal(next)) => {
                            if *reserved {
                                rest.rfind(next.as_str())?
                            } else {
                                rest.find(next.as_str())?
                            }
                        }
                        _ => rest.len(),
                    };
                    let value = &rest[..end];
                    if value.is_empty() || (!reserved && value.contains(['/', '?', '#'])) {
                        return None;
                    }
                    vars.insert(name.clone(), percent_decode(value)?);
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(vars)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(template: &str, uri: &str) -> Option<Vec<(String, String)>> {
        UriTemplate::parse(template)
            .unwrap()
            .matches(uri)
            .map(|v| v.into_iter().collect())
    }

    #[test]
    fn simple_variables_match_one_segment() {
        assert_eq!(
            vars("test://template/{id}/data", "test://template/123/data"),
            Some(vec![("id".into(), "123".into())])
        );
        assert_eq!(
            vars("test://template/{id}/data", "test://template/1/2/data"),
            None
        );
        assert_eq!(
            vars("test://template/{id}/data", "test://template//data"),
            None
        );
        assert_eq!(
            vars("test://template/{id}/data", "test://template/1/datax"),
            None
        );
        assert_eq!(
            vars("x://{a}-{b}", "x://one-two"),
            Some(vec![("a".into(), "one".into()), ("b".into(), "two".into())])
        );
        assert_eq!(
            vars("x://{name}", "x://hello%20world"),
            Some(vec![("name".into(), "hello world".into())])
        );
    }

    #[test]
    fn reserved_variables_take_slashes() {
        assert_eq!(
            vars("file:///{+path}", "file:///a/b/c.txt"),
            Some(vec![("path".into(), "a/b/c.txt".into())])
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(UriTemplate::parse("x://{a").is_err());
        assert!(UriTemplate::parse("x://{?q}").is_err());
        assert!(UriTemplate::parse("x://{a}{b}").is_err());
        let t = UriTemplate::parse("x://{a}/{+b}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["a", "b"]);
    }
}
