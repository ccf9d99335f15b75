//! Publishing to the platform's push queue with publisher confirms, as pycti does, but pipelined: up to `window`
//! messages (and `window_bytes` bytes) are in flight at once instead of one round trip per message.
//!
//! Nothing counts as sent before RabbitMQ confirms it. A nack or an unroutable return (messages are published
//! `mandatory`, so a missing queue is noticed instead of silently dropping data) re-publishes the message. A lost
//! channel or connection reconnects with exponential backoff and jitter and re-publishes every unconfirmed
//! message: delivery is at-least-once, and a duplicate is a harmless upsert on the platform.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use super::endpoint::{AmqpEndpoint, EndpointError};

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// `push_exchange` from the registration (`amqp.worker.exchange`).
    pub exchange: String,
    /// `push_routing` from the registration (`push_routing_<connector id>`).
    pub routing_key: String,
    /// Most messages published and not yet confirmed...
    pub window: usize,
    /// ...and most bytes of them (a message larger than this still goes, alone).
    pub window_bytes: usize,
    /// How long the broker may stay unreachable before a publish fails (the run then ends in error and the next
    /// run redoes the unfinished part).
    pub max_outage: Duration,
    /// Name of the AMQP connection, shown in RabbitMQ's management UI.
    pub connection_name: String,
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("RabbitMQ has not accepted messages for more than {0:?} (last error: {1})")]
    Stalled(Duration, String),
}

/// Counters of one publisher's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Messages confirmed by the broker.
    pub confirmed: u64,
    /// Bytes of confirmed message bodies.
    pub confirmed_bytes: u64,
    /// Re-publications after a nack, a return or a lost connection.
    pub republished: u64,
    /// Connections opened after the first.
    pub reconnects: u64,
}

struct Link {
    connection: Connection,
    channel: Channel,
}

/// A run of failures (lost links, refused connections, nacks, returns) with no confirm in between: paces the
/// retries and bounds how long they go on.
struct Trouble {
    delays: backon::ExponentialBackoff,
    last_error: String,
}

/// One message's fate: the publish (the frames handed to the connection) and then its confirm.
type Outcome = Pin<Box<dyn Future<Output = Result<Confirmation, lapin::Error>> + Send>>;

/// Publishes message bodies to one exchange and routing key, with a bounded window of unconfirmed messages.
pub struct Publisher {
    endpoint: AmqpEndpoint,
    options: PublishOptions,
    link: Option<Link>,
    /// Bodies published on the current link and not yet confirmed, oldest first...
    in_flight: VecDeque<Arc<[u8]>>,
    /// Bytes of `in_flight`.
    in_flight_bytes: usize,
    /// ...and their outcomes, in the same order.
    outcomes: FuturesOrdered<Outcome>,
    /// Bodies to publish (again) before any new one: returned, nacked, or lost with a link.
    unsent: VecDeque<Arc<[u8]>>,
    /// A message was returned or nacked: settle everything in flight, wait once, then publish again.
    retry_round: Option<&'static str>,
    stats: PublishStats,
    connections: u64,
    trouble: Option<Trouble>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoint", &self.endpoint.describe())
            .field("exchange", &self.options.exchange)
            .field("routing_key", &self.options.routing_key)
            .field("in_flight", &self.in_flight.len())
            .field("unsent", &self.unsent.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn properties() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2).with_content_encoding("utf-8".into())
}

