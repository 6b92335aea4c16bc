//! Server-sent events from a provider's streamed answer, parsed by the `sse-stream` crate
//! (the parser rmcp uses): comments (`: keep-alive`) skipped, `\n` and `\r\n` both accepted,
//! multi-line `data:` joined.

use std::collections::VecDeque;

use futures::{Stream, StreamExt, future::BoxFuture, stream::BoxStream};
use reqwest::Response;

use super::{AgentError, Reply, StreamEvent};
use crate::net::describe;

/// One event: its name (`event:` line, if any) and its data.
#[derive(Debug, Clone)]
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
    let body = crate::net::capped_stream(response, crate::net::MAX_UPSTREAM_BODY);
    sse_stream::SseStream::from_bytes_stream(body).filter_map(move |item| {
        let provider = provider.clone();
        async move {
            match item {
                Ok(sse) => sse.data.map(|data| {
                    Ok(Event {
                        name: sse.event,
                        data,
                    })
                }),
                Err(sse_stream::Error::Body(e)) => Some(Err(AgentError::Transport {
                    message: match e.downcast_ref::<reqwest::Error>() {
                        Some(e) => describe(e),
                        // `BodyError` says itself what went wrong.
                        None => e.to_string(),
                    },
                    provider,
                })),
                Err(e) => Some(Err(AgentError::Malformed {
                    provider,
                    message: format!("the event stream is not valid SSE ({e})"),
                })),
            }
        }
    })
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
