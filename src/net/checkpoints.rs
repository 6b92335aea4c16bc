//! Checkpoints of long jobs (bulk imports, organize runs), so that a job run again continues
//! where it stopped.
//!
//! Each is a file in the state folder (written aside, then renamed: a kill leaves the old one
//! or the new one). When replicas share a Redis, each save is also kept there under
//! `plugboard:checkpoint:<kind>:<job>` (a week, renewed by every save), and a load asks Redis
//! first: an import stopped on one replica (killed, restarted, moved off by the load
//! balancer) resumes on whichever replica the client's next call reaches. A Redis that cannot
//! be reached costs nothing but that: the file is still written and read.
//!
//! While a job runs it holds a lease in Redis (`plugboard:running:<kind>:<job>`, renewed every
//! [`RENEW`]), so the same job started on a second replica at once is refused with a reason
//! rather than run twice; a replica that dies lets go within [`LEASE`].

use std::{path::PathBuf, time::Duration};

use redis::{AsyncCommands, Script};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

use super::shared::Redis;

/// How long a checkpoint is kept in Redis after its last save.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a running job's lease lasts without being renewed.
pub const LEASE: Duration = Duration::from_secs(6);
/// How often a running job renews its lease.
const RENEW: Duration = Duration::from_secs(2);

/// Renew the lease only if it is still ours; `0` when it is not.
const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";
/// Let the lease go only if it is still ours.
const FREE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";
static RENEW_LEASE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(RENEW_SCRIPT));
static FREE_LEASE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(FREE_SCRIPT));

/// Where one kind of job keeps its checkpoints.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    kind: &'static str,
    dir: PathBuf,
    shared: Option<Redis>,
}

/// A job's hold on its lease; let go when dropped.
pub struct Running {
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Checkpoints {
    /// `kind` names the jobs in Redis keys and logs (`import`, `organize`).
    pub fn new(kind: &'static str, dir: PathBuf, shared: Option<Redis>) -> Self {
        Self { kind, dir, shared }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn path(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    fn key(&self, what: &str, job: &str) -> String {
        format!("plugboard:{what}:{}:{job}", self.kind)
    }

    /// The checkpoint of `job`: the one in Redis when replicas share one, else the file.
    pub async fn load<T: DeserializeOwned>(&self, job: &str) -> Option<T> {
        if let Some(redis) = &self.shared {
            let mut connection = redis.connection();
            match connection
                .get::<_, Option<Vec<u8>>>(self.key("checkpoint", job))
                .await
            {
                Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                    Ok(checkpoint) => return Some(checkpoint),
                    Err(e) => {
                        tracing::warn!(kind = self.kind, job, error = %e, "a checkpoint in Redis could not be read; using the file")
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(kind = self.kind, job, redis = %redis.host(), error = ?e.kind(), "cannot read checkpoints from Redis; using this replica's file")
                }
            }
        }
        std::fs::read(self.path(job))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Keep `checkpoint` as `job`'s: the file, and Redis when shared. Failures are logged;
    /// the job goes on (what is lost is only how far a later run can skip ahead).
    pub async fn save<T: Serialize>(&self, job: &str, checkpoint: &T) {
        let bytes = serde_json::to_vec(checkpoint).unwrap_or_default();
        let path = self.path(job);
        let tmp = path.with_extension("tmp");
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(kind = self.kind, error = %e, path = %path.display(), "could not save the checkpoint");
        }
        if let Some(redis) = &self.shared {
            let mut connection = redis.connection();
            let kept: Result<(), _> = connection
                .set_ex(self.key("checkpoint", job), bytes, KEEP.as_secs())
                .await;
            if let Err(e) = kept {
                tracing::warn!(kind = self.kind, job, redis = %redis.host(), error = ?e.kind(), "could not keep the checkpoint in Redis; only this replica has it");
            }
        }
    }

    /// Forget `job`'s checkpoint (it finished).
    pub async fn remove(&self, job: &str) {
        let _ = std::fs::remove_file(self.path(job));
        if let Some(redis) = &self.shared {
            let mut connection = redis.connection();
            let removed: Result<(), _> = connection.del(self.key("checkpoint", job)).await;
            if let Err(e) = removed {
                tracing::warn!(kind = self.kind, job, redis = %redis.host(), error = ?e.kind(), "could not remove a finished job's checkpoint from Redis");
            }
        }
    }

    /// Take `job`'s lease for as long as the returned [`Running`] lives. `Err` says why not:
    /// another replica runs the same job now. Without Redis, or when it cannot be reached,
    /// there is no lease to take (one replica's own calls are not refused).
    pub async fn run(&self, job: &str) -> Result<Running, String> {
        let stop = CancellationToken::new();
        let Some(redis) = &self.shared else {
            return Ok(Running { stop });
        };
        let key = self.key("running", job);
        let me = format!("{}:{}", redis.replica_id(), uuid::Uuid::new_v4().simple());
        let mut connection = redis.connection();
        let taken: Result<Option<String>, _> = redis::cmd("SET")
            .arg(&key)
            .arg(&me)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut connection)
            .await;
        match taken {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!(
                    "this same {} is running now on another replica; it continues there (call \
                     again in a few seconds if that replica stopped: it resumes from its \
                     checkpoint)",
                    self.kind
                ));
            }
            Err(e) => {
                tracing::warn!(kind = self.kind, job, redis = %redis.host(), error = ?e.kind(), "cannot take the job's lease in Redis; running without one");
                return Ok(Running { stop });
            }
        }
        let ct = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(RENEW) => {
                        let renewed: Result<i64, _> = RENEW_LEASE
                            .key(&key)
                            .arg(&me)
                            .arg(LEASE.as_millis() as u64)
                            .invoke_async(&mut connection)
                            .await;
                        if let Ok(0) = renewed {
                            tracing::warn!(key = %key, "a running job's lease was lost (Redis restarted, or the job stalled)");
                        }
                    }
                    () = ct.cancelled() => break,
                }
            }
            let _: Result<i64, _> = FREE_LEASE
                .key(&key)
                .arg(&me)
                .invoke_async(&mut connection)
                .await;
        });
        Ok(Running { stop })
    }
}
