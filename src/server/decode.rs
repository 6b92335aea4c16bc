//! Decoding a client's JSON-RPC message by its method.
//!
//! rmcp decodes a client request by trying each of its 22 request shapes in turn (an untagged
//! enum), so a `tools/call` fails 13 shapes before it fits, and every failure formats an
//! error: about 30,000 instructions, a sixth of an HTTP call. Here the method is read first
//! and the request decoded straight into its type. The result is the same
//! [`ClientJsonRpcMessage`] rmcp would build; anything this module does not recognise is
//! left to rmcp's own decoding.

use std::borrow::Cow;

use rmcp::model::{
    CallToolRequest, ClientJsonRpcMessage, ClientRequest, CompleteRequest, ErrorCode, ErrorData,
    GetPromptRequest, JsonRpcMessage, JsonRpcRequest, ListPromptsRequest,
    ListResourceTemplatesRequest, ListResourcesRequest, ListToolsRequest, PingRequest,
    ReadResourceRequest, RequestId, ServerJsonRpcMessage,
};
use serde::{Deserialize, de::IgnoredAny};

/// What a message turned out to be.
#[derive(Debug)]
pub enum Decoded {
    /// A request for one of MCP's common methods, decoded.
    Request(ClientJsonRpcMessage),
    /// A request that cannot be served as sent; answer it with this.
    Refused(ServerJsonRpcMessage),
    /// Something else (a notification, a response, a rarer method, malformed JSON): rmcp's.
    Other,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    id: Option<RequestId>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    // A request carrying these is malformed; rmcp says how.
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

/// Decode `body` if it is a request for a common method; refuse it if it names a method MCP
/// does not define or its params do not fit its method.
pub fn decode(body: &[u8]) -> Decoded {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Decoded::Other;
    };
    let (Some("2.0"), Some(id), Some(method), None, None) = (
        envelope.jsonrpc.as_deref(),
        envelope.id,
        envelope.method,
        envelope.result,
        envelope.error,
    ) else {
        return Decoded::Other;
    };
    match decode_as(&method, body) {
        Some(Ok(message)) => Decoded::Request(message),
        Some(Err(e)) => Decoded::Refused(refusal(
            id,
            ErrorCode::INVALID_PARAMS,
            bad_params(&method, &e),
        )),
        None if is_mcp_method(&method) => Decoded::Other,
        None => Decoded::Refused(refusal(
            id,
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "method `{}` is not part of MCP",
                crate::plugin::clip_name(&method)
            ),
        )),
    }
}

/// `body` decoded as a request for `method`, when that is one of the common methods.
fn decode_as(method: &str, body: &[u8]) -> Option<Result<ClientJsonRpcMessage, serde_json::Error>> {
    Some(match method {
        "tools/call" => typed::<CallToolRequest>(body),
        "tools/list" => typed::<ListToolsRequest>(body),
        "resources/read" => typed::<ReadResourceRequest>(body),
        "resources/list" => typed::<ListResourcesRequest>(body),
        "resources/templates/list" => typed::<ListResourceTemplatesRequest>(body),
        "prompts/get" => typed::<GetPromptRequest>(body),
        "prompts/list" => typed::<ListPromptsRequest>(body),
        "completion/complete" => typed::<CompleteRequest>(body),
        "ping" => typed::<PingRequest>(body),
        _ => return None,
    })
}

fn typed<R>(body: &[u8]) -> Result<ClientJsonRpcMessage, serde_json::Error>
where
    R: for<'de> Deserialize<'de>,
    ClientRequest: From<R>,
{
    let request: JsonRpcRequest<R> = serde_json::from_slice(body)?;
    Ok(JsonRpcMessage::Request(JsonRpcRequest {
        jsonrpc: request.jsonrpc,
        id: request.id,
        request: ClientRequest::from(request.request),
    }))
}

fn refusal(id: RequestId, code: ErrorCode, message: String) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::error(ErrorData::new(code, message, None), Some(id))
}

fn bad_params(method: &str, error: &serde_json::Error) -> String {
    // serde_json's position points into the whole message, which the client did not write
    // as one line of params; the cause is what helps.
    let cause = error.to_string();
    let cause = cause
        .rsplit_once(" at line ")
        .map_or(cause.as_str(), |(cause, _)| cause);
    if cause.starts_with("recursion limit exceeded") {
        return format!(
            "invalid params for `{method}`: nested deeper than {MAX_DEPTH} levels, the limit"
        );
    }
    format!("invalid params for `{method}`: {cause}")
}

