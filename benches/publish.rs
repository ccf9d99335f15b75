//! Publishing throughput to the local RabbitMQ: the connector's publisher against a bare lapin publisher sending the
//! same message bytes with the same confirm window, in the same run, alternating, for several window sizes.
//!
//! Run: `cargo bench --bench publish` (RabbitMQ on 127.0.0.1:5672). Options: `-- --trails N` (default 100000),
//! `--windows 64,256,1024,4096`, `--rounds 2`. The messages are the pycti pieces (client split mode, in their
//! envelopes) of the first trails of the real snapshot.
//!
//! With `--pycti-python PATH` (a Python with pika, e.g. a venv with pycti installed), the first `--pycti-messages N`
//! messages (default 20000) are also published the way pycti publishes (tools/bench/pycti_publish.py), next to ours
//! on the same messages in the same run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use maltrail_connector::convert::{ConvertOptions, Converter, Times, file_trails};
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::parse_file;
use opencti_connector::send::Sequencer;
use opencti_connector::send::{AmqpEndpoint, Envelope, PublishOptions, Publisher};
use proto_stix::{ObjectType, StixId, Timestamp};

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const EXCHANGE: &str = "amq.direct";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// The enveloped pieces of the first `trails` trails of the snapshot.
fn messages(trails: usize) -> (Vec<Vec<u8>>, usize) {
    let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/maltrail/trails/static"));
    assert!(root.is_dir(), "the Maltrail snapshot is not at {}", root.display());
    let converter = Converter::new(ConvertOptions::default());
    let now = Timestamp::now();
    let times = Times::new(now, now, maltrail_connector::convert::DEFAULT_VALIDITY);
    let envelope = Envelope { applicant_id: uuid::Uuid::new_v4().to_string(), work_id: Some("work_bench".into()) };
    let mut out = Vec::new();
    let mut taken = 0;
    for path in list_trail_files(&root).expect("listing") {
        if taken >= trails {
            break;
        }
        let content = read_trail_file(&root, &path).expect("readable");
        let Some(file) = parse_file(&path, &content) else { continue };
        if !converter.wants(file.category) {
            continue;
        }
        let file_converter = converter.file(&file, times);
        let mut sequencer = Sequencer::new(StixId::random(ObjectType::Bundle));
        let mut sequence = 1;
        let mut push = |object: proto_stix::StixObject<'_>| {
            if let Some(piece) = sequencer.piece(&object) {
                out.push(envelope.message(sequence, &piece.bundle));
                sequence += 1;
            }
        };
        converter.shared_objects().into_iter().for_each(&mut push);
        file_converter.header().into_iter().for_each(&mut push);
        for trail in file_trails(&file).iter().take(trails - taken) {
            file_converter.trail_objects(trail, false, &mut push);
            taken += 1;
        }
    }
    (out, taken)
}

async fn ours(messages: &[Vec<u8>], queue: &str, window: usize) -> Duration {
    let endpoint = AmqpEndpoint::new("127.0.0.1", 5672, "/", false, "guest", "guest");
    let options = PublishOptions {
        exchange: EXCHANGE.into(),
        routing_key: queue.into(),
        window,
        window_bytes: 1 << 30,
        max_outage: Duration::from_secs(30),
        connection_name: "bench-ours".into(),
    };
    let mut publisher = Publisher::connect(endpoint, options).await.expect("connect");
    let started = Instant::now();
    for message in messages {
        publisher.publish(message.clone()).await.expect("publish");
    }
    publisher.flush().await.expect("flush");
    let elapsed = started.elapsed();
    publisher.close().await;
    elapsed
}

