//! STIX bundles written straight to bytes: the pieces pycti publishes (one object each, with `x_opencti_seq`) and
//! multi-object bundles, built by appending each object's JSON without an intermediate tree.

use crate::id::StixId;
use crate::object::StixObject;

/// A bundle being written: `{"type":"bundle","id":..,"spec_version":"2.1"[,"x_opencti_seq":n],"objects":[...]}`.
#[derive(Debug, Clone)]
pub struct BundleWriter {
    buf: Vec<u8>,
    objects: usize,
}

impl BundleWriter {
    /// Starts a bundle with the given id; `seq` is pycti's `x_opencti_seq` (a piece's dependency count).
    pub fn new(id: StixId, seq: Option<u32>) -> Self {
        Self::with_capacity(id, seq, 1024)
    }

    /// Like [`BundleWriter::new`], reserving `capacity` bytes.
    pub fn with_capacity(id: StixId, seq: Option<u32>, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(br#"{"type":"bundle","id":""#);
        buf.extend_from_slice(id.to_string().as_bytes());
        buf.extend_from_slice(br#"","spec_version":"2.1""#);
        if let Some(seq) = seq {
            buf.extend_from_slice(br#","x_opencti_seq":"#);
            buf.extend_from_slice(seq.to_string().as_bytes());
        }
        buf.extend_from_slice(br#","objects":["#);
        Self { buf, objects: 0 }
    }

    /// Appends an object.
    pub fn push(&mut self, object: &StixObject<'_>) {
        self.separate();
        object.write_json(&mut self.buf);
    }

    /// Appends an object already serialized as one JSON object (e.g. by [`StixObject::write_json`]).
    pub fn push_json(&mut self, json: &[u8]) {
        self.separate();
        self.buf.extend_from_slice(json);
    }

    fn separate(&mut self) {
        if self.objects > 0 {
            self.buf.push(b',');
        }
        self.objects += 1;
    }

    /// Number of objects appended so far.
    pub fn object_count(&self) -> usize {
        self.objects
    }

    /// Bytes written so far (the closing `]}` not included).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// The finished bundle's JSON bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"]}");
        self.buf
    }
}

/// One pycti piece: a bundle holding the single object `object_json` with `x_opencti_seq = seq`.
pub fn piece(bundle_id: StixId, seq: u32, object_json: &[u8]) -> Vec<u8> {
    let mut writer = BundleWriter::with_capacity(bundle_id, Some(seq), object_json.len() + 128);
    writer.push_json(object_json);
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectType;
    use crate::marking::Tlp;

    #[test]
    fn pieces_are_valid_bundles() {
        let id = StixId::random(ObjectType::Bundle);
        let mut json = Vec::new();
        StixObject::MarkingDefinition(Tlp::Green.marking_definition()).write_json(&mut json);
        let bytes = piece(id, 1, &json);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["type"], "bundle");
        assert_eq!(value["id"], id.to_string());
        assert_eq!(value["spec_version"], "2.1");
        assert_eq!(value["x_opencti_seq"], 1);
        assert_eq!(value["objects"][0]["id"], Tlp::Green.id().to_string());
    }

    #[test]
    fn multi_object_and_empty_bundles() {
        let id = StixId::random(ObjectType::Bundle);
        let empty: serde_json::Value = serde_json::from_slice(&BundleWriter::new(id, None).finish()).unwrap();
        assert_eq!(empty["objects"].as_array().unwrap().len(), 0);
        assert!(empty.get("x_opencti_seq").is_none());

        let mut writer = BundleWriter::new(id, None);
        writer.push(&StixObject::MarkingDefinition(Tlp::Red.marking_definition()));
        writer.push(&StixObject::MarkingDefinition(Tlp::AmberStrict.marking_definition()));
        assert_eq!(writer.object_count(), 2);
        let value: serde_json::Value = serde_json::from_slice(&writer.finish()).unwrap();
        assert_eq!(value["objects"][1]["x_opencti_definition"], "TLP:AMBER+STRICT");
    }
}
