//! A runtime for OpenCTI external-import connectors in Rust: what pycti's `OpenCTIConnectorHelper` is to a Python
//! connector, without its god object.
//!
//! A connector brings its own source and its conversion to STIX (with [`proto_stix`]); the runtime does the rest,
//! the way pycti does it on the wire, so the platform cannot tell the difference:
//!
//! - [`settings`]: `OPENCTI_*`, `CONNECTOR_*` and `MQ_*` (pycti's names and forms), environment over `config.yml`,
//!   validated with messages that name the variable, each setting described once so that the README tables,
//!   `config.yml.sample` and the connector catalog's schema are generated ([`settings::render`]);
//! - [`Runtime`]: registration, the first ping, a ping every 40 s with the state (adopting a reset made in the UI),
//!   the schedule (period, run-and-terminate, queue threshold, backoff after failures), works;
//! - [`send`]: pycti's envelope, client-side pieces or multi-object bundles the platform splits, each message's
//!   expectations by the platform's rule, a pipelined confirm-window publisher that reconnects and re-publishes
//!   what was not confirmed, and pycti's `DIRECTORY_BUNDLE` files;
//! - [`metrics`] (pycti's series and `/health`), [`logging`], and [`Shutdown`], which reaches and waits for every
//!   task.
//!
//! # A connector in fifty lines
//!
//! `examples/minimal.rs` registers, and on each run opens a work, sends one bundle and saves its state. The test
//! suite builds it and runs it against its fake OpenCTI and a real RabbitMQ.
//!
//! ```no_run
#![doc = include_str!("../examples/minimal.rs")]
//! ```
//!
//! The Maltrail connector (the `maltrail-connector` crate beside this one) is a full example: a source (GitHub or
//! a directory), a plan (incremental, with revocations), and its run in `connector.rs`.

pub mod jobs;
pub mod leadership;
pub mod logging;
pub mod metrics;
pub mod opencti;
mod runtime;
mod schedule;
pub mod send;
mod serve;
pub mod settings;
mod shutdown;
mod state;
mod work;

pub(crate) mod error_chain;

pub use error_chain::{error_chain, excerpt};
pub use metrics::RunOutcome;
pub use runtime::{
    About, BoxError, DRAIN_TIMEOUT, Job, PING_INTERVAL, RunContext, Runtime, RuntimeError, Timings, close,
    drain_and_close,
};
pub use schedule::RetryTimings;
pub use serve::{JobRun, JobRunError, WorkContext, Worker};
pub use shutdown::Shutdown;
pub use state::{StateDocument, StateView, parse_state, state_json};
pub use work::Work;
