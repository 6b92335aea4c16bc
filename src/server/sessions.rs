//! Streamable HTTP sessions, bounded: a cap on how many are open (in all, and per client
//! address), and an idle expiry. rmcp keeps every session it creates until its worker has
//! seen nothing for five minutes, whatever is open on it, and never refuses one: 20,000
//! `initialize` requests made 20,000 sessions (about 54 KB each).
//!
//! This layer sits in front of rmcp's `/mcp` service. An `initialize` without a session takes
//! a place first (503 when there is none); the session id rmcp answers with is recorded
//! against the client's address. Every request on a session marks it used; a session with a
//! request in flight or a stream open is never idle. A sweeper closes sessions idle longer
//! than the expiry, after which their id gets 404, which tells a client to initialize again
//! (the spec's rule for ended sessions).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use rmcp::transport::streamable_http_server::session::{
    SessionManager, local::LocalSessionManager,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The header carrying a Streamable HTTP session's id.
const SESSION_HEADER: &str = "mcp-session-id";

/// How many sessions may be open, and for how long one may sit unused.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Sessions open at once, in all.
    pub max: usize,
    /// Sessions open at once from one client address.
    pub per_client: usize,
    /// A session with nothing in flight and no stream open is closed after this long.
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max: 1024,
            per_client: 256,
            idle: Duration::from_secs(30 * 60),
        }
    }
}

/// The sessions this server holds, as this layer counts them.
pub struct Sessions {
    rmcp: Arc<LocalSessionManager>,
    limits: SessionLimits,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    live: HashMap<String, Entry>,
    /// Open sessions and places taken, per client address.
    per_client: HashMap<IpAddr, usize>,
    /// Places taken by `initialize` requests not answered yet.
    reserved: usize,
}

struct Entry {
    client: IpAddr,
    /// Who opened it, when they signed in (OAuth): only they may use it.
    owner: Option<Arc<str>>,
    last_used: Instant,
    /// Requests in flight and streams open.
    busy: usize,
}

/// Counts for the server's status.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SessionCounts {
    pub open: usize,
    pub busy: usize,
    pub max: usize,
    pub per_client: usize,
    pub idle_secs: u64,
}

impl Sessions {
    pub fn new(rmcp: Arc<LocalSessionManager>, limits: SessionLimits) -> Arc<Self> {
        Arc::new(Self {
            rmcp,
            limits,
            table: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counts(&self) -> SessionCounts {
        let table = self.lock();
        SessionCounts {
            open: table.live.len(),
            busy: table.live.values().filter(|e| e.busy > 0).count(),
            max: self.limits.max,
            per_client: self.limits.per_client,
            idle_secs: self.limits.idle.as_secs(),
        }
    }

    /// A place for a new session from `client`, or why there is none.
    fn reserve(self: &Arc<Self>, client: IpAddr, owner: Option<Arc<str>>) -> Result<Place, Full> {
        let mut table = self.lock();
        if table.live.len() + table.reserved >= self.limits.max {
            return Err(Full::Server(self.limits.max));
        }
        let mine = table.per_client.entry(client).or_default();
        if *mine >= self.limits.per_client {
            return Err(Full::Client(self.limits.per_client));
        }
        *mine += 1;
        table.reserved += 1;
        Ok(Place {
            sessions: self.clone(),
            client,
            owner,
            taken: true,
        })
    }

    /// Whether `id` may be used by `user` (the signed-in subject, if any): a session opened by
    /// a signed-in user is theirs alone; a session this layer does not hold is left to rmcp
    /// (which answers 404).
    fn may_use(&self, id: &str, user: Option<&str>) -> bool {
        self.lock()
            .live
            .get(id)
            .is_none_or(|entry| entry.owner.as_deref() == user)
    }

    /// Mark session `id` used; the guard keeps it busy until dropped. `None` for a session
    /// this layer does not hold.
    fn use_session(self: &Arc<Self>, id: &str) -> Option<Busy> {
        let mut table = self.lock();
        let entry = table.live.get_mut(id)?;
        entry.busy += 1;
        entry.last_used = Instant::now();
        Some(Busy {
            sessions: self.clone(),
            id: id.to_owned(),
        })
    }

    fn forget(&self, id: &str) {
        let mut table = self.lock();
        if let Some(entry) = table.live.remove(id) {
            release_client(&mut table, entry.client);
        }
    }

    /// Close sessions idle past the expiry, and forget those rmcp has ended by itself.
    pub async fn sweep(&self) {
        for id in self.idle(Instant::now()) {
            tracing::debug!(session = %id, "closing an idle session");
            self.forget(&id);
            if let Err(e) = self.rmcp.close_session(&id.as_str().into()).await {
                tracing::debug!(session = %id, error = %e, "closing an idle session failed");
            }
        }
        let known: Vec<String> = self.lock().live.keys().cloned().collect();
        let ended: Vec<String> = {
            let held = self.rmcp.sessions.read().await;
            known
                .into_iter()
                .filter(|id| !held.contains_key(id.as_str()))
                .collect()
        };
        for id in ended {
            self.forget(&id);
        }
    }

    /// The sessions unused for the idle time at `now`, with nothing in flight.
    fn idle(&self, now: Instant) -> Vec<String> {
        self.lock()
            .live
            .iter()
            .filter(|(_, e)| e.busy == 0 && now.duration_since(e.last_used) >= self.limits.idle)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Sweep every so often until `ct` is cancelled.
    pub fn spawn_sweeper(self: &Arc<Self>, ct: CancellationToken) {
        let me = self.clone();
        let every =
            (self.limits.idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => me.sweep().await,
                    () = ct.cancelled() => return,
                }
            }
        });
    }
}

fn release_client(table: &mut Table, client: IpAddr) {
    if let Some(n) = table.per_client.get_mut(&client) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            table.per_client.remove(&client);
        }
    }
}

