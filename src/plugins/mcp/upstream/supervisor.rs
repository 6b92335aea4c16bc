//! The connection's life: starting the child (or reaching the remote server), initializing
//! it, publishing what it offers, and the supervisor that keeps it, restarting a server that
//! crashed or hung with a back-off.

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); upstreams use them.

use super::*;

/// Connect to the server (start the child, or reach the remote one), initialize it, list
/// what it offers and publish it.
pub(super) async fn connect(
    shared: &Arc<Shared>,
    launch: &Launch,
    first: bool,
) -> Result<Service, String> {
    let relist = Arc::new(tokio::sync::Notify::new());
    let client = Client {
        shared: shared.clone(),
        relist: relist.clone(),
    };
    let service = match &launch.remote {
        Some(remote) => connect_remote(launch, remote, client).await?,
        None => connect_child(shared, launch, client).await?,
    };
    let peer = service.peer().clone();
    // Back serving nothing where it served tools before: not back (its tools stay listed,
    // answering that it is being started again, rather than vanishing from clients' lists).
    publish(shared, &peer, !first).await?;
    *shared.peer.write().unwrap_or_else(|e| e.into_inner()) = Ok(peer.clone());
    shared.connected.notify_waiters();
    // What clients were subscribed to before (a restarted server has forgotten it).
    let watched: Vec<String> = shared
        .watched
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    if !watched.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for uri in watched {
                subscription(&shared, &peer, uri, true).await;
            }
        });
    }
    Ok((service, relist))
}

/// Ask the upstream to send (or stop sending) `notifications/resources/updated` for `uri`,
/// if it offers subscriptions. A server without them may still send updates; they are
/// relayed all the same.
pub(super) async fn subscription(
    shared: &Shared,
    peer: &Peer<RoleClient>,
    uri: String,
    subscribed: bool,
) {
    let offered = peer
        .peer_info()
        .and_then(|info| {
            info.capabilities
                .resources
                .as_ref()
                .and_then(|r| r.subscribe)
        })
        .unwrap_or(false);
    if !offered {
        return;
    }
    let asked = if subscribed {
        peer.subscribe(SubscribeRequestParams::new(uri.clone()))
            .await
    } else {
        peer.unsubscribe(UnsubscribeRequestParams::new(uri.clone()))
            .await
    };
    if let Err(e) = asked {
        tracing::warn!(
            plugin = %shared.plugin,
            uri = %crate::plugin::clip_name(&uri),
            error = %e,
            "the MCP server refused a resource subscription change"
        );
    }
}

/// Start the child and initialize it over its stdio.
pub(super) async fn connect_child(
    shared: &Arc<Shared>,
    launch: &Launch,
    client: Client,
) -> Result<RunningService<RoleClient, Client>, String> {
    let mut command = tokio::process::Command::new(&launch.program);
    // The child gets what a program needs to run and what its manifest gives it: never
    // plugboard's own keys (an MCP server sees a token only when its manifest names it).
    command.env_clear();
    for key in INHERITED {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command
        .args(&launch.args)
        .envs(&launch.env)
        .current_dir(&launch.cwd);
    let mut wrapped = process_wrap::tokio::CommandWrap::from(command);
    // Its own process group: stopping it stops whatever it started (npx → node).
    wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
    let (transport, stderr) = TokioChildProcess::builder(wrapped)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", launch.program.display()))?;
    *shared.group.lock().unwrap_or_else(|e| e.into_inner()) = transport.id();
    if let Some(stderr) = stderr {
        tokio::spawn(read_stderr(shared.clone(), stderr));
    }
    let transport = client.ordered(transport);
    initialize(launch, client.serve(transport))
        .await
        .map_err(|e| with_stderr(shared, e))
}

/// The `initialize` handshake, within the manifest's time.
pub(super) async fn initialize<E: std::fmt::Display>(
    launch: &Launch,
    serve: impl Future<Output = Result<RunningService<RoleClient, Client>, E>>,
) -> Result<RunningService<RoleClient, Client>, String> {
    match tokio::time::timeout(launch.init_timeout, serve).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(format!("initialize failed: {}", tidy(&e.to_string()))),
        Err(_) => Err(format!(
            "the server did not answer initialize within {} s",
            launch.init_timeout.as_secs_f64()
        )),
    }
}

/// At most `max` characters of `text` (an upstream's words can be long).
pub(super) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// rmcp's transport errors without the type names they carry
/// (`Send message error Transport [rmcp::…] error: Client error: …`).
pub(super) fn tidy(error: &str) -> String {
    let error = match error.rfind("] error: ") {
        Some(at) => &error[at + "] error: ".len()..],
        None => error,
    };
    error
        .trim_start_matches("Client error: ")
        .trim_end_matches(", when send initialize request")
        .to_owned()
}

/// Reach a remote server: Streamable HTTP, or legacy SSE when the manifest says so or the
/// server does not speak Streamable HTTP.
pub(super) async fn connect_remote(
    launch: &Launch,
    remote: &super::super::remote::Remote,
    client: Client,
) -> Result<RunningService<RoleClient, Client>, String> {
    use super::super::remote::Transport;
    let streamable = async |client: Client| {
        let link = super::super::remote::LinkSlot::default();
        *client
            .shared
            .direct
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((link.clone(), client.relist.clone()));
        let transport = client.ordered(remote.streamable(client.shared.releases.clone(), link)?);
        initialize(launch, client.serve(transport)).await
    };
    let sse = async |client: Client| {
        // Legacy SSE: every message goes through rmcp's client.
        *client
            .shared
            .direct
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        let transport = remote.sse(launch.init_timeout).await?;
        let transport = client.ordered(transport);
        initialize(launch, client.serve(transport)).await
    };
    match remote.transport {
        Some(Transport::StreamableHttp) => streamable(client).await,
        Some(Transport::Sse) => sse(client).await,
        None => match streamable(client.clone()).await {
            Ok(service) => Ok(service),
            Err(first) => match sse(client).await {
                Ok(service) => {
                    tracing::info!(plugin = %remote.url, "the server speaks legacy SSE, not Streamable HTTP (set transport = \"sse\" to skip the first try)");
                    Ok(service)
                }
                Err(second) => Err(format!(
                    "{}: Streamable HTTP: {first}; legacy SSE: {second}",
                    remote.url
                )),
            },
        },
    }
}

