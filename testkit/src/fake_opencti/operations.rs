//! The root fields the fake answers: `about`, `connector`, `registerConnector`, `pingConnector`, `workAdd`, `workEdit`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::errors::GqlError;
use super::graphql::{Field, OpKind, Operation, TypeRef, lit_to_json};
use super::queues::{ensure_queues, queue_details};
use super::records::{Ping, Work};
use super::schema::{self, Kind};
use super::state::{ConnectorRecord, Shared};
use super::timestamps::{iso8601, iso8601_millis};
use super::{CONNECTOR_EXCHANGE, WORKER_EXCHANGE};

pub(super) async fn execute(shared: &Shared, operation: &Operation, variables: &Map<String, Value>) -> Value {
    let mut data = Map::new();
    let mut errors = Vec::new();
    for field in &operation.selection {
        let key = field.key().to_owned();
        let value = match field.name.as_str() {
            "__typename" => json!(if operation.kind == OpKind::Mutation { "Mutation" } else { "Query" }),
            "workEdit" => work_edit(shared, field, variables, &mut errors),
            _ => match resolve_root(shared, field, variables).await {
                Ok(value) => value,
                Err(error) => {
                    errors.push(error.at(vec![key.clone()]));
                    Value::Null
                }
            },
        };
        data.insert(key, value);
    }
    if errors.is_empty() {
        json!({"data": data})
    } else {
        json!({"errors": errors.iter().map(GqlError::to_json).collect::<Vec<_>>(), "data": data})
    }
}

async fn resolve_root(shared: &Shared, field: &Field, variables: &Map<String, Value>) -> Result<Value, GqlError> {
    let args = resolve_args(field, variables);
    let selection = field.selection.as_deref().unwrap_or_default();
    match field.name.as_str() {
        "about" => Ok(project(&json!({"version": shared.options.version}), "AppInfo", selection)),
        "connector" => {
            let id = arg_string(&args, "id").unwrap_or_default();
            if !shared.lock().connectors.contains_key(&id) {
                return Ok(Value::Null);
            }
            connector_answer(shared, &id, field).await
        }
        "registerConnector" => {
            let id = register_connector(shared, args.get("input").unwrap_or(&Value::Null)).await?;
            connector_answer(shared, &id, field).await
        }
        "pingConnector" => {
            let id = arg_string(&args, "id").unwrap_or_default();
            let state = args.get("state").and_then(Value::as_str).map(str::to_owned);
            let info = args.get("connectorInfo").filter(|v| !v.is_null()).cloned();
            ping_connector(shared, &id, state, info).await?;
            connector_answer(shared, &id, field).await
        }
        "workAdd" => {
            let connector_id = arg_string(&args, "connectorId").unwrap_or_default();
            let friendly_name = args.get("friendlyName").and_then(Value::as_str).map(str::to_owned);
            let multipart = args.get("isMultiPartWork").and_then(Value::as_bool).unwrap_or(false);
            let work = add_work(shared, &connector_id, friendly_name, multipart)?;
            Ok(project(&work, "Work", selection))
        }
        other => Err(GqlError::validation(format!("unknown operation `{other}` (fake OpenCTI)"))),
    }
}

