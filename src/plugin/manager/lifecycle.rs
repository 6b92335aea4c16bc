//! Starting, reloading, re-listing and stopping plugins, and following what running plugins
//! report about themselves.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Manager, Offer, Slot, Status,
    discovery::{fingerprint, precheck, variables},
    status::log_status,
};
use crate::plugin::{
    Change, Plugin, PluginError, PluginEvents, PluginSetup,
    isolate::{Isolated, panic_message, spawn_limited},
};

/// Hold every secret the plugins may read (`net::secret::hold`): variables named like one
/// (`*_KEY`, `*_TOKEN`, …) and those a manifest marks `secret = true`.
fn hold_secrets(
    env: &std::collections::HashMap<String, String>,
    found: &[(
        String,
        std::path::PathBuf,
        Result<crate::plugin::Manifest, PluginError>,
    )],
) {
    use crate::net::secret::{hold, is_secret_name};
    for (name, value) in env {
        if is_secret_name(name) {
            hold(value);
        }
    }
    for (_, _, manifest) in found {
        let Ok(manifest) = manifest else { continue };
        for (name, var) in &manifest.env {
            if var.secret
                && let Some(value) = env.get(name)
            {
                hold(value);
            }
        }
    }
}

/// How long a plugin's `shutdown` may take before the others go on without it.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

impl Manager {
    /// Re-read the manifests and apply the difference: new plugins start, removed ones stop,
    /// changed ones (manifest or variables) restart, the rest keep running untouched.
    pub async fn reload(&self) {
        self.reload_forcing(None).await;
        self.tell_replicas().await;
    }

    /// The first load, at start: nothing changed that other replicas need to hear of.
    pub(super) async fn load_first(&self) {
        self.reload_forcing(None).await;
    }

    /// [`Manager::reload`] because another replica reloaded: not announced again.
    pub async fn reload_for_replica(&self) {
        self.reload_forcing(None).await;
    }

    /// Replicas sharing a Redis reload when one does, so that every replica's clients hear
    /// `list_changed` (they usually share the plugins folder, and may not watch it).
    async fn tell_replicas(&self) {
        if let Some(redis) = &self.config.shared {
            redis.publish_reload().await;
        }
    }

