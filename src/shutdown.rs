//! Graceful shutdown: SIGTERM or Ctrl-C trips a flag that every long task checks between units of work (a file, a
//! chunk of pieces, a sleep), so the connector stops taking new work, drains confirms and exits within a bounded time.

use tokio::sync::watch;

/// A shared, clonable shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self { sender, receiver }
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once shutdown is asked for.
    pub async fn triggered(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration` unless shutdown comes first; returns false when it did.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.triggered() => false,
        }
    }

    /// Trips the signal on SIGTERM or SIGINT (Ctrl-C), from a background task.
    pub fn listen_for_signals(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutdown requested: finishing the current step");
            shutdown.trigger();
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
    use std::time::Duration;

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
}