/// Methods MCP defines that a client may send and [`decode`] leaves to rmcp.
fn is_mcp_method(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "server/discover"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "subscriptions/listen"
            | "tasks/get"
            | "tasks/update"
            | "tasks/cancel"
            | "skills/list"
            | "skills/get"
            | "resources/directory/read"
    )
}

/// JSON nesting the parser follows (serde_json's limit); a message nested deeper is refused.
pub const MAX_DEPTH: usize = 128;

/// Decode a message [`decode`] left to rmcp as rmcp does, or the JSON-RPC error that answers
/// it: `-32700` for bytes that are not JSON, `-32600` for JSON that is no message or is
/// nested past [`MAX_DEPTH`]. The error carries the request's id when it can be read, else
/// `null` (JSON-RPC 2.0 §5: the id is null when it cannot be detected).
pub fn decode_rest(body: &[u8]) -> Result<ClientJsonRpcMessage, serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| unreadable(body, &e))
}

/// The answer to a message that could not be decoded (see [`decode_rest`]).
pub fn unreadable(body: &[u8], error: &serde_json::Error) -> serde_json::Value {
    use serde_json::error::Category;
    let cause = error.to_string();
    let cause = cause
        .rsplit_once(" at line ")
        .map_or(cause.as_str(), |(cause, _)| cause);
    let (code, message) = if cause.starts_with("recursion limit exceeded") {
        (
            ErrorCode::INVALID_REQUEST,
            format!("request nested deeper than {MAX_DEPTH} levels, the limit"),
        )
    } else if matches!(error.classify(), Category::Syntax | Category::Eof) {
        (ErrorCode::PARSE_ERROR, format!("not JSON: {cause}"))
    } else {
        (
            ErrorCode::INVALID_REQUEST,
            format!("not a JSON-RPC 2.0 message: {cause}"),
        )
    };
    error_reply(read_id(body), code, message)
}

/// A JSON-RPC error with `id` (`null` when `None`).
pub fn error_reply(id: Option<RequestId>, code: ErrorCode, message: String) -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code.0, "message": message },
    })
}