/// Keep the connection: restart the child when it goes, until the plugin stops.
pub(super) async fn supervise(
    shared: Arc<Shared>,
    launch: Launch,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut attempt = 0u32;
    let mut why = String::new();
    if shared.dormant.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            () = shared.wake.notified() => {}
        }
        tracing::info!(plugin = %shared.plugin, "first request: starting the MCP server");
    }
    shared.set_condition(Some(Condition {
        attempt: 0,
        next: tokio::time::Instant::now(),
        why: String::new(),
    }));
    let mut service = None;
    match connect(&shared, &launch, true).await {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            service = Some(s);
        }
        Err(e) => {
            shared.kill_group();
            // Still waited for: the plugin fails with this. Otherwise it is served
            // already, and the server is started again, as after a crash.
            if ready.send(Err(e.clone())).is_ok() {
                return;
            }
            tracing::warn!(plugin = %shared.plugin, error = %e, "MCP server did not start");
            why = e;
            *shared.peer.write().unwrap_or_else(|e| e.into_inner()) = Err(why.clone());
        }
    }
    loop {
        if let Some((running, relist)) = service.take() {
            shared.set_condition(None);
            let since = tokio::time::Instant::now();
            let token = running.cancellation_token();
            let peer = running.peer().clone();
            let closed = running.waiting();
            tokio::pin!(closed);
            // Health: a ping on an interval; no answer in time is a hung server.
            let mut pings = launch.ping.map(|every| {
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                (ticker, every.min(PING_TIMEOUT_MAX))
            });
            let ping = async |pings: &mut Option<(tokio::time::Interval, Duration)>| match pings {
                Some((ticker, _)) => {
                    ticker.tick().await;
                }
                None => std::future::pending().await,
            };
            why = loop {
                tokio::select! {
                    _ = shared.stop.cancelled() => {
                        token.cancel();
                        let _ = closed.await;
                        return;
                    }
                    () = ping(&mut pings) => {
                        let wait = pings.as_ref().map_or(PING_TIMEOUT_MAX, |p| p.1);
                        let request = ClientRequest::PingRequest(Default::default());
                        let answered = tokio::time::timeout(wait, peer.send_request(request)).await;
                        if !matches!(answered, Ok(Ok(_))) {
                            token.cancel();
                            break format!(
                                "it stopped answering (no answer to a ping within {} s)",
                                wait.as_secs_f64()
                            );
                        }
                    }
                    _ = relist.notified() => {
                        if let Err(e) = publish(&shared, &peer, false).await {
                            tracing::warn!(plugin = %shared.plugin, error = %e, "could not list the upstream's tools again");
                        }
                    }
                    quit = &mut closed => break match &launch.remote {
                        Some(remote) => format!("the connection to {} ended ({quit:?})", remote.url),
                        None => format!("it exited ({quit:?})"),
                    },
                }
            };
            // Anything the server started is stopped with it before it starts again.
            shared.kill_group();
            why = with_stderr(&shared, why);
            tracing::warn!(plugin = %shared.plugin, reason = %why, "MCP server stopped; starting it again");
            *shared.peer.write().unwrap_or_else(|e| e.into_inner()) = Err(why.clone());
            if since.elapsed() >= HEALTHY {
                backoff = BACKOFF_FIRST;
                attempt = 0;
            }
        }
        attempt += 1;
        shared.set_condition(Some(Condition {
            attempt,
            next: tokio::time::Instant::now() + backoff,
            why: why.clone(),
        }));
        // Requests waiting for a first start hear that it failed.
        shared.connected.notify_waiters();
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        match connect(&shared, &launch, false).await {
            Ok(s) => {
                tracing::info!(plugin = %shared.plugin, attempt, "MCP server started again");
                service = Some(s);
            }
            Err(e) => {
                shared.kill_group();
                tracing::warn!(plugin = %shared.plugin, attempt, next_in_s = backoff.as_secs(), error = %e, "MCP server did not start");
                why = e;
                *shared.peer.write().unwrap_or_else(|e| e.into_inner()) =
                    Err(format!("restarting (attempt {attempt}): {why}"));
            }
        }
    }
}

/// The child's stderr: logged (secrets masked) and its last lines kept.
pub(super) async fn read_stderr(shared: Arc<Shared>, stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = shared.secrets.mask(&line).into_owned();
        let line: String = line.chars().take(500).collect();
        tracing::debug!(plugin = %shared.plugin, "upstream stderr: {}", line.escape_debug());
        let mut kept = shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

/// `reason`, and what the child last said on stderr.
pub(super) fn with_stderr(shared: &Shared, reason: String) -> String {
    let kept = shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
    let last: Vec<&str> = kept
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    if last.is_empty() {
        reason
    } else {
        format!("{reason}; its stderr ended: {}", last.join(" / "))
    }
}
