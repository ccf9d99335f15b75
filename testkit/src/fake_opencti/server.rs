//! The HTTP server: an axum app answering `POST /graphql` (authentication, injected faults, the call log).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::errors::GqlError;
use super::graphql::{self, Operation};
use super::listener::KillableListener;
use super::operations::execute;
use super::records::{Call, ErrorSummary, Outcome};
use super::schema::{coerce_variables, validate_operation};
use super::state::Shared;
use super::{AuthFailure, Fault};

/// The axum app, served behind a listener whose connections can all be cut at once.
pub(super) struct Server {
    pub(super) task: JoinHandle<()>,
    /// Cancelling it cuts every connection this server accepted.
    pub(super) connections: CancellationToken,
}

impl Server {
    pub(super) fn spawn(shared: Arc<Shared>, listener: TcpListener) -> Server {
        let connections = CancellationToken::new();
        let app = Router::new().route("/graphql", post(graphql_handler)).with_state(shared);
        let listener = KillableListener { inner: listener, connections: connections.clone() };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { task, connections }
    }

    /// Cuts every connection and closes the port; returns once the listener is closed.
    pub(super) async fn shutdown(self) {
        self.connections.cancel();
        self.task.abort();
        let _ = self.task.await;
    }
}

/// An answer, before it becomes an HTTP response.
enum Answer {
    Json(StatusCode, Value),
    Text(StatusCode, String),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Json(status, body) => {
                (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
            }
            Answer::Text(status, body) => {
                (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
            }
        }
    }
}

/// A GraphQL-over-HTTP request body.
struct GqlRequest {
    query: String,
    variables: Map<String, Value>,
    operation_name: Option<String>,
}

/// The operation to execute, with every operation of the document (all are validated).
#[derive(Clone)]
struct Prepared {
    operation: Operation,
    all: Vec<Operation>,
}

/// What a request needs once faults are decided (owned: a delayed request runs on a task of its own).
struct Pending {
    seq: usize,
    prepared: Result<Prepared, GqlError>,
    variables: Map<String, Value>,
    auth_ok: bool,
    work_id_header: Option<String>,
}

async fn graphql_handler(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let auth_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token));
    let recorded_headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let work_id_header = recorded_headers.get("opencti-work-id").cloned();
    let mut call = Call {
        seq: 0,
        operation: "<bad request>".into(),
        sub_operation: None,
        operation_name: None,
        query: String::new(),
        variables: json!({}),
        auth_ok,
        headers: recorded_headers,
        fault: None,
        at: Instant::now(),
        wall: SystemTime::now(),
        outcome: Outcome::Pending,
    };

    let request = match read_request(&headers, &body) {
        Ok(request) => request,
        Err(message) => {
            call.query = String::from_utf8_lossy(&body).into_owned();
            call.outcome = Outcome::Http(400);
            shared.record_call(call);
            return Answer::Text(StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let prepared = prepare(&request);
    match &prepared {
        Ok(prepared) => {
            let first = prepared.operation.selection.first();
            call.operation = first.map_or_else(|| "<empty>".into(), |f| f.name.clone());
            call.sub_operation = first
                .filter(|f| f.name == "workEdit")
                .and_then(|f| f.selection.as_ref()?.first())
                .map(|f| f.name.clone());
            call.operation_name = prepared.operation.name.clone();
        }
        Err(_) => call.operation = "<invalid>".into(),
    }
    call.query = request.query;
    call.variables = Value::Object(request.variables.clone());
    let fault = shared.take_fault(&call.operation, call.sub_operation.as_deref());
    call.fault = fault.clone();
    let seq = shared.record_call(call);
    let pending = Pending { seq, prepared, variables: request.variables, auth_ok, work_id_header };

    match fault {
        Some(Fault::Http(status)) => {
            shared.finish_call(seq, Outcome::Http(status.as_u16()));
            let reason = status.canonical_reason().unwrap_or("Error");
            Answer::Text(status, format!("{} {reason}\n", status.as_u16())).into_response()
        }
        Some(Fault::GraphqlError(message, code)) => {
            let error = GqlError::new(&code, message);
            shared.finish_call(seq, Outcome::Errors { http_status: 200, errors: vec![error.summary()] });
            Answer::Json(StatusCode::OK, json!({"errors": [error.to_json()], "data": null})).into_response()
        }
        Some(Fault::GraphqlErrorWithStatus(status, message)) => {
            let error = GqlError::new("INTERNAL_SERVER_ERROR", message);
            shared.finish_call(seq, Outcome::Errors { http_status: status.as_u16(), errors: vec![error.summary()] });
            Answer::Json(status, json!({"errors": [error.to_json()]})).into_response()
        }
        Some(Fault::AppliedThen(status)) => {
            let _ = answer(&shared, pending).await;
            shared.finish_call(seq, Outcome::Http(status.as_u16()));
            let reason = status.canonical_reason().unwrap_or("Error");
            Answer::Text(status, format!("{} {reason}\n", status.as_u16())).into_response()
        }
        Some(Fault::Hang(delay)) => {
            // On a task of its own, so the request takes effect even if the client stops waiting.
            let worker = shared.clone();
            let lifetime = shared.lifetime.clone();
            let task = tokio::spawn(async move {
                tokio::select! {
                    _ = lifetime.cancelled() => None,
                    answer = async {
                        tokio::time::sleep(delay).await;
                        answer(&worker, pending).await
                    } => Some(answer),
                }
            });
            match task.await {
                Ok(Some(answer)) => answer.into_response(),
                _ => Answer::Text(StatusCode::SERVICE_UNAVAILABLE, "fake OpenCTI stopped".into()).into_response(),
            }
        }
        None => answer(&shared, pending).await.into_response(),
    }
}

/// Counts a request as being handled until dropped (a handler cancelled mid-way included).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads a GraphQL POST body as Apollo Server does (JSON content type, `query` string, `variables` object).
fn read_request(headers: &HeaderMap, body: &[u8]) -> Result<GqlRequest, String> {
    const BAD_BODY: &str = "POST body missing, invalid Content-Type, or JSON object has no keys.";
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return Err(BAD_BODY.into());
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return Err(BAD_BODY.into());
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) if !query.trim().is_empty() => query,
        _ => return Err("GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.".into()),
    };
    let variables = match object.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(variables)) => variables,
        Some(_) => return Err("`variables` in a POST body should be provided as an object.".into()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err("`operationName` in a POST body must be a string if provided.".into()),
    };
    Ok(GqlRequest { query, variables, operation_name })
}