/// A place reserved for a session being created; given back unless the session opened.
struct Place {
    sessions: Arc<Sessions>,
    client: IpAddr,
    owner: Option<Arc<str>>,
    taken: bool,
}

impl Place {
    /// The session opened as `id`: the place becomes its entry.
    fn opened(mut self, id: String) {
        let mut table = self.sessions.lock();
        table.reserved = table.reserved.saturating_sub(1);
        table.live.insert(
            id,
            Entry {
                client: self.client,
                owner: self.owner.take(),
                last_used: Instant::now(),
                busy: 0,
            },
        );
        self.taken = false;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.taken {
            let mut table = self.sessions.lock();
            table.reserved = table.reserved.saturating_sub(1);
            release_client(&mut table, self.client);
        }
    }
}

/// A request or stream in flight on a session.
struct Busy {
    sessions: Arc<Sessions>,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut table = self.sessions.lock();
        if let Some(entry) = table.live.get_mut(&self.id) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.last_used = Instant::now();
        }
    }
}

/// Why no session could be opened.
enum Full {
    Server(usize),
    Client(usize),
}

impl IntoResponse for Full {
    fn into_response(self) -> Response {
        let text = match self {
            Full::Server(max) => format!(
                "too many MCP sessions open (the limit is {max}): close one with DELETE /mcp, wait \
                 for idle ones to expire, or raise --max-sessions (PLUGBOARD_MAX_SESSIONS)"
            ),
            Full::Client(max) => format!(
                "too many MCP sessions open from this address (the limit is {max}): close one \
                 with DELETE /mcp, or raise --max-sessions-per-client \
                 (PLUGBOARD_MAX_SESSIONS_PER_CLIENT)"
            ),
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            text,
        )
            .into_response()
    }
}

/// Marks a request as an `initialize`, which opens a session (set by the gate, which has
/// read the body).
#[derive(Clone, Copy)]
pub struct Initialize;

