//! The RabbitMQ side: the exchanges and queues the platform declares for a connector, their sizes, purging them.

use lapin::ExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use serde_json::{Value, json};

use super::errors::GqlError;
use super::state::Shared;
use super::{CONNECTOR_EXCHANGE, WORKER_EXCHANGE};
use crate::rabbit;

/// `{messages_number, messages_size}` as the platform computes them: messages in `push_<id>` plus `listen_<id>` (the
/// platform sums both); size from
/// [`FakeOpenCti::set_queue_size_bytes`](super::FakeOpenCti::set_queue_size_bytes) or messages × the assumed
/// average. A broker error counts as empty queues, as on the platform (and is recorded in `mq_errors`).
pub(super) async fn queue_details(shared: &Shared, id: &str) -> Value {
    let counted = async {
        let connection = rabbit::try_connect_to(&shared.options.amqp_uri).await?;
        let push = rabbit::try_message_count(&connection, &format!("push_{id}")).await;
        let listen = rabbit::try_message_count(&connection, &format!("listen_{id}")).await;
        rabbit::close(connection).await;
        Ok::<u64, String>(u64::from(push?.unwrap_or(0)) + u64::from(listen?.unwrap_or(0)))
    }
    .await;
    let messages = counted.unwrap_or_else(|e| {
        shared.lock().mq_errors.push(format!("queue details of {id}: {e}"));
        0
    });
    let size = shared.lock().queue_size_override.unwrap_or(messages * shared.options.bytes_per_message);
    json!({"messages_number": messages, "messages_size": size})
}

/// Declares what the platform's `registerConnectorQueues` declares, recording the queues for cleanup first.
pub(super) async fn ensure_queues(
    shared: &Shared,
    id: &str,
    name: &str,
    kind: &str,
    scope: &[String],
) -> Result<(), GqlError> {
    if shared.lifetime.is_cancelled() {
        return Err(GqlError::unknown("fake OpenCTI is stopped"));
    }
    {
        let mut inner = shared.lock();
        inner.declared_queues.insert(format!("push_{id}"));
        inner.declared_queues.insert(format!("listen_{id}"));
    }
    declare_connector_queues(&shared.options.amqp_uri, id, name, kind, scope).await.map_err(|e| {
        let message = format!("fake OpenCTI could not declare the queues of connector {id} on RabbitMQ: {e}");
        // Also on stderr: the connector under test may turn the GraphQL error into something vaguer.
        eprintln!("{message}");
        shared.lock().mq_errors.push(e);
        GqlError::unknown(message)
    })
}

/// Exchanges `amqp.connector.exchange` and `amqp.worker.exchange` (direct, durable); queue `listen_<id>` bound to the
/// first with `listen_routing_<id>`; queue `push_<id>` bound to the second with `push_routing_<id>`; both durable,
/// with the platform's arguments (`name`, `config {id, type, scope}`, `x-queue-type: classic`).
async fn declare_connector_queues(uri: &str, id: &str, name: &str, kind: &str, scope: &[String]) -> Result<(), String> {
    let connection = rabbit::try_connect_to(uri).await?;
    let declared = async {
        let channel = connection.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
        let exchange_options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        for exchange in [CONNECTOR_EXCHANGE, WORKER_EXCHANGE] {
            channel
                .exchange_declare(exchange.into(), ExchangeKind::Direct, exchange_options, FieldTable::default())
                .await
                .map_err(|e| format!("declare exchange {exchange}: {e}"))?;
        }
        let queue_options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let bindings = [
            (format!("listen_{id}"), CONNECTOR_EXCHANGE, format!("listen_routing_{id}")),
            (format!("push_{id}"), WORKER_EXCHANGE, format!("push_routing_{id}")),
        ];
        for (queue, exchange, routing_key) in bindings {
            channel
                .queue_declare(queue.as_str().into(), queue_options, queue_arguments(id, name, kind, scope))
                .await
                .map_err(|e| format!("declare queue {queue}: {e}"))?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("bind queue {queue}: {e}"))?;
        }
        Ok(())
    }
    .await;
    rabbit::close(connection).await;
    declared
}

fn queue_arguments(id: &str, name: &str, kind: &str, scope: &[String]) -> FieldTable {
    let scope: Vec<AMQPValue> = scope.iter().map(|s| AMQPValue::LongString(s.as_str().into())).collect();
    let mut config = FieldTable::default();
    config.insert("id".into(), AMQPValue::LongString(id.into()));
    config.insert("type".into(), AMQPValue::LongString(kind.into()));
    config.insert("scope".into(), AMQPValue::FieldArray(FieldArray::from(scope)));
    let mut arguments = FieldTable::default();
    arguments.insert("name".into(), AMQPValue::LongString(name.into()));
    arguments.insert("config".into(), AMQPValue::FieldTable(config));
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
    arguments
}

/// Empties `queues`, as the platform's "reset state" does; panics if the broker refuses.
pub(super) async fn purge_queues(uri: &str, queues: Vec<String>) {
    let connection = rabbit::try_connect_to(uri).await.unwrap_or_else(|e| panic!("{e}"));
    for queue in queues {
        let channel = connection.create_channel().await.expect("open a channel to purge");
        channel
            .queue_purge(queue.as_str().into(), Default::default())
            .await
            .unwrap_or_else(|e| panic!("purge queue `{queue}`: {e}"));
    }
    rabbit::close(connection).await;
}
