//! The part of OpenCTI's schema a connector uses, and validating documents and variables against it (graphql-js).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::errors::GqlError;
use super::graphql::{self, Field, Lit, OpKind, Operation, TypeRef, lit_to_json};

/// A field of an object type: name, type, arguments (name, type).
pub struct FieldDef {
    pub name: &'static str,
    pub ty: &'static str,
    pub args: &'static [(&'static str, &'static str)],
}

const fn field(name: &'static str, ty: &'static str) -> FieldDef {
    FieldDef { name, ty, args: &[] }
}

const fn with_args(name: &'static str, args: &'static [(&'static str, &'static str)], ty: &'static str) -> FieldDef {
    FieldDef { name, ty, args }
}

/// What a named type is.
pub enum Kind {
    Scalar,
    Enum(&'static [&'static str]),
    Object(&'static [FieldDef]),
    /// An input object: fields (name, type).
    Input(&'static [(&'static str, &'static str)]),
}

const QUERY: &[FieldDef] = &[field("about", "AppInfo"), with_args("connector", &[("id", "String!")], "Connector")];

const MUTATION: &[FieldDef] = &[
    with_args("registerConnector", &[("input", "RegisterConnectorInput")], "Connector"),
    with_args(
        "pingConnector",
        &[("id", "ID!"), ("state", "String"), ("connectorInfo", "ConnectorInfoInput")],
        "Connector",
    ),
    with_args(
        "workAdd",
        &[("connectorId", "String!"), ("friendlyName", "String"), ("isMultiPartWork", "Boolean")],
        "Work",
    ),
    with_args("workEdit", &[("id", "ID!")], "WorkEditMutations"),
];

const APP_INFO: &[FieldDef] = &[field("version", "String!")];

const CONNECTOR: &[FieldDef] = &[
    field("id", "ID!"),
    field("name", "String!"),
    field("active", "Boolean"),
    field("auto", "Boolean"),
    field("only_contextual", "Boolean"),
    field("playbook_compatible", "Boolean"),
    field("connector_type", "String"),
    field("connector_scope", "[String]"),
    field("connector_state", "String"),
    field("connector_state_reset", "Boolean"),
    field("connector_user_id", "ID"),
    field("connector_queue_details", "ConnectorQueueDetails!"),
    field("connector_info", "ConnectorInfo"),
    field("config", "ConnectorConfig"),
    field("jwks", "String"),
    field("built_in", "Boolean"),
    field("created_at", "DateTime"),
    field("updated_at", "DateTime"),
];

const CONNECTOR_CONFIG: &[FieldDef] = &[
    field("connection", "RabbitMQConnection!"),
    field("s3", "S3Connection"),
    field("listen", "String!"),
    field("listen_routing", "String"),
    field("listen_exchange", "String!"),
    field("push", "String!"),
    field("push_routing", "String"),
    field("push_exchange", "String!"),
    field("listen_callback_uri", "String"),
    field("dead_letter_routing", "String"),
];

const RABBITMQ_CONNECTION: &[FieldDef] = &[
    field("host", "String!"),
    field("vhost", "String!"),
    field("use_ssl", "Boolean!"),
    field("port", "Int!"),
    field("user", "String!"),
    field("pass", "String!"),
];

const S3_CONNECTION: &[FieldDef] = &[
    field("endpoint", "String"),
    field("port", "Int"),
    field("use_ssl", "Boolean"),
    field("bucket_name", "String"),
    field("bucket_region", "String"),
    field("access_key", "String"),
    field("secret_key", "String"),
];

const QUEUE_DETAILS: &[FieldDef] = &[field("messages_number", "Float!"), field("messages_size", "Float!")];

const CONNECTOR_INFO: &[FieldDef] = &[
    field("run_and_terminate", "Boolean"),
    field("buffering", "Boolean"),
    field("queue_threshold", "Float"),
    field("queue_messages_size", "Float"),
    field("next_run_datetime", "DateTime"),
    field("last_run_datetime", "DateTime"),
];

const WORK: &[FieldDef] = &[field("id", "ID!"), field("name", "String"), field("status", "String")];

const WORK_EDIT: &[FieldDef] = &[
    with_args("addExpectations", &[("expectations", "Int")], "ID"),
    with_args("toProcessed", &[("message", "String"), ("inError", "Boolean")], "ID"),
    with_args("toReceived", &[("message", "String")], "ID"),
    with_args("reportExpectation", &[("error", "WorkErrorInput")], "ID"),
    field("ping", "ID"),
    field("delete", "ID"),
    with_args("addDraftContext", &[("draftContext", "String")], "ID"),
];

const REGISTER_CONNECTOR_INPUT: &[(&str, &str)] = &[
    ("id", "ID!"),
    ("name", "String!"),
    ("type", "ConnectorType!"),
    ("scope", "[String]"),
    ("auto", "Boolean"),
    ("auto_update", "Boolean"),
    ("only_contextual", "Boolean"),
    ("playbook_compatible", "Boolean"),
    ("enrichment_resolution", "String"),
    ("listen_callback_uri", "String"),
    ("version", "String"),
    ("slug", "String"),
    ("xtm_one_intent", "String"),
];

const CONNECTOR_INFO_INPUT: &[(&str, &str)] = &[
    ("run_and_terminate", "Boolean"),
    ("buffering", "Boolean"),
    ("queue_threshold", "Float"),
    ("queue_messages_size", "Float"),
    ("next_run_datetime", "DateTime"),
    ("last_run_datetime", "DateTime"),
];

const WORK_ERROR_INPUT: &[(&str, &str)] = &[("error", "String"), ("source", "String")];

const CONNECTOR_TYPES: &[&str] = &[
    "EXTERNAL_IMPORT",
    "INTERNAL_ENRICHMENT",
    "INTERNAL_IMPORT_FILE",
    "INTERNAL_EXPORT_FILE",
    "INTERNAL_ANALYSIS",
    "INTERNAL_INGESTION",
    "STREAM",
];

/// The kind of a named type, `None` for a type the schema does not have.
pub fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "String" | "ID" | "Int" | "Float" | "Boolean" | "DateTime" => Kind::Scalar,
        "ConnectorType" => Kind::Enum(CONNECTOR_TYPES),
        "Query" => Kind::Object(QUERY),
        "Mutation" => Kind::Object(MUTATION),
        "AppInfo" => Kind::Object(APP_INFO),
        "Connector" => Kind::Object(CONNECTOR),
        "ConnectorConfig" => Kind::Object(CONNECTOR_CONFIG),
        "RabbitMQConnection" => Kind::Object(RABBITMQ_CONNECTION),
        "S3Connection" => Kind::Object(S3_CONNECTION),
        "ConnectorQueueDetails" => Kind::Object(QUEUE_DETAILS),
        "ConnectorInfo" => Kind::Object(CONNECTOR_INFO),
        "Work" => Kind::Object(WORK),
        "WorkEditMutations" => Kind::Object(WORK_EDIT),
        "RegisterConnectorInput" => Kind::Input(REGISTER_CONNECTOR_INPUT),
        "ConnectorInfoInput" => Kind::Input(CONNECTOR_INFO_INPUT),
        "WorkErrorInput" => Kind::Input(WORK_ERROR_INPUT),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Validation and variable coercion (the graphql-js rules a connector can trip over)

struct Validator<'a> {
    operation: &'a Operation,
    errors: Vec<GqlError>,
    used: BTreeSet<String>,
}

