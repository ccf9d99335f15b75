//! Jobs on the platform's broker, so that a connector's runs can be spread over replicas: the leader publishes one
//! durable job per unit of work, workers take them (manual ack, bounded prefetch), do them, report the outcome, and
//! only then acknowledge them. A job whose worker dies is delivered again to another; a job that fails
//! [`MAX_DELIVERIES`] times is parked (dead-lettered) with its last reason, for the leader to report.
//!
//! The queues, per connector id, on the broker the platform hands out (RabbitMQ, nothing home-made):
//!
//! | queue | kind | holds |
//! | --- | --- | --- |
//! | `<slug>.jobs.<id>` | quorum, `x-delivery-limit`, dead-lettered to the parked queue | the jobs |
//! | `<slug>.done.<id>` | quorum | each attempt's outcome (done, or failed with its reason) |
//! | `<slug>.parked.<id>` | quorum | jobs that failed too often |
//! | `<slug>.leader.<id>` | classic, single active consumer, at most one message | the leadership lease ([`crate::leadership`]) |
//!
//! A job carries its run's id, its own id and a label (what it is about, for messages) in headers, and the
//! connector's payload as its body: the runtime never looks inside.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use serde::{Deserialize, Serialize};

use crate::send::{AmqpEndpoint, EndpointError};

/// Deliveries of a job before it is parked: a worker dying on it, or failing it, counts each time.
pub const MAX_DELIVERIES: i64 = 5;

/// Why a job queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("RabbitMQ refused {what} on {queue}: {source}")]
    Broker { what: &'static str, queue: String, source: lapin::Error },
    #[error("RabbitMQ did not confirm {what} on {queue}")]
    NotConfirmed { what: &'static str, queue: String },
    #[error("the job queues' consumer on {0} ended (connection lost)")]
    ConsumerEnded(String),
}

/// The names of a connector's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    pub jobs: String,
    pub done: String,
    pub parked: String,
    pub leader: String,
}

impl QueueNames {
    pub fn new(slug: &str, connector_id: &str) -> Self {
        Self {
            jobs: format!("{slug}.jobs.{connector_id}"),
            done: format!("{slug}.done.{connector_id}"),
            parked: format!("{slug}.parked.{connector_id}"),
            leader: format!("{slug}.leader.{connector_id}"),
        }
    }

    /// Every queue, for tests that delete them.
    pub fn all(&self) -> [&str; 4] {
        [&self.jobs, &self.done, &self.parked, &self.leader]
    }
}

fn long(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

fn header_number(properties: &BasicProperties, name: &str) -> Option<i64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// Declares a connector's job queues (idempotent: the same arguments every time).
pub async fn declare(channel: &Channel, names: &QueueNames) -> Result<(), JobsError> {
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let quorum = || {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long("quorum"));
        arguments
    };
    let mut jobs = quorum();
    jobs.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(MAX_DELIVERIES));
    jobs.insert("x-dead-letter-exchange".into(), long(""));
    jobs.insert("x-dead-letter-routing-key".into(), long(&names.parked));
    for (queue, arguments) in [(&names.jobs, jobs), (&names.done, quorum()), (&names.parked, quorum())] {
        channel.queue_declare(queue.as_str().into(), durable, arguments).await.map_err(|source| JobsError::Broker {
            what: "the queue's declaration",
            queue: queue.clone(),
            source,
        })?;
    }
    Ok(())
}

/// A connection and a confirm-mode channel for the job queues.
pub struct JobLink {
    connection: Connection,
    channel: Channel,
    names: QueueNames,
}

impl std::fmt::Debug for JobLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLink").field("names", &self.names).finish_non_exhaustive()
    }
}

/// A job as published: which run, which job, what about, and the connector's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub run_id: String,
    /// The platform work the job's messages count towards.
    pub work_id: String,
    pub job_id: u64,
    pub label: String,
    pub payload: Vec<u8>,
}

