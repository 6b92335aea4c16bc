//! A local HTTP server for the wire-format modules' unit tests.

use std::time::Duration;

use serde_json::Value;

use crate::net::RetryPolicy;

/// What a local server saw: path with query, headers, body.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, Value)>>>;

/// A local server answering each request with the next of `answers` (status, content
/// type, body); the base URL (with a trailing slash) and what it saw.
pub async fn serve(answers: Vec<(u16, &'static str, String)>) -> (String, Seen) {
    let seen: Seen = Default::default();
    let answers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        answers,
    )));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (log, answers) = (log.clone(), answers.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock()
                .unwrap()
                .push((parts.uri.to_string(), parts.headers, body));
            let (status, kind, text) = answers.lock().unwrap().pop_front().unwrap();
            axum::http::Response::builder()
                .status(status)
                .header("content-type", kind)
                .body(axum::body::Body::from(text))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/"), seen)
}

pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        backoff: Duration::from_millis(1),
        ..RetryPolicy::default()
    }
}
