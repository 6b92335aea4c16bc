//! Resource subscriptions counted across clients: the plugin that serves a resource hears when
//! its first subscriber comes and when its last one goes (an upstream MCP server is asked to
//! `resources/subscribe` then, and to `resources/unsubscribe` when nobody listens), and
//! clients' roots changes passed to every plugin.

use std::sync::Weak;

use super::Manager;

/// One client's subscription to a resource, counted while it lives.
pub struct Watch {
    manager: Weak<Manager>,
    uri: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.upgrade() {
            manager.unwatch(&self.uri);
        }
    }
}

impl Manager {
    /// Count a subscriber of `uri` (a published resource, or one a template names) while the
    /// returned guard lives.
    pub fn watch(&self, uri: &str) -> Watch {
        let first = {
            let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            let count = watches.entry(uri.to_owned()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            self.tell_watched(uri, true);
        }
        Watch {
            manager: self.me.clone(),
            uri: uri.to_owned(),
        }
    }

    fn unwatch(&self, uri: &str) {
        let last = {
            let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            match watches.get_mut(uri) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    watches.remove(uri);
                    true
                }
                None => false,
            }
        };
        if last {
            self.tell_watched(uri, false);
        }
    }

    /// A client's roots changed: every plugin hears it, with `client` to ask for them.
    pub fn roots_changed(&self, client: &crate::plugin::ToolContext) {
        let instances: Vec<_> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|slot| slot.instance.clone())
            .collect();
        for instance in instances {
            spawn(instance.roots_changed(client));
        }
    }

    fn tell_watched(&self, uri: &str, subscribed: bool) {
        let Some((plugin, ..)) = self.registry().resolve(uri) else {
            return;
        };
        let instance = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*plugin)
            .and_then(|slot| slot.instance.clone());
        let Some(instance) = instance else { return };
        spawn(instance.watch(uri, subscribed));
    }
}

fn spawn(told: futures::future::BoxFuture<'static, ()>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(told)),
        // The last guards go with the runtime at exit: nothing to tell any more.
        Err(_) => drop(told),
    }
}