/// What became of one attempt at a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// This outcome's own id: the same message read twice (delivered again after a lost connection) counts once.
    #[serde(default)]
    pub id: String,
    pub run_id: String,
    pub job_id: u64,
    pub label: String,
    /// `None`: done; `Some(reason)`: this attempt failed.
    pub failure: Option<String>,
    /// The connector's report of a done job (what it sent).
    #[serde(default)]
    pub report: serde_json::Value,
}

impl JobLink {
    /// Connects and declares the queues.
    pub async fn open(endpoint: &AmqpEndpoint, names: QueueNames, name: &str) -> Result<Self, JobsError> {
        let connection = endpoint.connect(name).await?;
        let broker = |what, source| JobsError::Broker { what, queue: names.jobs.clone(), source };
        let channel = connection.create_channel().await.map_err(|e| broker("a channel", e))?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| broker("confirms", e))?;
        declare(&channel, &names).await?;
        Ok(Self { connection, channel, names })
    }

    pub fn names(&self) -> &QueueNames {
        &self.names
    }

    /// Whether the connection still stands.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Publishes `body` to `queue`, persistent, and waits for the broker's confirm.
    async fn publish_confirmed(
        &self,
        what: &'static str,
        queue: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), JobsError> {
        let properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let broker = |source| JobsError::Broker { what, queue: queue.to_owned(), source };
        let confirm = self
            .channel
            .basic_publish("".into(), queue.into(), options, body, properties)
            .await
            .map_err(broker)?
            .await
            .map_err(broker)?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            _ => Err(JobsError::NotConfirmed { what, queue: queue.to_owned() }),
        }
    }

    /// Publishes a job (durable, confirmed).
    pub async fn publish_job(&self, job: &Job) -> Result<(), JobsError> {
        let mut headers = FieldTable::default();
        headers.insert("x-run-id".into(), long(&job.run_id));
        headers.insert("x-work-id".into(), long(&job.work_id));
        headers.insert("x-job-id".into(), AMQPValue::LongLongInt(i64::try_from(job.job_id).unwrap_or(i64::MAX)));
        headers.insert("x-job-label".into(), long(&job.label));
        self.publish_confirmed("a job", &self.names.jobs, &job.payload, headers).await
    }

    /// Publishes the outcome of an attempt (durable, confirmed).
    pub async fn publish_outcome(&self, outcome: &Outcome) -> Result<(), JobsError> {
        let body = serde_json::to_vec(outcome).unwrap_or_default();
        self.publish_confirmed("an outcome", &self.names.done, &body, FieldTable::default()).await
    }

    async fn consumer(&self, queue: &str, prefetch: u16, tag: &str) -> Result<Consumer, JobsError> {
        let broker = |what, source| JobsError::Broker { what, queue: queue.to_owned(), source };
        let channel = self.connection.create_channel().await.map_err(|e| broker("a channel", e))?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| broker("a prefetch", e))?;
        channel
            .basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| broker("a consumer", e))
    }

    /// Takes jobs, at most `prefetch` at a time unacknowledged.
    pub async fn jobs(&self, prefetch: u16) -> Result<JobConsumer, JobsError> {
        let consumer = self.consumer(&self.names.jobs, prefetch.max(1), "jobs").await?;
        Ok(JobConsumer { consumer, queue: self.names.jobs.clone() })
    }

    /// Reads the outcomes and the parked jobs, holding every delivery unacknowledged until
    /// [`Outcomes::settle`]: a leader that dies before the end of its run leaves them to the next one.
    pub async fn outcomes(&self) -> Result<Outcomes, JobsError> {
        // No prefetch limit (0): a run's outcomes are held until it ends.
        let done = self.consumer(&self.names.done, 0, "outcomes").await?;
        let parked = self.consumer(&self.names.parked, 0, "parked").await?;
        Ok(Outcomes { done, parked, names: self.names.clone(), held: Vec::new() })
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// A job taken by a worker: do it, then [`JobDelivery::done`] or [`JobDelivery::failed`].
pub struct JobDelivery {
    pub job: Job,
    /// How many times the job was delivered before this one (0 the first time).
    pub previous_deliveries: u64,
    delivery: lapin::message::Delivery,
}

impl std::fmt::Debug for JobDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDelivery")
            .field("run_id", &self.job.run_id)
            .field("job_id", &self.job.job_id)
            .field("label", &self.job.label)
            .field("previous_deliveries", &self.previous_deliveries)
            .finish()
    }
}