pub(super) fn validate_operation(operation: &Operation) -> Vec<GqlError> {
    let mut validator = Validator { operation, errors: Vec::new(), used: BTreeSet::new() };
    validator.run();
    validator.errors
}

impl Validator<'_> {
    fn error(&mut self, message: String) {
        self.errors.push(GqlError::validation(message));
    }

    fn run(&mut self) {
        let operation = self.operation;
        let mut seen = BTreeSet::new();
        for definition in &operation.var_defs {
            if !seen.insert(definition.name.as_str()) {
                self.error(format!("There can be only one variable named \"${}\".", definition.name));
            }
            match kind(definition.ty.named()) {
                None => self.error(format!("Unknown type \"{}\".", definition.ty.named())),
                Some(Kind::Object(_)) => self.error(format!(
                    "Variable \"${}\" cannot be non-input type \"{}\".",
                    definition.name, definition.ty
                )),
                Some(_) => {
                    if let Some(default) = &definition.default {
                        self.check_value(default, &definition.ty);
                    }
                }
            }
        }
        let root = match operation.kind {
            OpKind::Query => "Query",
            OpKind::Mutation => "Mutation",
            OpKind::Subscription => {
                self.error("Schema is not configured to execute subscription operation.".into());
                return;
            }
        };
        self.check_selection(root, &operation.selection);
        for definition in &operation.var_defs {
            if !self.used.contains(&definition.name) {
                let message = match &operation.name {
                    Some(name) => format!("Variable \"${}\" is never used in operation \"{name}\".", definition.name),
                    None => format!("Variable \"${}\" is never used.", definition.name),
                };
                self.error(message);
            }
        }
    }

    fn check_selection(&mut self, parent: &str, fields: &[Field]) {
        let Some(Kind::Object(definitions)) = kind(parent) else {
            return;
        };
        for field in fields {
            if field.name == "__typename" {
                if field.selection.is_some() || !field.args.is_empty() {
                    self.error("Field \"__typename\" takes no arguments and no selection.".into());
                }
                continue;
            }
            let Some(definition) = definitions.iter().find(|d| d.name == field.name) else {
                let hint = if matches!(parent, "Query" | "Mutation" | "WorkEditMutations") {
                    " (fake OpenCTI: unknown operation)"
                } else {
                    ""
                };
                self.error(format!("Cannot query field \"{}\" on type \"{parent}\".{hint}", field.name));
                continue;
            };
            for (name, value) in &field.args {
                match definition.args.iter().find(|(arg, _)| arg == name) {
                    None => self.error(format!("Unknown argument \"{name}\" on field \"{parent}.{}\".", field.name)),
                    Some((_, ty)) => self.check_value(value, &TypeRef::schema(ty)),
                }
            }
            for (name, ty) in definition.args {
                if ty.ends_with('!') && !field.args.iter().any(|(arg, _)| arg == name) {
                    self.error(format!(
                        "Field \"{}\" argument \"{name}\" of type \"{ty}\" is required, but it was not provided.",
                        field.name
                    ));
                }
            }
            let field_type = TypeRef::schema(definition.ty);
            let is_object = matches!(kind(field_type.named()), Some(Kind::Object(_)));
            match (&field.selection, is_object) {
                (None, true) => self.error(format!(
                    "Field \"{}\" of type \"{field_type}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                    field.name, field.name
                )),
                (Some(selection), true) => self.check_selection(field_type.named(), selection),
                (Some(_), false) => self.error(format!(
                    "Field \"{}\" must not have a selection since type \"{field_type}\" has no subfields.",
                    field.name
                )),
                (None, false) => {}
            }
        }
    }

    /// Checks a literal (or a variable) used where `expected` is expected.
    fn check_value(&mut self, value: &Lit, expected: &TypeRef) {
        if let Lit::Var(name) = value {
            self.used.insert(name.clone());
            let operation = self.operation;
            match operation.var_defs.iter().find(|d| &d.name == name) {
                None => {
                    let message = match &operation.name {
                        Some(op) => format!("Variable \"${name}\" is not defined by operation \"{op}\"."),
                        None => format!("Variable \"${name}\" is not defined."),
                    };
                    self.error(message);
                }
                Some(definition) => {
                    let has_default = definition.default.as_ref().is_some_and(|d| *d != Lit::Null);
                    if !graphql::usage_allowed(&definition.ty, has_default, expected) {
                        self.error(format!(
                            "Variable \"${name}\" of type \"{}\" used in position expecting type \"{expected}\".",
                            definition.ty
                        ));
                    }
                }
            }
            return;
        }
        match expected {
            TypeRef::NonNull(inner) => {
                if *value == Lit::Null {
                    self.error(format!("Expected value of type \"{expected}\", found null."));
                } else {
                    self.check_value(value, inner);
                }
            }
            TypeRef::List(inner) => match value {
                Lit::List(items) => items.iter().for_each(|item| self.check_value(item, inner)),
                Lit::Null => {}
                other => self.check_value(other, inner),
            },
            TypeRef::Named(name) => {
                if *value == Lit::Null {
                    return;
                }
                let fits = match (kind(name), value) {
                    (_, Lit::List(_)) => false,
                    (Some(Kind::Scalar), value) => scalar_accepts_literal(name, value),
                    (Some(Kind::Enum(values)), Lit::Enum(v)) => values.contains(&v.as_str()),
                    (Some(Kind::Input(fields)), Lit::Object(entries)) => {
                        for (key, item) in entries {
                            match fields.iter().find(|(field, _)| field == key) {
                                None => self.error(format!("Field \"{key}\" is not defined by type \"{name}\".")),
                                Some((_, ty)) => self.check_value(item, &TypeRef::schema(ty)),
                            }
                        }
                        for (field, ty) in fields {
                            if ty.ends_with('!') && !entries.iter().any(|(key, _)| key == field) {
                                self.error(format!(
                                    "Field \"{name}.{field}\" of required type \"{ty}\" was not provided."
                                ));
                            }
                        }
                        true
                    }
                    _ => false,
                };
                if !fits {
                    self.error(format!("Expected value of type \"{name}\", found {}.", graphql::lit_text(value)));
                }
            }
        }
    }
}

