//! Running plugin code so that its failures stay its own: its own task, a time limit, and a
//! panic turned into a message.

use std::{future::Future, time::Duration};

/// How isolated work ended when it did not return.
#[derive(Debug)]
pub enum Isolated {
    /// It panicked, with this message.
    Panicked(String),
    /// It did not finish within the limit (and was stopped).
    TimedOut(Duration),
    /// Its task was cancelled before it finished.
    Stopped,
}

/// Run `work` in its own task, for at most `limit`: a panic or a hang there reaches no one
/// else. On a timeout the task is aborted.
pub async fn spawn_limited<T: Send + 'static>(
    limit: Duration,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, Isolated> {
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(joined(join)),
        Err(_) => {
            task.abort();
            Err(Isolated::TimedOut(limit))
        }
    }
}

/// What a task that did not return ended with.
pub fn joined(join: tokio::task::JoinError) -> Isolated {
    match join.try_into_panic() {
        Ok(payload) => Isolated::Panicked(payload_message(&*payload)),
        Err(_) => Isolated::Stopped,
    }
}

/// The message of a task that did not return, for logs and errors.
pub fn panic_message(join: tokio::task::JoinError) -> String {
    match joined(join) {
        Isolated::Panicked(message) => message,
        Isolated::TimedOut(limit) => format!("did not finish within {} s", limit.as_secs_f64()),
        Isolated::Stopped => "stopped before it finished".into(),
    }
}

/// The message a panic was raised with.
pub fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn panics_and_hangs_stay_inside() {
        let panicked = spawn_limited(Duration::from_secs(1), async { panic!("boom") }).await;
        assert!(matches!(panicked, Err(Isolated::Panicked(m)) if m == "boom"));
        let hung = spawn_limited(Duration::from_secs(5), std::future::pending::<()>()).await;
        assert!(matches!(hung, Err(Isolated::TimedOut(d)) if d == Duration::from_secs(5)));
        assert_eq!(
            spawn_limited(Duration::from_secs(1), async { 7 })
                .await
                .unwrap(),
            7
        );
    }
}
