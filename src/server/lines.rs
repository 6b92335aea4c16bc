//! MCP's stdio framing, one JSON-RPC message per line, as a transport that answers what it
//! cannot read and finishes what it started.
//!
//! rmcp's line transport drops a line that is not JSON without a word, drops a line over its
//! length limit the same way (its caller waits forever), answers `-32600` without an `id`,
//! and when stdin closes gives in-flight calls five seconds before cancelling them. Here:
//!
//! - a line that is not JSON gets `-32700`, JSON that is no message `-32600`, a line over
//!   the limit or nested too deep `-32600` naming the limit; each with the request's `id`
//!   when it can be read, else `"id": null` (JSON-RPC 2.0 §5);
//! - requests for MCP's common methods are decoded straight into their type (`decode`);
//! - when stdin closes, the end of input is reported only once every request received has
//!   been answered (each call is bounded by its own timeout), so a client that sends a call
//!   and closes its end still gets the result.

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex},
};

use rmcp::{
    RoleServer,
    model::{
        ClientJsonRpcMessage, ClientNotification, ErrorCode, JsonRpcMessage, RequestId,
        ServerJsonRpcMessage,
    },
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    sync::Notify,
};

use super::decode::{self, Decoded};

/// How much of an over-long line is kept to read its `id` from.
const HEAD: usize = 64 * 1024;

pub struct Lines<R, W> {
    read: BufReader<R>,
    line: Vec<u8>,
    /// The line being read is over the limit: its first bytes are in `line`, the rest is
    /// skipped up to its newline.
    discarding: bool,
    max_line: usize,
    write: Arc<tokio::sync::Mutex<W>>,
    pending: Arc<Pending>,
    /// Input ended; waiting for `pending` to empty before saying so.
    ended: bool,
}

/// Requests received and not answered yet.
#[derive(Default)]
struct Pending {
    ids: Mutex<HashSet<RequestId>>,
    answered: Notify,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<RequestId>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self, id: &RequestId) {
        if self.lock().remove(id) {
            self.answered.notify_waiters();
        }
    }
}

/// What one read produced.
enum Read {
    Line,
    /// A line over the limit ended; its head is in `line`.
    Oversized,
    Eof,
}

impl<R, W> Lines<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(read: R, write: W, max_line: usize) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            max_line,
            write: Arc::new(tokio::sync::Mutex::new(write)),
            pending: Arc::default(),
            ended: false,
        }
    }

    /// Read up to the next newline without letting `line` grow past the limit.
    /// Cancellation-safe: `receive` is polled in a `select!`; a partial line stays in
    /// `line` (each copy and its `consume` happen with no await between them).
    async fn read_line(&mut self) -> std::io::Result<Read> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(Read::Eof);
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            if self.discarding {
                let room = HEAD.saturating_sub(self.line.len()).min(take);
                self.line.extend_from_slice(&available[..room]);
            } else if self.line.len() + take > self.max_line {
                let room = HEAD.saturating_sub(self.line.len()).min(take);
                self.line.truncate(HEAD);
                self.line.extend_from_slice(&available[..room]);
                self.discarding = true;
            } else {
                self.line.extend_from_slice(&available[..take]);
            }
            self.read.consume(take);
            if newline.is_some() {
                return Ok(if std::mem::take(&mut self.discarding) {
                    Read::Oversized
                } else {
                    Read::Line
                });
            }
        }
    }

    /// Write one JSON value as a line; `false` when stdout is gone.
    fn reply(&self, value: &serde_json::Value) -> impl Future<Output = bool> + Send + 'static {
        let write = self.write.clone();
        let line = serde_json::to_vec(value).unwrap_or_default();
        async move { write_line(&write, line).await.is_ok() }
    }

    /// The message on the line just read, or what to answer instead.
    fn decode_line(&self) -> Option<Result<ClientJsonRpcMessage, serde_json::Value>> {
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(match decode::decode(line) {
            Decoded::Request(message) => Ok(message),
            Decoded::Refused(reply) => Err(serde_json::to_value(reply).unwrap_or_default()),
            Decoded::Other => decode::decode_rest(line),
        })
    }
}

async fn write_line<W: AsyncWrite + Unpin>(
    write: &tokio::sync::Mutex<W>,
    mut line: Vec<u8>,
) -> std::io::Result<()> {
    line.push(b'\n');
    let mut write = write.lock().await;
    write.write_all(&line).await?;
    write.flush().await
}

impl<R, W> Transport<RoleServer> for Lines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        let pending = self.pending.clone();
        let answered = match &item {
            ServerJsonRpcMessage::Response(r) => Some(r.id.clone()),
            ServerJsonRpcMessage::Error(e) => e.id.clone(),
            _ => None,
        };
        let line = serde_json::to_vec(&item);
        async move {
            let written = write_line(&write, line.map_err(std::io::Error::other)?).await;
            if let Some(id) = answered {
                pending.done(&id);
            }
            written
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if self.ended {
                // Cancellation-safe: the condition is checked afresh on every poll.
                let answered = self.pending.answered.notified();
                if self.pending.lock().is_empty() {
                    return None;
                }
                answered.await;
                continue;
            }
            let read = match self.read_line().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "reading stdin failed");
                    Read::Eof
                }
            };
            let decoded = match read {
                Read::Eof => {
                    let waiting = self.pending.lock().len();
                    if waiting > 0 {
                        tracing::info!(
                            waiting,
                            "stdin closed: finishing the requests in flight first"
                        );
                    }
                    self.ended = true;
                    continue;
                }
                Read::Oversized => {
                    let id = decode::read_id(&self.line);
                    self.line.clear();
                    tracing::warn!(
                        limit = self.max_line,
                        "a message over the line limit was refused"
                    );
                    let reply = decode::error_reply(
                        id,
                        ErrorCode::INVALID_REQUEST,
                        format!(
                            "message over {} bytes, the limit (--max-body-bytes)",
                            self.max_line
                        ),
                    );
                    if !self.reply(&reply).await {
                        return None;
                    }
                    continue;
                }
                Read::Line => {
                    let decoded = self.decode_line();
                    self.line.clear();
                    decoded
                }
            };
            match decoded {
                None => continue,
                Some(Ok(message)) => {
                    match &message {
                        JsonRpcMessage::Request(request) => {
                            self.pending.lock().insert(request.id.clone());
                        }
                        // A cancelled request gets no answer.
                        JsonRpcMessage::Notification(n) => {
                            if let ClientNotification::CancelledNotification(c) = &n.notification
                                && let Some(id) = &c.params.request_id
                            {
                                self.pending.done(id);
                            }
                        }
                        _ => {}
                    }
                    return Some(message);
                }
                Some(Err(reply)) => {
                    if !self.reply(&reply).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.write.lock().await.flush().await
    }
}
