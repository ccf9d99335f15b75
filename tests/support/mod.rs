//! Helpers shared by the integration tests.

// Not every test crate uses every helper.
#![allow(dead_code)]

pub mod connector;
pub mod fake_github;
pub mod fake_opencti;
pub mod rabbit;
pub mod snapshot;
pub mod tls_proxy;
pub mod trails;