impl Publisher {
    /// Connects (retrying with backoff up to `max_outage`) and enables publisher confirms.
    pub async fn connect(endpoint: AmqpEndpoint, options: PublishOptions) -> Result<Self, PublishError> {
        let mut publisher = Self {
            endpoint,
            options,
            link: None,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            outcomes: FuturesOrdered::new(),
            unsent: VecDeque::new(),
            retry_round: None,
            stats: PublishStats::default(),
            connections: 0,
            trouble: None,
        };
        publisher.ensure_link().await?;
        Ok(publisher)
    }

    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Messages handed over and not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.in_flight.len() + self.unsent.len()
    }

    /// Publishes one message body. Returns once it is on its way and the window has room again; call
    /// [`Publisher::flush`] to wait for every confirm.
    pub async fn publish(&mut self, body: Vec<u8>) -> Result<(), PublishError> {
        self.unsent.push_back(body.into());
        self.pump(false).await
    }

    /// Waits until every message published so far is confirmed.
    pub async fn flush(&mut self) -> Result<(), PublishError> {
        self.pump(true).await
    }

    /// Closes the connection cleanly (after [`Publisher::flush`], nothing is lost).
    pub async fn close(mut self) {
        if let Some(link) = self.link.take() {
            let _ = link.channel.close(200, "bye".into()).await;
            let _ = link.connection.close(200, "bye".into()).await;
        }
    }

    /// Launches unsent messages while the window has room, and settles outcomes oldest first, until the window has
    /// room and nothing waits (or, with `drain`, until everything is confirmed).
    async fn pump(&mut self, drain: bool) -> Result<(), PublishError> {
        let window = self.options.window.max(1);
        loop {
            if let Some(reason) = self.retry_round.filter(|_| self.in_flight.is_empty()) {
                self.retry_round = None;
                self.pause(reason).await?;
            }
            while self.retry_round.is_none() && self.has_room(window) && !self.unsent.is_empty() {
                self.launch_next().await?;
            }
            let settled = if drain {
                self.in_flight.is_empty() && self.unsent.is_empty()
            } else {
                self.has_room(window) && self.unsent.is_empty()
            };
            if settled {
                return Ok(());
            }
            self.settle_oldest().await?;
        }
    }

    /// Whether another message may go out: the window has room in messages and in bytes (an empty window always
    /// has room, so that a message larger than the byte window still goes).
    fn has_room(&self, window: usize) -> bool {
        self.in_flight.is_empty() || (self.in_flight.len() < window && self.in_flight_bytes < self.options.window_bytes)
    }

    /// Starts publishing the first unsent message on the link (connecting as needed). The publish and the wait
    /// for its confirm run as one future, polled with the others: many messages are on the wire at once.
    async fn launch_next(&mut self) -> Result<(), PublishError> {
        self.ensure_link().await?;
        let (Some(link), Some(body)) = (&self.link, self.unsent.pop_front()) else { return Ok(()) };
        let channel = link.channel.clone();
        let exchange: ShortString = self.options.exchange.as_str().into();
        let routing_key: ShortString = self.options.routing_key.as_str().into();
        let payload = Arc::clone(&body);
        self.outcomes.push_back(Box::pin(async move {
            let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
            channel.basic_publish(exchange, routing_key, options, &payload, properties()).await?.await
        }));
        self.in_flight_bytes += body.len();
        self.in_flight.push_back(body);
        Ok(())
    }

    /// Waits for the oldest message's outcome and acts on it.
    async fn settle_oldest(&mut self) -> Result<(), PublishError> {
        let Some(outcome) = self.outcomes.next().await else {
            // Outcomes and bodies always go together; an empty set with bodies left means they were never
            // launched on this link: publish them again.
            self.lose_link("publish state out of step");
            return Ok(());
        };
        match outcome {
            Ok(Confirmation::Ack(None)) => {
                if let Some(done) = self.in_flight.pop_front() {
                    self.in_flight_bytes -= done.len();
                    self.stats.confirmed += 1;
                    self.stats.confirmed_bytes += done.len() as u64;
                }
                self.trouble = None;
                Ok(())
            }
            Ok(outcome) => {
                let reason = match outcome {
                    Confirmation::Ack(Some(_)) => "unroutable (returned by the broker: is the push queue bound?)",
                    Confirmation::Nack(_) => "nacked by the broker",
                    _ => "not confirmed (publisher confirms are off)",
                };
                tracing::warn!(reason, exchange = %self.options.exchange, routing_key = %self.options.routing_key, "message not accepted: publishing it again");
                self.stats.republished += 1;
                // Retried once what is in flight has settled, after a pause, so that a missing queue does not
                // hot-loop; the others in flight were probably refused too.
                if let Some(again) = self.in_flight.pop_front() {
                    self.in_flight_bytes -= again.len();
                    self.unsent.push_back(again);
                }
                self.retry_round = Some(reason);
                Ok(())
            }
            Err(error) => {
                self.lose_link(&error.to_string());
                Ok(())
            }
        }
    }

    /// Notes a failure and waits before the next attempt; fails once failures have gone on for `max_outage`.
    async fn pause(&mut self, reason: &str) -> Result<(), PublishError> {
        let max_outage = self.options.max_outage;
        let trouble = self.note_trouble(reason);
        match trouble.delays.next() {
            Some(delay) => {
                tracing::debug!(reason, retry_in = ?delay, "publishing paused");
                tokio::time::sleep(delay).await;
                Ok(())
            }
            None => Err(PublishError::Stalled(max_outage, trouble.last_error.clone())),
        }
    }

    /// Starts or continues the current run of failures.
    fn note_trouble(&mut self, reason: &str) -> &mut Trouble {
        crate::metrics::global().retry();
        let max_outage = self.options.max_outage;
        let trouble = self.trouble.get_or_insert_with(|| Trouble {
            delays: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(15))
                .with_jitter()
                .without_max_times()
                .with_total_delay(Some(max_outage))
                .build(),
            last_error: String::new(),
        });
        reason.clone_into(&mut trouble.last_error);
        trouble
    }

    /// Forgets the current link: every unconfirmed message will be published again on the next one, first and in
    /// order.
    fn lose_link(&mut self, reason: &str) {
        self.note_trouble(reason);
        if self.link.take().is_some() {
            let unconfirmed = self.in_flight.len();
            tracing::warn!(reason, unconfirmed, endpoint = %self.endpoint.describe(), "RabbitMQ link lost: reconnecting and publishing the unconfirmed messages again");
        }
        self.outcomes = FuturesOrdered::new();
        self.stats.republished += self.in_flight.len() as u64;
        self.in_flight_bytes = 0;
        while let Some(body) = self.in_flight.pop_back() {
            self.unsent.push_front(body);
        }
    }

    /// Opens a connection and a confirm-mode channel if there is none. After a failure (a lost link, a refused
    /// connection), attempts are paced with exponential backoff and jitter for up to `max_outage`.
    async fn ensure_link(&mut self) -> Result<(), PublishError> {
        if self.link.as_ref().is_some_and(|link| link.connection.status().connected()) {
            return Ok(());
        }
        if self.link.is_some() {
            self.lose_link("connection closed");
        }
        loop {
            if let Some(trouble) = &self.trouble {
                let reason = trouble.last_error.clone();
                self.pause(&reason).await?;
            }
            match open_link(&self.endpoint, &self.options).await {
                Ok(link) => {
                    if self.connections > 0 {
                        self.stats.reconnects += 1;
                        tracing::info!(endpoint = %self.endpoint.describe(), "RabbitMQ link restored");
                    }
                    self.connections += 1;
                    self.link = Some(link);
                    return Ok(());
                }
                Err(PublishError::Endpoint(EndpointError::Connect { source, .. })) => {
                    let error = source.to_string();
                    tracing::warn!(error, endpoint = %self.endpoint.describe(), "RabbitMQ unreachable: retrying");
                    self.note_trouble(&error);
                }
                Err(other) => return Err(other),
            }
        }
    }
}

/// Opens a connection and a confirm-mode channel. A free function, so that the publisher itself (which holds
/// futures that are `Send` but not `Sync`) is not borrowed across the awaits.
async fn open_link(endpoint: &AmqpEndpoint, options: &PublishOptions) -> Result<Link, PublishError> {
    let connection = endpoint.connect(&options.connection_name).await?;
    let connect_error = |source: lapin::Error| EndpointError::Connect { endpoint: endpoint.describe(), source };
    let channel = connection.create_channel().await.map_err(connect_error)?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(connect_error)?;
    Ok(Link { connection, channel })
}
