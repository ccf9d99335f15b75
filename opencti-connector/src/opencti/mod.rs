//! OpenCTI's connector API: health, registration, pings with the state, queue size, and works (open, add
//! expectations, mark processed, report an error). The documents are pycti's, field for field, because they are
//! what is known to work against the platform's schema across versions.

mod client;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;
use serde_json::json;

pub use client::{GraphQlClient, OpenCtiError, Replay, RetryPolicy};

/// What the connector says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterInput {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub connector_type: String,
    pub scope: Vec<String>,
    pub auto: bool,
    pub auto_update: bool,
    pub enrichment_resolution: String,
    pub only_contextual: bool,
    pub playbook_compatible: bool,
    pub listen_callback_uri: Option<String>,
    pub version: Option<String>,
    pub slug: Option<String>,
}

impl RegisterInput {
    /// An external-import connector, as pycti registers one; `version` and `slug` are the connector's.
    pub fn external_import(id: &str, name: &str, scope: &[String], version: &str, slug: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            connector_type: "EXTERNAL_IMPORT".into(),
            scope: scope.to_vec(),
            auto: false,
            auto_update: false,
            enrichment_resolution: "none".into(),
            only_contextual: false,
            playbook_compatible: false,
            listen_callback_uri: None,
            version: Some(version.into()),
            slug: Some(slug.into()),
        }
    }
}

/// The RabbitMQ connection the platform hands out at registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueConnection {
    pub host: String,
    pub vhost: String,
    pub use_ssl: bool,
    pub port: u16,
    pub user: String,
    /// Hidden from `Debug`, like every secret.
    pub pass: Secret,
}

/// Exchanges, routing keys and queues the platform declared for the connector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueConfig {
    pub connection: QueueConnection,
    pub listen: Option<String>,
    pub listen_routing: Option<String>,
    pub listen_exchange: Option<String>,
    pub push: String,
    pub push_routing: String,
    pub push_exchange: String,
}

/// The answer to `registerConnector`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Registration {
    pub id: String,
    /// The saved state (a JSON document as a string), when there is one.
    pub connector_state: Option<String>,
    pub config: QueueConfig,
    /// The platform user the connector imports as (the envelope's `applicant_id`).
    pub connector_user_id: Option<String>,
}

/// Runtime information shown in the platform's connector view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    pub run_and_terminate: bool,
    pub buffering: bool,
    /// MB.
    pub queue_threshold: f64,
    /// MB (decimal, as pycti computes it).
    pub queue_messages_size: f64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub next_run_datetime: Option<String>,
    pub last_run_datetime: Option<String>,
}

/// The answer to `pingConnector`: the platform's copy of the state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PingAnswer {
    pub id: String,
    pub connector_state: Option<String>,
}

/// The size of the connector's push queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct QueueDetails {
    pub messages_number: u64,
    /// Bytes.
    pub messages_size: u64,
}

/// An error reported on a work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkError {
    pub error: String,
    pub source: String,
}

const ABOUT: &str = "query { about { version } }";

const REGISTER: &str = "mutation RegisterConnector($input: RegisterConnectorInput) {
    registerConnector(input: $input) {
        id
        connector_state
        config {
            connection { host vhost use_ssl port user pass }
            listen
            listen_routing
            listen_exchange
            push
            push_routing
            push_exchange
        }
        connector_user_id
    }
}";

const PING: &str = "mutation PingConnector($id: ID!, $state: String, $connectorInfo: ConnectorInfoInput) {
    pingConnector(id: $id, state: $state, connectorInfo: $connectorInfo) {
        id
        connector_state
        connector_info {
            run_and_terminate
            buffering
            queue_threshold
            queue_messages_size
            next_run_datetime
            last_run_datetime
        }
    }
}";

const QUEUE: &str = "query GetConnector($id: String!) {
    connector(id: $id) {
        id
        connector_queue_details { messages_number messages_size }
    }
}";

const WORK_ADD: &str = "mutation workAdd($connectorId: String!, $friendlyName: String, $isMultiPartWork: Boolean) {
    workAdd(connectorId: $connectorId, friendlyName: $friendlyName, isMultiPartWork: $isMultiPartWork) {
        id
    }
}";

const ADD_EXPECTATIONS: &str = "mutation addExpectations($id: ID!, $expectations: Int) {
    workEdit(id: $id) {
        addExpectations(expectations: $expectations)
    }
}";