impl JobDelivery {
    /// Reports the job done (confirmed), then acknowledges it: a worker dying in between leaves it to be done again,
    /// never lost.
    pub async fn done(self, link: &JobLink, report: serde_json::Value) -> Result<(), JobsError> {
        let outcome = Outcome {
            id: uuid::Uuid::new_v4().to_string(),
            run_id: self.job.run_id.clone(),
            job_id: self.job.job_id,
            label: self.job.label.clone(),
            failure: None,
            report,
        };
        link.publish_outcome(&outcome).await?;
        self.delivery.acker.ack(BasicAckOptions::default()).await.map_err(|source| JobsError::Broker {
            what: "an ack",
            queue: link.names.jobs.clone(),
            source,
        })?;
        Ok(())
    }

    /// Reports this attempt failed with `reason`, then hands the job back to the queue: another attempt follows,
    /// until the delivery limit parks it.
    pub async fn failed(self, link: &JobLink, reason: &str) -> Result<(), JobsError> {
        let outcome = Outcome {
            id: uuid::Uuid::new_v4().to_string(),
            run_id: self.job.run_id.clone(),
            job_id: self.job.job_id,
            label: self.job.label.clone(),
            failure: Some(reason.to_owned()),
            report: serde_json::Value::Null,
        };
        // The reason is worth reporting even if the broker refuses it; the nack matters more.
        if let Err(error) = link.publish_outcome(&outcome).await {
            tracing::warn!(%error, "cannot report a failed job attempt");
        }
        self.delivery
            .acker
            .nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() })
            .await
            .map_err(|source| JobsError::Broker { what: "a nack", queue: link.names.jobs.clone(), source })?;
        Ok(())
    }
}

/// Jobs as a worker takes them.
pub struct JobConsumer {
    consumer: Consumer,
    queue: String,
}

impl JobConsumer {
    /// The next job; an error when the connection is lost.
    pub async fn next(&mut self) -> Result<JobDelivery, JobsError> {
        loop {
            let delivery = match self.consumer.next().await {
                Some(Ok(delivery)) => delivery,
                Some(Err(source)) => {
                    return Err(JobsError::Broker { what: "a delivery", queue: self.queue.clone(), source });
                }
                None => return Err(JobsError::ConsumerEnded(self.queue.clone())),
            };
            let properties = &delivery.properties;
            let (Some(run_id), Some(job_id)) =
                (header_text(properties, "x-run-id"), header_number(properties, "x-job-id"))
            else {
                // Not a job of ours: taking it again would loop forever; drop it (it is dead-lettered).
                tracing::error!(queue = %self.queue, "a message without job headers in the job queue: dropped");
                let _ = delivery.acker.nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() }).await;
                continue;
            };
            let label = header_text(properties, "x-job-label").unwrap_or_default();
            let work_id = header_text(properties, "x-work-id").unwrap_or_default();
            let previous_deliveries = header_number(properties, "x-delivery-count")
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(u64::from(delivery.redelivered));
            let job_id = u64::try_from(job_id).unwrap_or_default();
            let job = Job { run_id, work_id, job_id, label, payload: delivery.data.clone() };
            return Ok(JobDelivery { job, previous_deliveries, delivery });
        }
    }
}

/// What a leader learns of a run's jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An attempt ended (done, or failed with its reason).
    Outcome(Outcome),
    /// The job was parked after [`MAX_DELIVERIES`] deliveries.
    Parked { run_id: String, job_id: u64, label: String },
}

/// The outcomes and parked jobs, as a leader reads them.
pub struct Outcomes {
    done: Consumer,
    parked: Consumer,
    names: QueueNames,
    /// Deliveries read and not yet acknowledged.
    held: Vec<lapin::message::Delivery>,
}