fn prepare(request: &GqlRequest) -> Result<Prepared, GqlError> {
    let document = graphql::parse_document(&request.query)
        .map_err(|message| GqlError::new("GRAPHQL_PARSE_FAILED", format!("Syntax Error: {message}")))?;
    let operation = match &request.operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|op| op.name.as_deref() == Some(name.as_str()))
            .ok_or_else(|| GqlError::bad_input(format!("Unknown operation named \"{name}\".")))?,
        None if document.operations.len() == 1 => &document.operations[0],
        None => {
            return Err(GqlError::bad_input("Must provide operation name if query contains multiple operations."));
        }
    };
    Ok(Prepared { operation: operation.clone(), all: document.operations.clone() })
}

/// Validates, authenticates, executes; records the outcome.
async fn answer(shared: &Shared, pending: Pending) -> Answer {
    let Pending { seq, prepared, variables, auth_ok, work_id_header } = pending;
    let (status, body, errors) = match respond(shared, prepared, &variables, auth_ok, work_id_header).await {
        Ok(body) => {
            let errors: Vec<ErrorSummary> = body["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| ErrorSummary {
                            code: e["extensions"]["code"].as_str().unwrap_or_default().to_owned(),
                            message: e["message"].as_str().unwrap_or_default().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (StatusCode::OK, body, errors)
        }
        Err((status, errors)) => {
            let summaries = errors.iter().map(GqlError::summary).collect();
            let mut body = json!({"errors": errors.iter().map(GqlError::to_json).collect::<Vec<_>>()});
            if errors.iter().any(|e| e.code == "AUTH_REQUIRED") {
                body["data"] = Value::Null;
            }
            (status, body, summaries)
        }
    };
    let outcome =
        if errors.is_empty() { Outcome::Ok } else { Outcome::Errors { http_status: status.as_u16(), errors } };
    shared.finish_call(seq, outcome);
    Answer::Json(status, body)
}

/// The response body, or errors that stop the request before execution (with their HTTP status).
async fn respond(
    shared: &Shared,
    prepared: Result<Prepared, GqlError>,
    variables: &Map<String, Value>,
    auth_ok: bool,
    work_id_header: Option<String>,
) -> Result<Value, (StatusCode, Vec<GqlError>)> {
    let prepared = prepared.map_err(|e| (StatusCode::OK, vec![e]))?;
    let errors: Vec<GqlError> = prepared.all.iter().flat_map(validate_operation).collect();
    if !errors.is_empty() {
        return Err((StatusCode::OK, errors));
    }
    let variables = coerce_variables(&prepared.operation, variables).map_err(|e| (StatusCode::OK, e))?;
    if !auth_ok {
        let status = match shared.options.auth_failure {
            AuthFailure::GraphqlError => StatusCode::OK,
            AuthFailure::Http401 => StatusCode::UNAUTHORIZED,
        };
        return Err((status, vec![GqlError::auth_required()]));
    }
    // The platform refuses any request made in the context of a work (header `opencti-work-id`) that is gone.
    if let Some(work_id) = work_id_header {
        let alive = shared.lock().works.iter().any(|w| w.id == work_id && !w.deleted);
        if !alive {
            return Err((StatusCode::OK, vec![GqlError::work_not_alive()]));
        }
    }
    Ok(execute(shared, &prepared.operation, &variables).await)
}