/// The `Connector` answer of `connector`, `registerConnector` and `pingConnector`. Queue details are read from the
/// broker only when selected.
async fn connector_answer(shared: &Shared, id: &str, field: &Field) -> Result<Value, GqlError> {
    let selection = field.selection.as_deref().unwrap_or_default();
    let queue_details = if selection.iter().any(|f| f.name == "connector_queue_details") {
        queue_details(shared, id).await
    } else {
        Value::Null
    };
    let inner = shared.lock();
    let Some(record) = inner.connectors.get(id) else {
        return Ok(Value::Null);
    };
    let options = &shared.options;
    let input = &record.input;
    let scope = match input.get("scope") {
        Some(Value::Array(scope)) if !scope.is_empty() => Value::Array(scope.clone()),
        Some(Value::String(scope)) if !scope.is_empty() => json!([scope]),
        _ => Value::Null,
    };
    let connection = &options.connection;
    let full = json!({
        "id": id,
        "name": input.get("name").cloned().unwrap_or(Value::Null),
        "active": true,
        "auto": input.get("auto").cloned().unwrap_or(Value::Null),
        "only_contextual": input.get("only_contextual").cloned().unwrap_or(Value::Null),
        "playbook_compatible": input.get("playbook_compatible").cloned().unwrap_or(json!(false)),
        "connector_type": input.get("type").cloned().unwrap_or(Value::Null),
        "connector_scope": scope,
        "connector_state": record.state,
        "connector_state_reset": record.reset_pending,
        "connector_user_id": options.connector_user_id,
        "connector_queue_details": queue_details,
        "connector_info": record.info,
        "config": {
            "connection": {
                "host": connection.host,
                "vhost": connection.vhost,
                "use_ssl": connection.use_ssl,
                "port": connection.port,
                "user": connection.user,
                "pass": connection.pass,
            },
            "s3": {
                "endpoint": "localhost",
                "port": 9000,
                "use_ssl": false,
                "bucket_name": "opencti-bucket",
                "bucket_region": "us-east-1",
                "access_key": "ChangeMe",
                "secret_key": "ChangeMe",
            },
            "listen": format!("listen_{id}"),
            "listen_routing": format!("listen_routing_{id}"),
            "listen_exchange": CONNECTOR_EXCHANGE,
            "push": format!("push_{id}"),
            "push_routing": format!("push_routing_{id}"),
            "push_exchange": WORKER_EXCHANGE,
            "listen_callback_uri": input.get("listen_callback_uri").cloned().unwrap_or(Value::Null),
            "dead_letter_routing": "listen_routing_too-large-bundle",
        },
        "jwks": null,
        "built_in": false,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    });
    Ok(project(&full, "Connector", selection))
}

async fn register_connector(shared: &Shared, input: &Value) -> Result<String, GqlError> {
    let Some(object) = input.as_object() else {
        return Err(GqlError::unknown("registerConnector needs an `input` (fake OpenCTI)"));
    };
    let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = object.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = object.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
    let scope: Vec<String> = match object.get("scope") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(item)) => vec![item.clone()],
        _ => Vec::new(),
    };
    ensure_queues(shared, &id, &name, &kind, &scope).await?;
    let now = iso8601(SystemTime::now());
    let mut inner = shared.lock();
    let initial_state = shared.options.initial_state.clone();
    let record = inner.connectors.entry(id.clone()).or_insert_with(|| ConnectorRecord {
        input: Value::Null,
        state: initial_state,
        reset_pending: false,
        info: None,
        created_at: now.clone(),
        updated_at: now.clone(),
    });
    record.input = input.clone();
    record.updated_at = now;
    inner.registrations.push(input.clone());
    Ok(id)
}

async fn ping_connector(shared: &Shared, id: &str, state: Option<String>, info: Option<Value>) -> Result<(), GqlError> {
    let (name, kind, scope) = {
        let inner = shared.lock();
        let record = inner
            .connectors
            .get(id)
            .ok_or_else(|| GqlError::functional("No connector found with the specified ID", id))?;
        let text = |key: &str| record.input.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let scope = record
            .input
            .get("scope")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        (text("name"), text("type"), scope)
    };
    // The platform re-declares the queues on every ping ("Ensure queue are correctly setup").
    ensure_queues(shared, id, &name, &kind, &scope).await?;
    let now = iso8601(SystemTime::now());
    let mut inner = shared.lock();
    let record = inner
        .connectors
        .get_mut(id)
        .ok_or_else(|| GqlError::functional("No connector found with the specified ID", id))?;
    if record.reset_pending {
        record.reset_pending = false;
    } else {
        record.state = state.clone();
    }
    if info.is_some() {
        record.info = info.clone();
    }
    record.updated_at = now;
    let answered_state = record.state.clone();
    inner.pings.push(Ping { id: id.to_owned(), state, connector_info: info, answered_state });
    Ok(())
}

fn add_work(
    shared: &Shared,
    connector_id: &str,
    friendly_name: Option<String>,
    multipart: bool,
) -> Result<Value, GqlError> {
    let mut inner = shared.lock();
    if !inner.connectors.contains_key(connector_id) {
        return Err(GqlError::functional("No connector found with the specified ID", connector_id));
    }
    // The platform's ids: `work_<connector id>_<ISO timestamp>`; kept unique by moving on 1 ms when two collide.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let millis = u64::try_from(now).unwrap_or(u64::MAX).max(inner.last_work_millis + 1);
    inner.last_work_millis = millis;
    let id = format!("work_{connector_id}_{}", iso8601_millis(millis));
    inner.works.push(Work {
        id: id.clone(),
        connector_id: connector_id.to_owned(),
        friendly_name: friendly_name.clone(),
        is_multipart: multipart,
        expectations: 0,
        expectation_calls: Vec::new(),
        completed_number: 0,
        processed: false,
        processed_calls: 0,
        in_error: false,
        message: None,
        received_messages: Vec::new(),
        errors: Vec::new(),
        status: "progress".into(),
        pings: 0,
        deleted: false,
        draft_context: None,
    });
    Ok(json!({"id": id, "name": friendly_name, "status": "progress"}))
}

