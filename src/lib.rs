//! maltrail-connector: keeps an OpenCTI platform in sync with Maltrail's static trails.

pub mod cli;
pub mod config;
pub mod convert;
pub mod directory_output;
pub mod error_chain;
pub mod export;
pub mod logging;
pub mod metrics;
pub mod opencti;
pub mod publish;
pub mod run;
pub mod schedule;
pub mod sequence;
pub mod service;
pub mod shutdown;
pub mod source;
pub mod state;
pub mod stats;
pub mod trails;
