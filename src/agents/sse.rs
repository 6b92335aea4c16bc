//! Server-sent events from a provider's streamed answer, read as the HTML standard's event
//! stream rules say (what browsers and the providers' SDKs do): `\n`, `\r\n` and `\r` end a
//! line, comments (`: keep-alive`) and unknown fields are skipped, multi-line `data:` is
//! joined, and nothing depends on how the network splits the bytes. The `sse-stream` crate
//! refused a stream with an unknown field or a repeated `event:` line, and dropped the events
//! before such a line when they came in the same read (found by `fuzz/` `agent_streams`).

use std::collections::VecDeque;

use futures::{Stream, StreamExt, future::BoxFuture, stream::BoxStream};
use reqwest::Response;

use super::{AgentError, Reply, StreamEvent};
use crate::net::describe;

/// One event: its name (`event:` line, if any) and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// The events of a streamed answer. Events without data (comments, retry lines) are skipped.
pub fn events(
    provider: &str,
    response: Response,
) -> impl Stream<Item = Result<Event, AgentError>> + Send + 'static {
    let provider = provider.to_owned();
    let mut parser = Parser::default();
    // Bounded as every upstream answer is: a stream past the limit ends with an error.
    crate::net::capped_stream(response, crate::net::MAX_UPSTREAM_BODY)
        .map(move |chunk| match chunk {
            Ok(bytes) => parser.feed(&bytes).into_iter().map(Ok).collect(),
            Err(crate::net::BodyError::Transport(e)) => vec![Err(AgentError::Transport {
                message: describe(&e),
                provider: provider.clone(),
            })],
            Err(e) => vec![Err(AgentError::Transport {
                message: e.to_string(),
                provider: provider.clone(),
            })],
        })
        .flat_map(futures::stream::iter)
}

/// The event stream parser: bytes in, whole events out.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The last byte was a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
    /// Past the first line (where a byte order mark is dropped).
    started: bool,
    /// The event being read: its `event:` name and its `data:` lines.
    name: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// The events that `bytes`, the next part of the stream, completes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.line);
            events.extend(self.line_done(&line));
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            if rest[end] == b'\r' && end + 1 == rest.len() {
                self.after_cr = true;
            }
            rest = &rest[end + 1 + usize::from(crlf)..];
        }
        self.line.extend_from_slice(rest);
        events
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        let line = if self.started {
            line
        } else {
            self.started = true;
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        };
        if line.is_empty() {
            let name = self.name.take();
            return self.data.take().map(|data| Event { name, data });
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.name = Some(value.into_owned()),
            b"data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.data = Some(value.into_owned()),
            },
            // Comments (`:` lines), `id`, `retry` and fields the standard does not name.
            _ => {}
        }
        None
    }
}

/// Turns a provider's events into [`StreamEvent`]s and, at the end, the whole [`Reply`].
pub trait Decoder: Send {
    /// One event in: the pieces to pass on, and whether the answer is complete.
    fn feed(&mut self, event: Event) -> Result<(Vec<StreamEvent>, bool), AgentError>;
    /// The stream ended (after a complete answer, or early): the whole answer, or why not.
    fn finish(&mut self) -> Result<Reply, AgentError>;
}

/// A streamed answer: `start` sends the request (with retries), `decoder` reads its events.
pub fn drive<'a, D: Decoder + 'a>(
    provider: &'a str,
    start: BoxFuture<'a, Result<Response, AgentError>>,
    decoder: D,
) -> BoxStream<'a, Result<StreamEvent, AgentError>> {
    type Events = BoxStream<'static, Result<Event, AgentError>>;
    enum State<'a, D> {
        Start(BoxFuture<'a, Result<Response, AgentError>>, D),
        Streaming(Events, D, VecDeque<StreamEvent>),
        Draining(VecDeque<StreamEvent>),
    }
    futures::stream::unfold(
        Some(State::Start(start, decoder)),
        move |state| async move {
            let (mut events, mut decoder, mut pending) = match state? {
                State::Start(start, decoder) => match start.await {
                    Ok(response) => (events(provider, response).boxed(), decoder, VecDeque::new()),
                    Err(e) => return Some((Err(e), None)),
                },
                State::Streaming(events, decoder, pending) => (events, decoder, pending),
                State::Draining(mut pending) => {
                    let item = pending.pop_front()?;
                    return Some((Ok(item), Some(State::Draining(pending))));
                }
            };
            loop {
                if let Some(item) = pending.pop_front() {
                    return Some((Ok(item), Some(State::Streaming(events, decoder, pending))));
                }
                let complete = match events.next().await {
                    Some(Ok(event)) => match decoder.feed(event) {
                        Ok((items, complete)) => {
                            pending.extend(items);
                            complete
                        }
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => true,
                };
                if complete {
                    match decoder.finish() {
                        Ok(reply) => pending.push_back(StreamEvent::Done(reply)),
                        Err(e) => return Some((Err(e), None)),
                    }
                    let item = pending.pop_front()?;
                    return Some((Ok(item), Some(State::Draining(pending))));
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pieces: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::default();
        pieces.iter().flat_map(|p| parser.feed(p)).collect()
    }

    fn event(name: Option<&str>, data: &str) -> Event {
        Event {
            name: name.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_do_not_depend_on_how_the_bytes_are_split() {
        let stream = b"\xEF\xBB\xBFevent: a\r\ndata: 1\r\ndata:2\r\n\r\n: keep-alive\n\ndata: \xC3\xA9\r\rdata: x\n\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            [event(Some("a"), "1\n2"), event(None, "é"), event(None, "x")]
        );
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(parse(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn unknown_fields_and_repeated_names_do_not_end_the_stream() {
        // Regression (fuzz/ agent_streams): sse-stream answered these with an error, and lost
        // the events before the line when they came in the same read.
        let stream =
            b"data: 1\n\nd\nfoo: bar\nevent: a\nevent: b\nretry: soon\nid: 1\nid: 2\ndata: 2\n\n";
        assert_eq!(parse(&[stream]), [event(None, "1"), event(Some("b"), "2")]);
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert_eq!(parse(&[b"data: 1\n\ndata: 2\n"]), [event(None, "1")]);
        assert_eq!(parse(&[b"event: only\n\n"]), []);
    }
}