/// The `id` of a JSON object whose whole cannot be read (too deep, too long, malformed
/// later on): the first top-level `"id"` member, when it is a string or an integer and
/// comes before whatever is wrong.
pub fn read_id(body: &[u8]) -> Option<RequestId> {
    let mut i = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[i] != b'{' {
        return None;
    }
    i += 1;
    let mut depth = 1usize;
    // At depth 1, whether the next string is a member's name.
    let mut expect_key = true;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let end = string_end(body, i)?;
                if depth == 1 && expect_key && &body[i..=end] == br#""id""# {
                    let rest = &body[end + 1..];
                    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
                    if rest[colon] != b':' {
                        return None;
                    }
                    let value = &rest[colon + 1..];
                    let mut values = serde_json::Deserializer::from_slice(value).into_iter();
                    return match values.next()? {
                        Ok(serde_json::Value::String(s)) => Some(RequestId::String(s.into())),
                        Ok(serde_json::Value::Number(n)) => n.as_i64().map(RequestId::Number),
                        _ => None,
                    };
                }
                if depth == 1 {
                    expect_key = false;
                }
                i = end;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
            }
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote closing the string that opens at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The error for a request rmcp could only decode as a custom one: its method is not MCP's,
/// or it is and its params do not fit.
pub fn custom_request_error(method: &str, params: Option<&serde_json::Value>) -> ErrorData {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": 0, "method": method, "params": params });
    match decode_as(method, body.to_string().as_bytes()) {
        Some(Err(e)) => ErrorData::new(ErrorCode::INVALID_PARAMS, bad_params(method, &e), None),
        Some(Ok(_)) => ErrorData::new(
            ErrorCode::INVALID_PARAMS,
            format!("invalid params for `{method}`"),
            None,
        ),
        None if is_mcp_method(method) => ErrorData::new(
            ErrorCode::INVALID_PARAMS,
            format!("invalid params for `{method}`"),
            None,
        ),
        None => ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "method `{}` is not part of MCP",
                crate::plugin::clip_name(method)
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{GetMeta, ProgressToken};

    use super::*;

    /// What rmcp makes of `body`, and what `decode` makes of it, as JSON.
    fn both(body: &str) -> (serde_json::Value, serde_json::Value) {
        let rmcp: ClientJsonRpcMessage = serde_json::from_str(body).unwrap();
        let Decoded::Request(ours) = decode(body.as_bytes()) else {
            panic!("not decoded: {body}");
        };
        (
            serde_json::to_value(rmcp).unwrap(),
            serde_json::to_value(ours).unwrap(),
        )
    }

    #[test]
    fn common_requests_decode_as_rmcp_decodes_them() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,{"b":null}]}}}"#,
            r#"{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":"c"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///a"}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"resources/list"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"resources/templates/list"}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"p","arguments":{"k":"v"}}}"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"prompts/list"}"#,
            r#"{"jsonrpc":"2.0","id":10,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"k","value":"v"}}}"#,
        ] {
            let (rmcp, ours) = both(body);
            assert_eq!(rmcp, ours, "{body}");
        }
    }

    #[test]
    fn request_metadata_reaches_the_request() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"t"}}}"#;
        let Decoded::Request(JsonRpcMessage::Request(request)) = decode(body.as_bytes()) else {
            panic!("not decoded");
        };
        assert!(matches!(request.request, ClientRequest::CallToolRequest(_)));
        assert_eq!(
            request.request.get_meta().get_progress_token(),
            Some(ProgressToken(rmcp::model::NumberOrString::String(
                "t".into()
            )))
        );
    }

    fn refusal_of(body: &str) -> ErrorData {
        match decode(body.as_bytes()) {
            Decoded::Refused(JsonRpcMessage::Error(e)) => e.error,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn unknown_methods_and_bad_params_are_refused_saying_why() {
        let e = refusal_of(r#"{"jsonrpc":"2.0","id":1,"method":"tools/run"}"#);
        assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(e.message, "method `tools/run` is not part of MCP");

        let e = refusal_of(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
        );
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            e.message,
            "invalid params for `tools/call`: missing field `name`"
        );

        let e =
            refusal_of(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":5}}"#);
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(
            e.message
                .starts_with("invalid params for `resources/read`: invalid type"),
            "{}",
            e.message
        );
    }

    #[test]
    fn everything_else_is_left_to_rmcp() {
        for body in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","result":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list""#,
        ] {
            assert!(matches!(decode(body.as_bytes()), Decoded::Other), "{body}");
        }
    }

    #[test]
    fn undecodable_messages_are_answered_with_the_id_when_it_can_be_read() {
        let reply = decode_rest(b"not json").unwrap_err();
        assert_eq!(reply["id"], serde_json::Value::Null);
        assert_eq!(reply["error"]["code"], -32700);
        assert!(reply.as_object().unwrap().contains_key("id"));

        let reply =
            decode_rest(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"#)
                .unwrap_err();
        assert_eq!(
            (reply["id"].clone(), reply["error"]["code"].clone()),
            (7.into(), (-32700).into())
        );

        let reply = decode_rest(br#"{"foo":1}"#).unwrap_err();
        assert_eq!(
            (reply["id"].clone(), reply["error"]["code"].clone()),
            (serde_json::Value::Null, (-32600).into())
        );

        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":"deep-1","method":"tools/call","params":{{"name":"x","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let reply = decode_rest(deep.as_bytes()).unwrap_err();
        assert_eq!(reply["id"], "deep-1");
        assert_eq!(reply["error"]["code"], -32600);
        assert_eq!(
            reply["error"]["message"],
            "request nested deeper than 128 levels, the limit"
        );
    }

    #[test]
    fn the_id_is_read_only_from_the_top_level_object() {
        assert_eq!(read_id(br#" {"id": 5}"#), Some(RequestId::Number(5)));
        assert_eq!(
            read_id(br#"{"a":{"id":1},"id":"x\"y"}"#),
            Some(RequestId::String("x\"y".into()))
        );
        assert_eq!(
            read_id(br#"{"a":"id","b":["id",{"id":2}],"id":3,"#),
            Some(RequestId::Number(3))
        );
        assert_eq!(read_id(br#"{"method":"id","params":{}}"#), None);
        assert_eq!(read_id(br#"{"id":null}"#), None);
        assert_eq!(read_id(br#"{"id":1.5}"#), None);
        assert_eq!(read_id(br#"[{"id":1}]"#), None);
        assert_eq!(read_id(br#"{"x":"unterminated"#), None);
        assert_eq!(read_id(b""), None);
    }

    #[test]
    fn custom_requests_get_the_same_errors() {
        let e = custom_request_error("tools/call", Some(&serde_json::json!({"arguments": {}})));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            e.message,
            "invalid params for `tools/call`: missing field `name`"
        );
        let e = custom_request_error("initialize", Some(&serde_json::json!({})));
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        let e = custom_request_error("foo/bar", None);
        assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
    }
}