const TO_PROCESSED: &str = "mutation workToProcessed($id: ID!, $message: String, $inError: Boolean) {
    workEdit(id: $id) {
        toProcessed(message: $message, inError: $inError)
    }
}";

const REPORT_EXPECTATION: &str = "mutation reportExpectation($id: ID!, $error: WorkErrorInput) {
    workEdit(id: $id) {
        reportExpectation(error: $error)
    }
}";

#[derive(Deserialize)]
struct AboutData {
    about: About,
}

#[derive(Deserialize)]
struct About {
    version: String,
}

#[derive(Deserialize)]
struct RegisterData {
    #[serde(rename = "registerConnector")]
    register: Registration,
}

#[derive(Deserialize)]
struct PingData {
    #[serde(rename = "pingConnector")]
    ping: PingAnswer,
}

#[derive(Deserialize)]
struct QueueData {
    connector: Option<ConnectorQueue>,
}

#[derive(Deserialize)]
struct ConnectorQueue {
    connector_queue_details: Option<QueueDetails>,
}

#[derive(Deserialize)]
struct WorkAddData {
    #[serde(rename = "workAdd")]
    work: WorkId,
}

#[derive(Deserialize)]
struct WorkId {
    id: String,
}

/// The connector API of one platform.
#[derive(Debug, Clone)]
pub struct OpenCti {
    client: GraphQlClient,
}

impl OpenCti {
    pub fn new(client: GraphQlClient) -> Self {
        Self { client }
    }

    /// The same API with another retry policy (e.g. retry forever while the platform starts).
    pub(crate) fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self { client: self.client.with_retry(retry) }
    }

    /// The platform's version (the health check).
    pub async fn about(&self) -> Result<String, OpenCtiError> {
        let data: AboutData = self.client.call("about", ABOUT, json!({}), Replay::Safe).await?;
        Ok(data.about.version)
    }

    pub async fn register(&self, input: &RegisterInput) -> Result<Registration, OpenCtiError> {
        let data: RegisterData =
            self.client.call("registerConnector", REGISTER, json!({ "input": input }), Replay::Safe).await?;
        Ok(data.register)
    }

    /// Sends the state (a JSON document, as a string) and runtime info; returns the platform's copy of the state.
    pub async fn ping(&self, id: &str, state: &str, info: &ConnectorInfo) -> Result<PingAnswer, OpenCtiError> {
        let variables = json!({ "id": id, "state": state, "connectorInfo": info });
        let data: PingData = self.client.call("pingConnector", PING, variables, Replay::Safe).await?;
        Ok(data.ping)
    }

    /// The push queue's size (zero when the platform does not report it).
    pub async fn queue_details(&self, id: &str) -> Result<QueueDetails, OpenCtiError> {
        let data: QueueData = self.client.call("connector", QUEUE, json!({ "id": id }), Replay::Safe).await?;
        Ok(data.connector.and_then(|c| c.connector_queue_details).unwrap_or_default())
    }

    /// Opens a work; a multi-part work completes only when marked processed.
    pub async fn work_add(
        &self,
        connector_id: &str,
        friendly_name: &str,
        multipart: bool,
    ) -> Result<String, OpenCtiError> {
        let variables =
            json!({ "connectorId": connector_id, "friendlyName": friendly_name, "isMultiPartWork": multipart });
        let data: WorkAddData = self.client.call("workAdd", WORK_ADD, variables, Replay::OnlyIfNotReceived).await?;
        Ok(data.work.id)
    }

    pub async fn add_expectations(&self, work_id: &str, expectations: u64) -> Result<(), OpenCtiError> {
        let variables = json!({ "id": work_id, "expectations": expectations });
        let _: serde_json::Value =
            self.client.call("addExpectations", ADD_EXPECTATIONS, variables, Replay::OnlyIfNotReceived).await?;
        Ok(())
    }

    pub async fn to_processed(&self, work_id: &str, message: &str, in_error: bool) -> Result<(), OpenCtiError> {
        let variables = json!({ "id": work_id, "message": message, "inError": in_error });
        let _: serde_json::Value = self.client.call("toProcessed", TO_PROCESSED, variables, Replay::Safe).await?;
        Ok(())
    }

    pub async fn report_expectation(&self, work_id: &str, error: &WorkError) -> Result<(), OpenCtiError> {
        let variables = json!({ "id": work_id, "error": error });
        let _: serde_json::Value =
            self.client.call("reportExpectation", REPORT_EXPECTATION, variables, Replay::OnlyIfNotReceived).await?;
        Ok(())
    }
}