/// The simplest correct pipelined publisher with lapin: a queue of confirms, the oldest awaited when full.
async fn bare(messages: &[Vec<u8>], queue: &str, window: usize) -> Duration {
    let connection = Connection::connect(URI, ConnectionProperties::default()).await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let properties = BasicProperties::default().with_delivery_mode(2).with_content_encoding("utf-8".into());
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    for message in messages {
        if in_flight.len() >= window {
            let confirm: lapin::PublisherConfirm = in_flight.pop_front().expect("non-empty");
            assert!(matches!(confirm.await.expect("confirm"), Confirmation::Ack(None)));
        }
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirm = channel
            .basic_publish(EXCHANGE.into(), queue.into(), options, message, properties.clone())
            .await
            .expect("publish");
        in_flight.push_back(confirm);
    }
    for confirm in in_flight {
        assert!(matches!(confirm.await.expect("confirm"), Confirmation::Ack(None)));
    }
    let elapsed = started.elapsed();
    let _ = connection.close(200, "bye".into()).await;
    elapsed
}

#[tokio::main]
async fn main() {
    let trails: usize = arg("--trails").and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(2);
    let windows: Vec<usize> = arg("--windows")
        .unwrap_or_else(|| "64,256,1024,4096".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let (messages, taken) = messages(trails);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    println!(
        "{} messages ({:.1} MB) from {taken} trails; {rounds} rounds per window, ours and bare alternating",
        messages.len(),
        bytes as f64 / 1e6
    );

    let admin = Connection::connect(URI, ConnectionProperties::default())
        .await
        .expect("RabbitMQ is not answering on 127.0.0.1:5672: start it with `rabbitmq-server -detached`");
    let channel = admin.create_channel().await.expect("channel");
    let queue = format!("bench_publish_{}", uuid::Uuid::new_v4());
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            EXCHANGE.into(),
            queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

    println!(
        "{:>7} {:>12} {:>10} {:>12} {:>10} {:>7}",
        "window", "ours msg/s", "ours MB/s", "bare msg/s", "bare MB/s", "ratio"
    );
    for &window in &windows {
        let (mut ours_times, mut bare_times) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours_times.push(ours(&messages, &queue, window).await);
            channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await.expect("purge");
            bare_times.push(bare(&messages, &queue, window).await);
            channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await.expect("purge");
        }
        let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default().as_secs_f64();
        let (ours_s, bare_s) = (best(&ours_times), best(&bare_times));
        let rate = |s: f64| messages.len() as f64 / s;
        let mbps = |s: f64| bytes as f64 / 1e6 / s;
        println!(
            "{window:>7} {:>12.0} {:>10.1} {:>12.0} {:>10.1} {:>7.2}",
            rate(ours_s),
            mbps(ours_s),
            rate(bare_s),
            mbps(bare_s),
            bare_s / ours_s
        );
    }
    if let Some(python) = arg("--pycti-python") {
        let count: usize = arg("--pycti-messages").and_then(|v| v.parse().ok()).unwrap_or(20_000).min(messages.len());
        let subset = &messages[..count];
        let file = std::env::temp_dir().join(format!("{queue}.messages"));
        let mut bytes = Vec::new();
        for message in subset {
            bytes.extend_from_slice(&u32::try_from(message.len()).expect("small message").to_be_bytes());
            bytes.extend_from_slice(message);
        }
        std::fs::write(&file, bytes).expect("dump messages");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/bench/pycti_publish.py");
        let (mut ours_times, mut pycti_times) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours_times.push(ours(subset, &queue, 1024).await);
            channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await.expect("purge");
            let output = std::process::Command::new(&python)
                .args([script, &file.display().to_string(), EXCHANGE, &queue])
                .output()
                .expect("run the pycti-style publisher");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let seconds: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("seconds");
            pycti_times.push(Duration::from_secs_f64(seconds));
            channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await.expect("purge");
        }
        let _ = std::fs::remove_file(&file);
        let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default().as_secs_f64();
        let (ours_s, pycti_s) = (best(&ours_times), best(&pycti_times));
        println!(
            "pycti's way (pika, confirm per message), {count} messages: {:.0} msg/s; ours (window 1024): {:.0} msg/s; ratio {:.1}",
            count as f64 / pycti_s,
            count as f64 / ours_s,
            pycti_s / ours_s
        );
    }
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.expect("delete");
    let _ = admin.close(200, "bye".into()).await;
}