fn scalar_accepts_literal(scalar: &str, value: &Lit) -> bool {
    match (scalar, value) {
        ("Int", Lit::Int(i)) => i32::try_from(*i).is_ok(),
        ("Float", Lit::Int(_) | Lit::Float(_)) => true,
        ("String", Lit::Str(_)) | ("ID", Lit::Str(_) | Lit::Int(_)) | ("Boolean", Lit::Bool(_)) => true,
        ("DateTime", Lit::Str(s)) => is_datetime(s),
        _ => false,
    }
}

/// Checks the `variables` against the operation's definitions (types, required ones, defaults), as graphql-js does
/// before executing; returns the coerced values.
pub(super) fn coerce_variables(
    operation: &Operation,
    provided: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<GqlError>> {
    let mut coerced = Map::new();
    let mut errors = Vec::new();
    for definition in &operation.var_defs {
        let name = &definition.name;
        match provided.get(name) {
            None => {
                if let Some(default) = &definition.default {
                    coerced.insert(name.clone(), lit_to_json(default, &Map::new()).unwrap_or(Value::Null));
                } else if definition.ty.is_non_null() {
                    errors.push(GqlError::bad_input(format!(
                        "Variable \"${name}\" of required type \"{}\" was not provided.",
                        definition.ty
                    )));
                }
            }
            Some(Value::Null) if definition.ty.is_non_null() => errors.push(GqlError::bad_input(format!(
                "Variable \"${name}\" of non-null type \"{}\" must not be null.",
                definition.ty
            ))),
            Some(value) => match coerce_value(value, &definition.ty) {
                Ok(value) => {
                    coerced.insert(name.clone(), value);
                }
                Err(reason) => errors
                    .push(GqlError::bad_input(format!("Variable \"${name}\" got invalid value {value}; {reason}"))),
            },
        }
    }
    if errors.is_empty() { Ok(coerced) } else { Err(errors) }
}

fn coerce_value(value: &Value, ty: &TypeRef) -> Result<Value, String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if value.is_null() {
                Err(format!("Expected non-nullable type \"{ty}\" not to be null."))
            } else {
                coerce_value(value, inner)
            }
        }
        _ if value.is_null() => Ok(Value::Null),
        TypeRef::List(inner) => match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| coerce_value(item, inner).map_err(|e| format!("{e} At index {i}.")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            single => Ok(Value::Array(vec![coerce_value(single, inner)?])),
        },
        TypeRef::Named(name) => match kind(name) {
            Some(Kind::Scalar) => coerce_scalar(name, value),
            Some(Kind::Enum(values)) => match value.as_str() {
                Some(v) if values.contains(&v) => Ok(value.clone()),
                _ => Err(format!("Value {value} does not exist in \"{name}\" enum.")),
            },
            Some(Kind::Input(fields)) => {
                let Value::Object(object) = value else {
                    return Err(format!("Expected type \"{name}\" to be an object."));
                };
                let mut out = Map::new();
                for (key, item) in object {
                    let Some((_, field_type)) = fields.iter().find(|(field, _)| field == key) else {
                        return Err(format!("Field \"{key}\" is not defined by type \"{name}\"."));
                    };
                    let item =
                        coerce_value(item, &TypeRef::schema(field_type)).map_err(|e| format!("{e} At \"{key}\"."))?;
                    out.insert(key.clone(), item);
                }
                for (field, field_type) in fields {
                    if field_type.ends_with('!') && object.get(*field).is_none_or(Value::is_null) {
                        return Err(format!("Field \"{field}\" of required type \"{field_type}\" was not provided."));
                    }
                }
                Ok(Value::Object(out))
            }
            Some(Kind::Object(_)) | None => Err(format!("\"{name}\" is not an input type.")),
        },
    }
}

