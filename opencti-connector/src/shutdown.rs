//! Graceful shutdown: SIGTERM or Ctrl-C cancels one token that every long task watches between units of work (a
//! file, a chunk of messages, a sleep), and every task the runtime spawns is tracked, so that shutdown can wait
//! for all of them before the process exits.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A shared, clonable shutdown signal and the tasks to wait for.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown is asked for.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// The token itself, for code that selects on it.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Sleeps for `duration` unless shutdown comes first; returns false when it did.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.token.cancelled() => false,
        }
    }

    /// Spawns a task that shutdown waits for ([`Shutdown::wait_for_tasks`]). The task should itself watch
    /// [`Shutdown::triggered`] to end. It logs where its spawner logs (the same `tracing` subscriber).
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        use tracing::instrument::WithSubscriber;
        self.tasks.spawn(task.with_current_subscriber())
    }

    /// Waits, at most `limit`, for every task spawned through [`Shutdown::spawn`] to end; returns whether they all
    /// did. No task can be spawned afterwards.
    pub async fn wait_for_tasks(&self, limit: Duration) -> bool {
        self.tasks.close();
        let finished = tokio::time::timeout(limit, self.tasks.wait()).await.is_ok();
        if !finished {
            tracing::warn!(tasks = self.tasks.len(), "tasks still running at exit");
        }
        finished
    }

    /// Trips the signal on SIGTERM or SIGINT (Ctrl-C), from a background task.
    pub fn listen_for_signals(&self) {
        let shutdown = self.clone();
        // Not tracked: it ends only with a signal, and waiting for it would hold the exit.
        tokio::spawn(async move {
            tokio::select! {
                signal = wait_for_signal() => {
                    tracing::info!(signal, "shutdown requested: finishing the current step");
                    shutdown.trigger();
                }
                () = shutdown.triggered() => {}
            }
        });
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_ends_early_on_shutdown() {
        let shutdown = Shutdown::new();
        assert!(shutdown.sleep(Duration::from_millis(1)).await);
        let other = shutdown.clone();
        tokio::spawn(async move { other.trigger() });
        assert!(!shutdown.sleep(Duration::from_secs(60)).await);
        assert!(shutdown.is_triggered());
        shutdown.triggered().await;
    }

    #[tokio::test]
    async fn shutdown_waits_for_tracked_tasks() {
        let shutdown = Shutdown::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let watcher = shutdown.clone();
        shutdown.spawn(async move {
            watcher.triggered().await;
            // Some cleanup after the signal, which the exit must wait for.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send(());
        });
        shutdown.trigger();
        assert!(shutdown.wait_for_tasks(Duration::from_secs(5)).await);
        assert!(done_rx.await.is_ok(), "the task finished its cleanup before the wait returned");

        let stuck = Shutdown::new();
        stuck.spawn(std::future::pending::<()>());
        assert!(!stuck.wait_for_tasks(Duration::from_millis(20)).await, "a task that never ends is reported");
    }
}
