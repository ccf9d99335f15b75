//! maltrail-connector: keeps an OpenCTI platform in sync with Maltrail's static trails, on the `opencti-connector`
//! runtime.
//!
//! Layers run one way: [`connector`] (a run: plan, work, bundles, state) uses [`plan`] (what changed, what to
//! revoke), [`pipeline`] (one file's bundle, laid out once), [`source`] (GitHub or a directory), [`trails`] (the
//! file format) and [`convert`] (trails to STIX); the runtime talks to the platform and its broker.

pub mod cli;
pub mod connector;
pub mod convert;
pub mod export;
pub(crate) mod job;
pub(crate) mod lifecycle;
pub mod pipeline;
pub(crate) mod plan;
pub mod settings;
pub mod source;
pub(crate) mod state;
pub mod stats;
pub mod trails;
