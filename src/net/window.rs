//! A rolling-window limit that holds however late the service sees a request.
//!
//! Services such as Airtable count the requests that *arrive* in any rolling second. A
//! pacer that spaces sends (governor's GCRA, one every 205 ms) only bounds when requests
//! leave: a request that leaves on time and arrives late, next to one that arrives early,
//! puts six in the service's second and earns a lockout. What a client does know is that
//! the service saw a request no later than its answer came back. So a slot is taken before
//! sending and given back only `span` after the answer (or the failure) arrived; with `limit`
//! slots, any `span` of the service's clock holds at most `limit` arrivals, whatever the
//! jitter on the way. On loopback the cost is the round trip per cycle (5 per 1.002 s); on a
//! real link it trades a few percent of throughput for never paying a 30-second lockout.
//!
//! Time is tokio's clock, so tests pause it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `limit` requests per `span`, per key.
#[derive(Debug)]
pub struct Window {
    limit: usize,
    span: Duration,
    keys: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One request's place in its window; dropping it frees the place `span` later.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    span: Duration,
}

impl Window {
    pub fn new(limit: usize, span: Duration) -> Self {
        Self {
            limit: limit.max(1),
            span,
            keys: Mutex::default(),
        }
    }

    /// Wait for a place under `key`'s limit (first come, first served).
    pub async fn acquire(&self, key: &str) -> Slot {
        let semaphore = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                keys.entry(key.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.limit))),
            )
        };
        let permit = semaphore
            .acquire_owned()
            .await
            .expect("the window's semaphore is never closed");
        Slot {
            permit: Some(permit),
            span: self.span,
        }
    }
}

impl Slot {
    /// Give the place back at once: the request was never sent.
    pub fn unused(mut self) {
        drop(self.permit.take());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // Outside a runtime (shutting down) there is nothing left to pace.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let span = self.span;
            runtime.spawn(async move {
                tokio::time::sleep(span).await;
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Ten requests that each take 50 ms to answer: five go at once, the next five only a
    /// full span after the first five's answers, so no span holds more than five.
    #[tokio::test(start_paused = true)]
    async fn a_place_frees_one_span_after_the_answer() {
        let window = Arc::new(Window::new(5, Duration::from_secs(1)));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let window = Arc::clone(&window);
            tasks.push(tokio::spawn(async move {
                let slot = window.acquire("base").await;
                let sent = start.elapsed();
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(slot);
                sent
            }));
        }
        let mut sent = Vec::new();
        for t in tasks {
            sent.push(t.await.unwrap());
        }
        sent.sort();
        assert!(sent[..5].iter().all(|s| *s == Duration::ZERO), "{sent:?}");
        assert!(
            sent[5..].iter().all(|s| *s == Duration::from_millis(1050)),
            "{sent:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keys_do_not_share_places() {
        let window = Window::new(1, Duration::from_secs(1));
        let start = Instant::now();
        let a = window.acquire("a").await;
        let b = window.acquire("b").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(a);
        let _a = window.acquire("a").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        drop(b);
    }
}
