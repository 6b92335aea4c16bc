//! The upstream's progress, relayed in order: taken off the transport as it is read
//! ([`Ordered`]), forwarded by one task ([`forward_progress`]) to the client of the call it
//! belongs to, all of it before the call's answer.

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); upstreams use them.

use super::*;

/// The upstream's progress notifications, passed on in the order they arrived.
///
/// rmcp hands each notification to a task of its own, so two of them can reach a handler in
/// either order, and a call's last progress can reach its client after the result (whose
/// token is dead by then). So progress is taken off the transport as it is read
/// ([`Ordered`]) and forwarded by one task, in order; a call's answer, read after its
/// progress, waits until what was read before it has gone out.
#[derive(Default)]
pub(super) struct ProgressRelay {
    /// Read from the transport so far.
    pub(super) read: std::sync::atomic::AtomicU64,
    /// Passed on (or dropped, for a call that has ended) so far.
    pub(super) sent: std::sync::atomic::AtomicU64,
    pub(super) caught_up: tokio::sync::Notify,
}

impl ProgressRelay {
    /// Wait until everything read so far has been passed on; bounded, so that a client
    /// that does not read cannot hold the call.
    pub(super) async fn catch_up(&self) {
        let target = self.read.load(std::sync::atomic::Ordering::SeqCst);
        let wait = async {
            loop {
                let notified = self.caught_up.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.sent.load(std::sync::atomic::Ordering::SeqCst) >= target {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    }
}

/// A transport whose progress notifications go to the [`ProgressRelay`]'s queue, in the
/// order they are read, instead of to rmcp's handler tasks.
pub(super) struct Ordered<T> {
    pub(super) inner: T,
    pub(super) relay: Arc<ProgressRelay>,
    pub(super) queue: tokio::sync::mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Ordered<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            if let rmcp::model::JsonRpcMessage::Notification(n) = &message
                && let rmcp::model::ServerNotification::ProgressNotification(p) = &n.notification
            {
                self.relay
                    .read
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = self.queue.send(p.params.clone());
                continue;
            }
            return Some(message);
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Pass the upstream's progress on to the clients of the calls it is about, in order.
pub(super) async fn forward_progress(
    shared: Arc<Shared>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<ProgressNotificationParam>,
) {
    let relay = shared.progress.clone();
    let sent = |relay: &ProgressRelay| {
        relay.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        relay.caught_up.notify_waiters();
    };
    while let Some(params) = queue.recv().await {
        let token = token_key(&params.progress_token);
        let cx = shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token)
            .cloned();
        if let Some(cx) = cx {
            cx.progress(
                params.progress,
                params.total,
                params.message.unwrap_or_default(),
            )
            .await;
        }
        sent(&relay);
    }
    // The connection is gone: what it read and did not pass on never will be.
    relay.sent.store(
        relay.read.load(std::sync::atomic::Ordering::SeqCst),
        std::sync::atomic::Ordering::SeqCst,
    );
    relay.caught_up.notify_waiters();
}

/// A progress token as a map key.
pub(super) fn token_key(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => format!("s:{s}"),
    }
}