impl Outcomes {
    /// The next event; an error when the connection is lost.
    pub async fn next(&mut self) -> Result<Event, JobsError> {
        loop {
            let (delivery, parked) = tokio::select! {
                delivery = self.done.next() => (delivery, false),
                delivery = self.parked.next() => (delivery, true),
            };
            let queue = if parked { &self.names.parked } else { &self.names.done };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(source)) => {
                    return Err(JobsError::Broker { what: "a delivery", queue: queue.clone(), source });
                }
                None => return Err(JobsError::ConsumerEnded(queue.clone())),
            };
            let event = if parked {
                let properties = &delivery.properties;
                match (header_text(properties, "x-run-id"), header_number(properties, "x-job-id")) {
                    (Some(run_id), Some(job_id)) => Some(Event::Parked {
                        run_id,
                        job_id: u64::try_from(job_id).unwrap_or_default(),
                        label: header_text(properties, "x-job-label").unwrap_or_default(),
                    }),
                    _ => None,
                }
            } else {
                serde_json::from_slice::<Outcome>(&delivery.data).ok().map(Event::Outcome)
            };
            self.held.push(delivery);
            match event {
                Some(event) => return Ok(event),
                None => tracing::warn!(queue, "an unreadable message in the outcome queues: ignored"),
            }
        }
    }

    /// Forgets the deliveries of a lost connection (they are delivered again on the next one).
    pub fn forget(&mut self) {
        self.held.clear();
    }

    /// Acknowledges every event read so far (the run they belong to is over, or they belong to no run in flight).
    pub async fn settle(&mut self) {
        for delivery in self.held.drain(..) {
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        }
    }
}

/// A run's jobs, as its leader tracks them: which are done, which failed how, which are parked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Job id → report of its (first) successful attempt.
    pub done: BTreeMap<u64, serde_json::Value>,
    /// Job id → (label, last failure reason), for jobs parked.
    pub parked: BTreeMap<u64, (String, String)>,
    /// Job id → last failure reason, for jobs still being retried.
    pub failures: BTreeMap<u64, String>,
    /// Attempts done again (a job done twice: a worker died after reporting it, before acknowledging it).
    pub repeated: u64,
    /// Outcomes counted, by id, and parked jobs seen: a message read again after a reconnection counts once.
    seen: std::collections::HashSet<String>,
}

impl Tally {
    /// Counts `event` if it belongs to `run_id`; returns whether it did.
    pub fn count(&mut self, run_id: &str, event: &Event) -> bool {
        let key = match event {
            Event::Outcome(outcome) => format!("outcome {}", outcome.id),
            Event::Parked { job_id, .. } => format!("parked {job_id}"),
        };
        if !self.seen.insert(key) {
            return false;
        }
        match event {
            Event::Outcome(outcome) if outcome.run_id == run_id => {
                match &outcome.failure {
                    None => match self.done.entry(outcome.job_id) {
                        std::collections::btree_map::Entry::Occupied(_) => self.repeated += 1,
                        std::collections::btree_map::Entry::Vacant(entry) => {
                            entry.insert(outcome.report.clone());
                            self.failures.remove(&outcome.job_id);
                        }
                    },
                    Some(reason) => {
                        tracing::warn!(job = outcome.job_id, label = %outcome.label, reason, "a job attempt failed: it is tried again");
                        self.failures.insert(outcome.job_id, reason.clone());
                    }
                }
                true
            }
            Event::Parked { run_id: of, job_id, label } if of == run_id => {
                let reason = self.failures.remove(job_id).unwrap_or_else(|| "a worker died on it each time".into());
                tracing::error!(job = job_id, label, reason, "a job failed {MAX_DELIVERIES} times: parked");
                self.parked.insert(*job_id, (label.clone(), reason));
                true
            }
            _ => false,
        }
    }

    /// Whether every job of `0..total` is done or parked.
    pub fn complete(&self, total: u64) -> bool {
        (0..total).all(|id| self.done.contains_key(&id) || self.parked.contains_key(&id))
    }
}

/// How long a worker waits before handing back a job that failed, so that a failing job is not retried in a hot
/// loop (a quorum queue delivers a requeued message again at once).
pub const FAILED_JOB_PAUSE: Duration = Duration::from_secs(2);
