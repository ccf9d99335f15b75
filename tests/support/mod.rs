//! Helpers shared by the integration tests: the workspace's test kit (fakes of OpenCTI and GitHub, RabbitMQ
//! helpers, the snapshot), and the Maltrail-specific ones.

// Not every test crate uses every helper.
#![allow(dead_code, unused_imports)]

pub mod collector;
pub mod connector;
pub mod process;
pub mod trails;

pub use testkit::{fake_github, fake_opencti, rabbit, snapshot, tls_proxy};
