//! Leadership among the replicas of one connector, through the broker: one lease message in a queue with a single
//! active consumer. Every candidate consumes that queue; RabbitMQ delivers to one consumer at a time, which holds the
//! lease unacknowledged for as long as it leads. When its connection closes (the process died, or the network cut it
//! off and the heartbeats stopped), RabbitMQ hands the message to the next consumer: the next leader.
//!
//! The leader learns of its own loss the same way (its consumer ends), and stops planning at once; for the short
//! while a network cut is not noticed yet on its side, the other leader may run too, so what a leader does must
//! stay correct when done twice (deterministic ids: repeated messages are upserts).

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, Consumer};

use crate::jobs::JobsError;
use crate::send::AmqpEndpoint;

/// Seconds between heartbeats on the lease's connection: a leader cut off is replaced within about two of them.
pub const LEASE_HEARTBEAT_SECONDS: u16 = 5;

/// A candidate for the leadership, waiting for the lease.
pub struct Candidate {
    connection: Connection,
    /// Kept open: closing it would hand the lease on.
    _channel: Channel,
    consumer: Consumer,
    queue: String,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate").field("queue", &self.queue).finish_non_exhaustive()
    }
}

impl Candidate {
    /// Joins the candidates of the lease queue `queue` (declaring it, and putting the lease in it if it is empty).
    pub async fn join(endpoint: &AmqpEndpoint, queue: &str, name: &str) -> Result<Self, JobsError> {
        let connection = endpoint.connect_with_heartbeat(name, LEASE_HEARTBEAT_SECONDS).await?;
        let broker = |what, source| JobsError::Broker { what, queue: queue.to_owned(), source };
        let channel = connection.create_channel().await.map_err(|e| broker("a channel", e))?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
        arguments.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
        let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let declared = channel
            .queue_declare(queue.into(), options, arguments)
            .await
            .map_err(|e| broker("the lease queue's declaration", e))?;
        if declared.message_count() == 0 && declared.consumer_count() == 0 {
            // The first candidate ever (or after the queue was emptied): put the lease in. Two candidates doing it
            // at once is harmless: the queue holds at most one message and refuses the second.
            let publisher = connection.create_channel().await.map_err(|e| broker("a channel", e))?;
            publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| broker("confirms", e))?;
            let properties = BasicProperties::default().with_delivery_mode(2);
            let confirm = publisher
                .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), b"lease", properties)
                .await
                .map_err(|e| broker("the lease", e))?;
            // A nack is the queue refusing a second lease: fine.
            let _ = confirm.await;
            let _ = publisher.close(200, "lease placed".into()).await;
        }
        channel.basic_qos(1, BasicQosOptions::default()).await.map_err(|e| broker("a prefetch", e))?;
        let consumer = channel
            .basic_consume(queue.into(), name.into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| broker("a consumer", e))?;
        Ok(Self { connection, _channel: channel, consumer, queue: queue.to_owned() })
    }

    /// Waits until this candidate holds the lease: then it leads until [`Lease::lost`].
    pub async fn acquire(mut self) -> Result<Lease, JobsError> {
        match self.consumer.next().await {
            Some(Ok(_lease)) => Ok(Lease { candidate: self }),
            Some(Err(source)) => Err(JobsError::Broker { what: "the lease", queue: self.queue.clone(), source }),
            None => Err(JobsError::ConsumerEnded(self.queue.clone())),
        }
    }
}

/// The leadership, held: the lease message sits unacknowledged with this process.
pub struct Lease {
    candidate: Candidate,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("queue", &self.candidate.queue).finish()
    }
}

impl Lease {
    /// Resolves when the leadership is lost: the connection closed, or the broker cancelled the consumer.
    pub async fn lost(&mut self) {
        // The lease is the only message, held: the consumer yields again only when it ends.
        loop {
            match self.candidate.consumer.next().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            }
        }
    }

    /// Whether the connection holding the lease still stands.
    pub fn is_held(&self) -> bool {
        self.candidate.connection.status().connected()
    }

    /// Gives the leadership up (a clean shutdown): the next candidate takes it at once.
    pub async fn release(self) {
        let _ = self.candidate.connection.close(200, "leadership released".into()).await;
    }
}
