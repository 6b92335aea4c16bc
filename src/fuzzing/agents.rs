//! The providers' answers: whole replies, error bodies, and streamed event streams, in the
//! four wire formats (DeepSeek's is OpenAI's, read by the same code).

use futures::{FutureExt, StreamExt};

use crate::agents::{
    AgentError, StreamEvent, anthropic, gemini, openai,
    sse::{self, Decoder},
};

/// The formats by the first byte of an input.
#[derive(Debug, Clone, Copy)]
enum Format {
    OpenAi,
    DeepSeek,
    Anthropic,
    Gemini,
}

impl Format {
    fn of(byte: u8) -> Self {
        match byte % 4 {
            0 => Self::OpenAi,
            1 => Self::DeepSeek,
            2 => Self::Anthropic,
            _ => Self::Gemini,
        }
    }

    fn provider(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::DeepSeek => "deepseek",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }
}

/// A whole answer: the first byte picks the format, the second and third the status of an
/// error answer; the rest is the body, read both as a reply and as an error. An error names
/// the provider.
pub fn replies(bytes: &[u8]) {
    let [format, high, low, body @ ..] = bytes else {
        return;
    };
    let format = Format::of(*format);
    let provider = format.provider();
    let status = 400 + u16::from_be_bytes([*high, *low]) % 200;
    let error = match format {
        Format::OpenAi | Format::DeepSeek => openai::parse_error(provider, status, body),
        Format::Anthropic => anthropic::parse_error(provider, status, body),
        Format::Gemini => gemini::parse_error(provider, status, body),
    };
    assert!(error.to_string().starts_with(provider), "{error}");
    let Ok(value) = serde_json::from_slice(body) else {
        return;
    };
    let reply = match format {
        Format::OpenAi | Format::DeepSeek => openai::parse_reply(provider, "m", &value),
        Format::Anthropic => anthropic::parse_reply(provider, "m", &value),
        Format::Gemini => gemini::parse_reply(provider, "m", &value),
    };
    match reply {
        Ok(reply) => {
            let _ = reply
                .turn
                .tool_calls
                .iter()
                .map(|c| c.arguments.is_object());
        }
        Err(e) => assert!(e.to_string().starts_with(provider), "{e}"),
    }
}

/// What `decoder` makes of an event stream delivered in `pieces`, each item written out.
fn decode_stream<D: Decoder + 'static>(
    provider: &'static str,
    pieces: Vec<Vec<u8>>,
    decoder: D,
) -> Vec<String> {
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        pieces.into_iter().map(Ok::<_, std::io::Error>),
    ));
    let response = reqwest::Response::from(axum::http::Response::new(body));
    let start = async move { Ok::<_, AgentError>(response) }.boxed();
    super::block_on(
        sse::drive(provider, start, decoder)
            .map(|item| format!("{item:?}"))
            .collect(),
    )
}

/// A streamed answer: the first byte picks the format, the first line gives the sizes of
/// the pieces the network delivers the rest in. However the bytes are split, the same events
/// come out; a finished OpenAI-style answer's text is what its deltas said.
pub fn streams(bytes: &[u8]) {
    let Some((&format, rest)) = bytes.split_first() else {
        return;
    };
    let format = Format::of(format);
    let provider = format.provider();
    let (sizes, events) = super::first_line(rest);
    let run = |pieces: Vec<Vec<u8>>| match format {
        Format::OpenAi | Format::DeepSeek => {
            decode_stream(provider, pieces, openai::Chunks::new(provider, "m"))
        }
        Format::Anthropic => decode_stream(provider, pieces, anthropic::Blocks::new(provider, "m")),
        Format::Gemini => decode_stream(provider, pieces, gemini::Chunks::new(provider, "m")),
    };
    let whole = run(vec![events.to_vec()]);
    let split = run(super::pieces(events, sizes)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect());
    assert_eq!(
        whole, split,
        "the events depend on how the stream was split"
    );
    if matches!(format, Format::OpenAi | Format::DeepSeek) {
        check_text(provider, events);
    }
}

/// The text of a finished answer is the text its deltas passed on, in order.
fn check_text(provider: &'static str, events: &[u8]) {
    let body = reqwest::Body::from(events.to_vec());
    let response = reqwest::Response::from(axum::http::Response::new(body));
    let start = async move { Ok::<_, AgentError>(response) }.boxed();
    let items: Vec<_> =
        super::block_on(sse::drive(provider, start, openai::Chunks::new(provider, "m")).collect());
    let mut text = String::new();
    for item in items {
        match item {
            Ok(StreamEvent::Text(t)) => text.push_str(&t),
            Ok(StreamEvent::Done(reply)) => assert_eq!(reply.turn.text, text),
            Ok(StreamEvent::Reasoning(_)) => {}
            Err(e) => assert!(e.to_string().starts_with(provider), "{e}"),
        }
    }
}