/// The layer: places for new sessions, use of open ones, 404 for `DELETE` of one unknown.
pub async fn limit(
    State(sessions): State<Arc<Sessions>>,
    request: Request,
    next: Next,
) -> Response {
    let id = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The session is bound to who opened it: another user's token naming it (a leaked or
    // guessed id) finds no such session, exactly as an unknown id does.
    let user = request
        .extensions()
        .get::<crate::plugin::Principal>()
        .map(|p| p.subject.clone());
    if let Some(id) = &id
        && !sessions.may_use(id, user.as_deref())
    {
        tracing::warn!(
            "a request named a session another signed-in user opened: refused as unknown"
        );
        return (
            StatusCode::NOT_FOUND,
            "no such session (it ended or expired): initialize a new one",
        )
            .into_response();
    }
    match id {
        None => {
            if request.method() != Method::POST
                || request.extensions().get::<Initialize>().is_none()
            {
                return next.run(request).await;
            }
            let client = client_of(&request);
            let place = match sessions.reserve(client, user) {
                Ok(place) => place,
                Err(full) => {
                    tracing::warn!(%client, "MCP session refused: too many open");
                    return full.into_response();
                }
            };
            let response = next.run(request).await;
            if let Some(id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                place.opened(id.to_owned());
            }
            response
        }
        Some(id) if request.method() == Method::DELETE => {
            let held = sessions
                .rmcp
                .has_session(&id.as_str().into())
                .await
                .unwrap_or(false);
            if !held {
                return (
                    StatusCode::NOT_FOUND,
                    "no such session (it ended or expired): initialize a new one",
                )
                    .into_response();
            }
            let response = next.run(request).await;
            if response.status().is_success() {
                sessions.forget(&id);
            }
            response
        }
        Some(id) => {
            let busy = sessions.use_session(&id);
            let response = next.run(request).await;
            let streaming = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            match busy {
                // The session stays busy while its stream is open.
                Some(busy) if streaming => {
                    let (parts, body) = response.into_parts();
                    let body = body.into_data_stream().map(move |chunk| {
                        let _busy = &busy;
                        chunk
                    });
                    Response::from_parts(parts, Body::from_stream(body))
                }
                _ => response,
            }
        }
    }
}

/// The client's address, as the accept loop recorded it (loopback when it did not, as in
/// in-process tests).
pub fn client_of(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(max: usize, per_client: usize) -> Arc<Sessions> {
        Sessions::new(
            Arc::default(),
            SessionLimits {
                max,
                per_client,
                idle: Duration::from_secs(60),
            },
        )
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn places_are_capped_per_client_and_in_all_and_given_back() {
        let s = sessions(3, 2);
        let a1 = s.reserve(A, None).ok().unwrap();
        let a2 = s.reserve(A, None).ok().unwrap();
        assert!(matches!(s.reserve(A, None), Err(Full::Client(2))));
        let b1 = s.reserve(B, None).ok().unwrap();
        assert!(matches!(s.reserve(B, None), Err(Full::Server(3))));
        // An initialize that opened no session gives its place back.
        drop(a2);
        a1.opened("s1".into());
        b1.opened("s2".into());
        assert_eq!(s.counts().open, 2);
        let a3 = s.reserve(A, None).ok().unwrap();
        assert!(matches!(s.reserve(A, None), Err(Full::Server(3))));
        drop(a3);
        s.forget("s1");
        assert_eq!(s.counts().open, 1);
        assert!(s.reserve(A, None).is_ok() && s.reserve(A, None).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_with_a_request_in_flight_is_never_idle() {
        let s = sessions(10, 10);
        s.reserve(A, None).ok().unwrap().opened("busy".into());
        s.reserve(A, None).ok().unwrap().opened("quiet".into());
        let busy = s.use_session("busy").unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(s.idle(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.idle(Instant::now()), ["quiet"]);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(s.idle(Instant::now()), ["quiet"]);
        // Its last use is when the request ended: a full idle time from then.
        drop(busy);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(s.idle(Instant::now()), ["quiet"]);
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut idle = s.idle(Instant::now());
        idle.sort();
        assert_eq!(idle, ["busy", "quiet"]);
        assert!(s.use_session("gone").is_none());
    }

    #[test]
    fn a_signed_in_users_session_is_theirs_alone() {
        let s = sessions(10, 10);
        s.reserve(A, Some("ada".into()))
            .ok()
            .unwrap()
            .opened("adas".into());
        s.reserve(A, None).ok().unwrap().opened("anyones".into());
        assert!(s.may_use("adas", Some("ada")));
        assert!(!s.may_use("adas", Some("bob")));
        assert!(!s.may_use("adas", None));
        assert!(s.may_use("anyones", None));
        assert!(!s.may_use("anyones", Some("bob")));
        // Not held here: rmcp answers it (404).
        assert!(s.may_use("unknown", Some("bob")));
    }
}
