//! Prometheus metrics (`CONNECTOR_EXPOSE_METRICS`): process-wide counters updated where things happen, served as
//! the text exposition format on `http://0.0.0.0:<CONNECTOR_METRICS_PORT>/metrics`.

use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    UpToDate,
    Skipped,
    Failed,
    Interrupted,
}

impl RunOutcome {
    const ALL: [RunOutcome; 5] = [Self::Success, Self::UpToDate, Self::Skipped, Self::Failed, Self::Interrupted];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::UpToDate => "up_to_date",
            Self::Skipped => "skipped_queue_full",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    runs: [AtomicU64; 5],
    trails_sent: AtomicU64,
    trails_revoked: AtomicU64,
    lines_skipped: AtomicU64,
    messages_published: AtomicU64,
    retries: AtomicU64,
    last_success_seconds: AtomicU64,
    last_run_duration_millis: AtomicU64,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    pub fn run_ended(&self, outcome: RunOutcome, duration: std::time::Duration) {
        let index = RunOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or_default();
        self.runs[index].fetch_add(1, Ordering::Relaxed);
        self.last_run_duration_millis.store(duration.as_millis().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
        if outcome == RunOutcome::Success {
            let now = proto_stix::Timestamp::now().unix_seconds();
            self.last_success_seconds.store(now.try_into().unwrap_or_default(), Ordering::Relaxed);
        }
    }

    pub fn trails(&self, sent: u64, revoked: u64, skipped_lines: u64) {
        self.trails_sent.fetch_add(sent, Ordering::Relaxed);
        self.trails_revoked.fetch_add(revoked, Ordering::Relaxed);
        self.lines_skipped.fetch_add(skipped_lines, Ordering::Relaxed);
    }

    pub fn messages(&self, published: u64) {
        self.messages_published.fetch_add(published, Ordering::Relaxed);
    }

    /// A call to OpenCTI, GitHub or RabbitMQ is being retried.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        let _ = writeln!(out, "# HELP maltrail_runs_total Runs by outcome.\n# TYPE maltrail_runs_total counter");
        for (outcome, runs) in RunOutcome::ALL.iter().zip(&self.runs) {
            let _ = writeln!(
                out,
                "maltrail_runs_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                runs.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "maltrail_trails_sent_total",
            "Indicators sent active.",
            self.trails_sent.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "maltrail_trails_revoked_total",
            "Indicators sent revoked.",
            self.trails_revoked.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "maltrail_lines_skipped_total",
            "Trail lines skipped (malformed, too broad).",
            self.lines_skipped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "maltrail_messages_published_total",
            "Messages published to the platform's queue and confirmed.",
            self.messages_published.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "maltrail_retries_total",
            "Calls to OpenCTI, GitHub or RabbitMQ retried.",
            self.retries.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP maltrail_last_success_timestamp_seconds End of the last successful run.\n\
             # TYPE maltrail_last_success_timestamp_seconds gauge\nmaltrail_last_success_timestamp_seconds {}",
            self.last_success_seconds.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP maltrail_last_run_duration_seconds Duration of the last run.\n\
             # TYPE maltrail_last_run_duration_seconds gauge\nmaltrail_last_run_duration_seconds {:.3}",
            self.last_run_duration_millis.load(Ordering::Relaxed) as f64 / 1000.0
        );
        out
    }
}

/// Serves `/metrics` on `listener` until the task is dropped. A tiny HTTP/1.1 responder: one request per
/// connection, enough for Prometheus and curl.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait instead of spinning on the error.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request)).await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&request[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", global().render())
            } else {
                ("404 Not Found", "see /metrics\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let metrics = Metrics::default();
        metrics.run_ended(RunOutcome::Success, std::time::Duration::from_millis(1500));
        metrics.trails(10, 2, 1);
        metrics.messages(40);
        metrics.retry();
        let text = metrics.render();
        assert!(text.contains("maltrail_runs_total{outcome=\"success\"} 1"), "{text}");
        assert!(text.contains("maltrail_runs_total{outcome=\"failed\"} 0"));
        assert!(text.contains("maltrail_trails_sent_total 10"));
        assert!(text.contains("maltrail_trails_revoked_total 2"));
        assert!(text.contains("maltrail_messages_published_total 40"));
        assert!(text.contains("maltrail_retries_total 1"));
        assert!(text.contains("maltrail_last_run_duration_seconds 1.500"));
        assert!(!text.contains("maltrail_last_success_timestamp_seconds 0\n"));
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));
        let body = reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap();
        assert!(body.contains("# TYPE maltrail_runs_total counter"));
        let missing = reqwest::get(format!("http://{address}/other")).await.unwrap();
        assert_eq!(missing.status(), 404);
        server.abort();
    }
}
