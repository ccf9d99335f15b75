//! What the platform's workers would receive: a consumer of a push queue running beside the connector, recording
//! each message's work, indicators and object count. Messages read twice (after a cut) are counted twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};

use super::rabbit;

/// What the platform's workers would have received: a consumer of the push queue running beside the connector.
pub struct Collector {
    stop: Arc<AtomicBool>,
    messages: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Collected>,
}

#[derive(Default)]
pub struct Collected {
    pub indicator_ids: HashSet<String>,
    /// Messages per `work_id`.
    pub messages_by_work: HashMap<String, u64>,
    /// Messages holding a single object (each one an expectation, by the platform's rule), per `work_id`.
    pub singles_by_work: HashMap<String, u64>,
}

impl Collector {
    pub fn start(queue: String) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let messages = Arc::new(AtomicU64::new(0));
        let (stop_flag, counter) = (stop.clone(), messages.clone());
        let task = tokio::spawn(async move {
            while !rabbit::queue_exists(&queue).await {
                assert!(!stop_flag.load(Ordering::SeqCst), "the push queue {queue} never appeared");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut collected = Collected::default();
            let mut idle_since = Instant::now();
            // Messages are acknowledged once recorded, so that a cut connection (a test cutting the broker's
            // connections) loses none: they come again on the next one.
            'connect: loop {
                let connection = rabbit::connect().await;
                let channel = connection.create_channel().await.expect("channel");
                channel.basic_qos(200, BasicQosOptions::default()).await.expect("qos");
                let mut consumer = channel
                    .basic_consume(
                        queue.as_str().into(),
                        "collector".into(),
                        BasicConsumeOptions::default(),
                        Default::default(),
                    )
                    .await
                    .expect("consume");
                loop {
                    match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                        Ok(Some(Ok(delivery))) => {
                            idle_since = Instant::now();
                            counter.fetch_add(1, Ordering::SeqCst);
                            collect(&delivery.data, &mut collected);
                            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                        }
                        Ok(Some(Err(_)) | None) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue 'connect;
                        }
                        Err(_) => {
                            if stop_flag.load(Ordering::SeqCst) && idle_since.elapsed() > Duration::from_secs(2) {
                                rabbit::close(connection).await;
                                break 'connect;
                            }
                        }
                    }
                }
            }
            collected
        });
        Collector { stop, messages, task }
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::SeqCst)
    }

    /// Waits until the queue has been empty for two seconds, and returns what came.
    pub async fn finish(self) -> Collected {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(120), self.task).await.expect("the collector ends").expect("collector")
    }
}

/// Records one message: its work and the ids of the indicators its bundle holds (found without parsing the bundle
/// whole: platform-split bundles are megabytes).
fn collect(body: &[u8], into: &mut Collected) {
    let envelope: serde_json::Value = serde_json::from_slice(body).expect("envelope");
    let work = envelope["work_id"].as_str().unwrap_or_default().to_owned();
    *into.messages_by_work.entry(work.clone()).or_default() += 1;
    let content = envelope["content"].as_str().expect("content");
    let bundle = base64::engine::general_purpose::STANDARD.decode(content).expect("base64");
    let text = String::from_utf8_lossy(&bundle);
    // Every object, and the bundle itself, carries `"spec_version":"2.1"` once.
    if text.matches("\"spec_version\":\"2.1\"").count() == 2 {
        *into.singles_by_work.entry(work).or_default() += 1;
    }
    let marker = "\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"";
    for (at, _) in text.match_indices(marker) {
        let start = at + marker.len();
        if let Some(id) = text.get(start..start + 47) {
            into.indicator_ids.insert(id.to_owned());
        }
    }
}