/// `workEdit(id) { … }`: every selected field runs in order; each answers the work id.
fn work_edit(shared: &Shared, field: &Field, variables: &Map<String, Value>, errors: &mut Vec<GqlError>) -> Value {
    let args = resolve_args(field, variables);
    let work_id = arg_string(&args, "id").unwrap_or_default();
    let mut answer = Map::new();
    for edit in field.selection.as_deref().unwrap_or_default() {
        let value = match edit_work(shared, &work_id, edit, variables) {
            Ok(value) => value,
            Err(error) => {
                errors.push(error.at(vec![field.key().to_owned(), edit.key().to_owned()]));
                Value::Null
            }
        };
        answer.insert(edit.key().to_owned(), value);
    }
    Value::Object(answer)
}

fn edit_work(shared: &Shared, work_id: &str, edit: &Field, variables: &Map<String, Value>) -> Result<Value, GqlError> {
    if edit.name == "__typename" {
        return Ok(json!("WorkEditMutations"));
    }
    let args = resolve_args(edit, variables);
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut inner = shared.lock();
    let work = inner.works.iter_mut().find(|w| w.id == work_id && !w.deleted).ok_or_else(GqlError::work_not_alive)?;
    match edit.name.as_str() {
        "addExpectations" => {
            let n = args.get("expectations").and_then(Value::as_i64).ok_or_else(|| {
                GqlError::bad_input("addExpectations without a number of `expectations` (rejected by the fake OpenCTI)")
            })?;
            work.expectations += n;
            work.expectation_calls.push(n);
        }
        "toProcessed" => {
            work.processed = true;
            work.processed_calls += 1;
            work.message = text("message");
            work.in_error = args.get("inError").and_then(Value::as_bool).unwrap_or(false);
            // The platform's `updateProcessedTime`: complete when every expectation is already reported.
            if work.completed_number >= work.expectations {
                work.status = "complete".into();
            }
        }
        "toReceived" => work.received_messages.push(text("message")),
        "reportExpectation" => {
            work.completed_number += 1;
            if let Some(error) = args.get("error").filter(|e| !e.is_null()) {
                work.errors.push(error.clone());
            }
            // The platform's `reportExpectation`: a multipart work completes only once processed.
            if (work.processed || !work.is_multipart) && work.completed_number >= work.expectations {
                work.status = "complete".into();
            }
        }
        "ping" => work.pings += 1,
        "delete" => work.deleted = true,
        "addDraftContext" => work.draft_context = text("draftContext"),
        other => return Err(GqlError::validation(format!("unknown operation `workEdit.{other}` (fake OpenCTI)"))),
    }
    Ok(json!(work_id))
}

/// The arguments of a field, variables substituted (an absent variable leaves its argument out).
fn resolve_args(field: &Field, variables: &Map<String, Value>) -> Map<String, Value> {
    field.args.iter().filter_map(|(name, lit)| Some((name.clone(), lit_to_json(lit, variables)?))).collect()
}

/// A string or integer argument as a string (IDs may come as either).
fn arg_string(args: &Map<String, Value>, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Keeps only the selected fields of `value` (of GraphQL type `type_name`), under their response keys.
fn project(value: &Value, type_name: &str, selection: &[Field]) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, type_name, selection)).collect()),
        Value::Object(map) => {
            let definitions = match schema::kind(type_name) {
                Some(Kind::Object(definitions)) => definitions,
                _ => &[],
            };
            let mut out = Map::new();
            for field in selection {
                let projected = if field.name == "__typename" {
                    json!(type_name)
                } else {
                    let raw = map.get(&field.name).cloned().unwrap_or(Value::Null);
                    let definition = definitions.iter().find(|d| d.name == field.name);
                    match (&field.selection, definition) {
                        (Some(selection), Some(definition)) => {
                            project(&raw, TypeRef::schema(definition.ty).named(), selection)
                        }
                        _ => raw,
                    }
                };
                out.insert(field.key().to_owned(), projected);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}
