//! maltrail-connector: keeps an OpenCTI platform in sync with Maltrail's static trails.

pub mod convert;
pub mod trails;
