//! The message body pycti publishes to the platform's push queue: a JSON envelope around the base64 of a bundle.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What every message of one send carries besides the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `connector_user_id` from the registration: the user the platform imports as.
    pub applicant_id: String,
    /// The work the message counts towards, when one is open.
    pub work_id: Option<String>,
}

impl Envelope {
    /// The message body for the `sequence`-th piece (1-based) of a send, exactly as pycti's `_send_bundle` builds
    /// it: `bundle_type`, `applicant_id`, `action_sequence`, `entities_types`, `content` (base64 of the bundle's
    /// UTF-8 JSON), `update`, `draft_id`, `no_split`, and `work_id` when a work is open.
    pub fn message(&self, sequence: u64, bundle: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bundle.len() * 4 / 3 + 256);
        out.extend_from_slice(br#"{"bundle_type":"QUEUE_BUNDLE","applicant_id":"#);
        push_json_string(&mut out, &self.applicant_id);
        out.extend_from_slice(br#","action_sequence":"#);
        out.extend_from_slice(sequence.to_string().as_bytes());
        out.extend_from_slice(br#","entities_types":[],"content":""#);
        let mut encoded = String::with_capacity(bundle.len() * 4 / 3 + 4);
        STANDARD.encode_string(bundle, &mut encoded);
        out.extend_from_slice(encoded.as_bytes());
        out.extend_from_slice(br#"","update":false,"draft_id":null,"no_split":false"#);
        if let Some(work_id) = &self.work_id {
            out.extend_from_slice(br#","work_id":"#);
            push_json_string(&mut out, work_id);
        }
        out.push(b'}');
        out
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a str cannot fail.
    let _ = serde_json::to_writer(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_every_pycti_field() {
        let envelope = Envelope { applicant_id: "user \"1\"".into(), work_id: Some("work-9".into()) };
        let body = envelope.message(3, br#"{"type":"bundle"}"#);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["bundle_type"], "QUEUE_BUNDLE");
        assert_eq!(value["applicant_id"], "user \"1\"");
        assert_eq!(value["action_sequence"], 3);
        assert_eq!(value["entities_types"], serde_json::json!([]));
        assert_eq!(STANDARD.decode(value["content"].as_str().unwrap()).unwrap(), br#"{"type":"bundle"}"#);
        assert_eq!(value["update"], false);
        assert_eq!(value["draft_id"], serde_json::Value::Null);
        assert_eq!(value["no_split"], false);
        assert_eq!(value["work_id"], "work-9");
        assert_eq!(value.as_object().unwrap().len(), 9);

        let no_work = Envelope { work_id: None, ..envelope }.message(1, b"{}");
        let value: serde_json::Value = serde_json::from_slice(&no_work).unwrap();
        assert!(value.get("work_id").is_none());
    }
}