fn coerce_scalar(name: &str, value: &Value) -> Result<Value, String> {
    let fits = match name {
        "String" => value.is_string(),
        "ID" => value.is_string() || value.is_i64() || value.is_u64(),
        "Int" => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        "Float" => value.is_number(),
        "Boolean" => value.is_boolean(),
        "DateTime" => value.as_str().is_some_and(is_datetime),
        _ => false,
    };
    if !fits {
        return Err(format!("{name} cannot represent value: {value}"));
    }
    Ok(match (name, value) {
        ("ID", Value::Number(n)) => json!(n.to_string()),
        _ => value.clone(),
    })
}

/// RFC 3339 date-time (`2024-05-01T12:00:00Z`, optional fraction, `Z` or `±HH:MM`), as the platform's DateTime scalar
/// wants it.
fn is_datetime(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|b| b.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    if !(digits(0..4) && at(4, b'-') && digits(5..7) && at(7, b'-') && digits(8..10)) {
        return false;
    }
    if !((at(10, b'T') || at(10, b't')) && digits(11..13) && at(13, b':') && digits(14..16) && at(16, b':')) {
        return false;
    }
    if !digits(17..19) {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match bytes.get(i) {
        Some(b'Z' | b'z') => i + 1 == bytes.len(),
        Some(b'+' | b'-') => digits(i + 1..i + 3) && at(i + 3, b':') && digits(i + 4..i + 6) && i + 6 == bytes.len(),
        _ => false,
    }
}