    /// Stop and start plugin `name` again (re-reading its manifest), whether or not anything
    /// changed; the rest as [`Manager::reload`]. `false` when there is no such plugin.
    pub async fn restart(&self, name: &str) -> bool {
        let known = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name);
        if known {
            self.reload_forcing(Some(name)).await;
            self.tell_replicas().await;
        }
        known
    }

    async fn reload_forcing(&self, force: Option<&str>) {
        let _guard = self.reloading.lock().await;
        let env = (self.env)();
        let found = self.discover();
        hold_secrets(&env, &found);

        // Readers (statuses, calls) keep seeing every plugin that is not changing: the map is
        // sorted under one write lock, and only what changes leaves it.
        let (stale, fresh) = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            let mut old = std::mem::take(&mut *slots);
            let mut stale = Vec::new();
            let mut fresh = Vec::new();
            for (name, path, manifest) in found {
                let fingerprint = fingerprint(&manifest, &env, &self.config.catalog);
                match old.remove(&name) {
                    Some(slot)
                        if slot.fingerprint == fingerprint
                            && slot.path == path
                            && force != Some(name.as_str()) =>
                    {
                        slots.insert(name, slot);
                    }
                    previous => {
                        if let Some(prev) = previous {
                            stale.push((name.clone(), prev));
                        }
                        fresh.push((name, path, manifest, fingerprint));
                    }
                }
            }
            for (name, slot) in old {
                tracing::info!(plugin = %name, "plugin removed");
                stale.push((name, slot));
            }
            (stale, fresh)
        };
        for (name, slot) in stale {
            self.stop(&name, slot).await;
        }
        // The plugins started now; a dependency is ready when it is here or among the kept.
        let mut kept: BTreeMap<String, Slot> = BTreeMap::new();
        let ready = |kept: &BTreeMap<String, Slot>, name: &str| match kept.get(name) {
            Some(slot) => Some(slot.status.clone()),
            None => self
                .slots
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .map(|slot| slot.status.clone()),
        };

        // Plugins that depend on others start in waves, after those are ready.
        let mut waiting: Vec<Slot> = Vec::new();
        for (name, path, manifest, fingerprint) in fresh {
            let status = match &manifest {
                Err(e) => Status::Failed(e.to_string()),
                Ok(m) => precheck(m, &self.config.catalog, &env),
            };
            let slot = Slot {
                name,
                manifest: manifest.ok(),
                path,
                fingerprint,
                status,
                instance: None,
                offer: Offer::default(),
                refused: Vec::new(),
                down: None,
                loaded: None,
            };
            if slot.status == Status::Ready {
                waiting.push(slot);
            } else {
                let name = slot.name.clone();
                log_status(&name, &slot.status);
                kept.insert(name, slot);
            }
        }
        while !waiting.is_empty() {
            let (ready_now, blocked): (Vec<Slot>, Vec<Slot>) =
                waiting.into_iter().partition(|slot| {
                    deps(slot)
                        .iter()
                        .all(|d| ready(&kept, d) == Some(Status::Ready))
                });
            if ready_now.is_empty() {
                let waiting: Vec<String> = blocked.iter().map(|s| s.name.clone()).collect();
                let cycles: Vec<Option<String>> = blocked
                    .iter()
                    .map(|slot| cycle_from(&slot.name, &blocked))
                    .collect();
                for (mut slot, cycle) in blocked.into_iter().zip(cycles) {
                    let missing: Vec<String> = deps(&slot)
                        .iter()
                        .filter(|d| ready(&kept, d) != Some(Status::Ready))
                        .map(|d| match ready(&kept, d) {
                            Some(status) => format!("`{d}` ({status})"),
                            None if waiting.contains(d) => {
                                format!("`{d}` (which cannot start either)")
                            }
                            None => format!("`{d}` (not found)"),
                        })
                        .collect();
                    slot.status = Status::Failed(match cycle {
                        Some(cycle) => format!("its dependencies go round in a circle: {cycle}"),
                        None => format!("needs plugin {}", missing.join(", ")),
                    });
                    let name = slot.name.clone();
                    log_status(&name, &slot.status);
                    kept.insert(name, slot);
                }
                break;
            }
            let started =
                futures::future::join_all(ready_now.into_iter().map(|slot| self.init(slot, &env)))
                    .await;
            for slot in started {
                let name = slot.name.clone();
                log_status(&name, &slot.status);
                kept.insert(name, slot);
            }
            waiting = blocked;
        }

        let registry = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            slots.extend(kept);
            self.build_registry(&mut slots)
        };
        self.swap(registry);
    }

    /// Ask every running plugin for its offer again and publish it (a plugin called
    /// [`PluginEvents::list_changed`]).
    pub(crate) async fn republish(&self) {
        let _guard = self.reloading.lock().await;
        let instances: Vec<(String, Arc<dyn Plugin>)> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(n, s)| s.instance.clone().map(|i| (n.clone(), i)))
            .collect();
        let mut offers = HashMap::new();
        for (name, plugin) in instances {
            // Its own task: a panic while listing fails this plugin only.
            let offer = tokio::spawn(async move { Offer::of(&*plugin) }).await;
            offers.insert(name, offer.map_err(panic_message));
        }
        let registry = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            for (name, offer) in offers {
                if let Some(slot) = slots.get_mut(&name) {
                    match offer {
                        Ok(offer) => slot.offer = offer,
                        Err(panic) => {
                            slot.instance = None;
                            slot.offer = Offer::default();
                            slot.status =
                                Status::Failed(format!("panicked while listing: {panic}"));
                        }
                    }
                }
            }
            self.build_registry(&mut slots)
        };
        self.swap(registry);
    }

    /// A running plugin reported that it went down (`Some(reason)`: an upstream died, a
    /// connection was lost) or came back (`None`). Its tools are withheld while it is down;
    /// clients get `list_changed` when the tool set changes, and everyone sees the status.
    pub(crate) async fn set_down(&self, plugin: &str, down: Option<String>) {
        let _guard = self.reloading.lock().await;
        let registry = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            match slots.get_mut(plugin) {
                Some(slot) if slot.instance.is_some() && slot.down != down => {
                    match &down {
                        Some(reason) => {
                            tracing::warn!(plugin = %plugin, reason = %reason, "plugin reports it is down")
                        }
                        None => tracing::info!(plugin = %plugin, "plugin reports it is back"),
                    }
                    slot.down = down;
                    Some(self.build_registry(&mut slots))
                }
                _ => None,
            }
        };
        if let Some(registry) = registry {
            self.swap(registry);
            let _ = self.changed.send(Change::Status(plugin.to_owned()));
        }
    }

    /// Publish `registry` and tell clients what changed.
    pub(super) fn swap(&self, registry: crate::plugin::Registry) {
        let registry = Arc::new(registry);
        let previous = self.published.replace(registry.clone());
        let (tools, resources, prompts) = registry.differs(&previous);
        // No receivers is fine: nobody is connected yet.
        for (changed, change) in [
            (tools, Change::Tools),
            (resources, Change::Resources),
            (prompts, Change::Prompts),
        ] {
            if changed {
                let _ = self.changed.send(change);
            }
        }
    }

    async fn init(&self, mut slot: Slot, env: &HashMap<String, String>) -> Slot {
        let Some(manifest) = &slot.manifest else {
            return slot;
        };
        let Some(kind) = self.config.catalog.kind(&manifest.kind).cloned() else {
            slot.status = Status::Failed(format!("no plugin kind `{}`", manifest.kind));
            return slot;
        };
        let setup = PluginSetup {
            name: manifest.name.clone(),
            kind: manifest.kind.clone(),
            implementation: manifest.builtin().to_owned(),
            dir: manifest
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            manifest_path: manifest.path.clone(),
            manifest_source: manifest.source.clone(),
            env: variables(manifest, &self.config.catalog)
                .into_iter()
                .filter_map(|k| env.get(&k).map(|v| (k, v.clone())))
                .collect(),
            events: PluginEvents::new(self.changed.clone(), self.me.clone(), &manifest.name),
            serving: self.config.serving,
            shared: self.config.shared.clone(),
        };
        let started = Instant::now();
        // Its own task: a panic or a hang during init fails this plugin only.
        let init = spawn_limited(self.config.init_timeout, async move {
            let plugin = kind.start(setup).await?;
            let offer = Offer::of(&*plugin);
            Ok::<_, PluginError>((plugin, offer))
        });
        match init.await {
            Ok(Ok((plugin, offer))) => {
                tracing::debug!(plugin = %manifest.name, ms = started.elapsed().as_millis() as u64, "plugin initialised");
                slot.instance = Some(plugin);
                slot.loaded = Some(started.elapsed());
                slot.offer = offer;
                slot.status = Status::Ready;
            }
            Ok(Err(e)) => slot.status = Status::Failed(e.to_string()),
            Err(Isolated::Panicked(message)) => {
                slot.status = Status::Failed(format!("init panicked: {message}"))
            }
            Err(Isolated::TimedOut(limit)) => {
                slot.status = Status::Failed(format!(
                    "init did not finish within {} s",
                    limit.as_secs_f64()
                ))
            }
            Err(Isolated::Stopped) => {
                slot.status = Status::Failed("init was stopped before it finished".into())
            }
        }
        slot
    }

    async fn stop(&self, name: &str, slot: Slot) {
        {
            let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
            if models.as_ref().is_some_and(|(owner, _)| owner == name) {
                *models = None;
            }
        }
        if let Some(plugin) = slot.instance {
            // A hanging or panicking shutdown must not hold up the others.
            if let Err(Isolated::TimedOut(_)) =
                spawn_limited(SHUTDOWN_LIMIT, plugin.shutdown()).await
            {
                tracing::warn!(plugin = %name, "plugin did not shut down within {} s", SHUTDOWN_LIMIT.as_secs());
            }
        }
    }

    /// Stop every plugin (on server exit).
    pub async fn shutdown(&self) {
        let slots = std::mem::take(&mut *self.slots.write().unwrap_or_else(|e| e.into_inner()));
        for (name, slot) in slots {
            self.stop(&name, slot).await;
        }
    }
}

fn deps(slot: &Slot) -> &[String] {
    slot.manifest
        .as_ref()
        .map_or(&[], |m| &m.dependencies.plugins)
}

/// The dependency circle `start` is on, among the plugins still waiting, as
/// "`a` → `b` → `a`"; `None` when it only waits on one that is on a circle or missing.
fn cycle_from(start: &str, waiting: &[Slot]) -> Option<String> {
    let deps_of = |name: &str| {
        waiting
            .iter()
            .find(|s| s.name == name)
            .map(deps)
            .unwrap_or(&[])
    };
    // Depth-first along waiting dependencies, remembering the path.
    fn walk<'a>(
        at: &'a str,
        start: &str,
        path: &mut Vec<&'a str>,
        deps_of: &dyn Fn(&str) -> &'a [String],
    ) -> bool {
        for next in deps_of(at) {
            if next == start {
                path.push(next);
                return true;
            }
            if path.contains(&next.as_str()) {
                continue;
            }
            path.push(next);
            if walk(next, start, path, deps_of) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start];
    walk(start, start, &mut path, &deps_of).then(|| {
        path.iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(" → ")
    })
}
