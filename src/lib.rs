//! maltrail-connector: keeps an OpenCTI platform in sync with Maltrail's static trails.

pub mod cli;
pub mod config;
pub mod convert;
pub mod directory_output;
pub mod export;
pub mod logging;
pub mod sequence;
pub mod source;
pub mod stats;
pub mod trails;
