//! STIX 2.1 for the Maltrail connector: object types via serde, deterministic ids exactly as pycti and the STIX
//! spec derive them, pattern building, TLP markings, timestamps and bundle pieces. No I/O and no async: every
//! function here is a pure transformation, so it can be tested alone and run on the hot path.

pub mod bundle;
pub mod id;
pub mod marking;
pub mod object;
pub mod pattern;
pub mod timestamp;
pub mod uri;

pub use bundle::{BundleWriter, piece};
pub use id::{NAMESPACE, ObjectType, StixId};
pub use marking::Tlp;
pub use object::{
    Common, ExternalReference, FieldPatch, Identity, Indicator, Malware, MarkingContent, MarkingDefinition, Patch,
    Relationship, SpecVersion, StixObject, Strings, ValueObservable,
};
pub use pattern::{Destination, MainObservableType, Observation};
pub use timestamp::Timestamp;
