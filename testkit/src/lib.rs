//! Test support shared by the workspace's integration tests. Fakes stand in for the services outside the
//! connector only: the OpenCTI platform (its GraphQL API, and what its workers do with the push queue), the GitHub
//! API, and a TLS front for the local RabbitMQ; the broker itself is real.

pub mod fake_github;
pub mod fake_opencti;
pub mod rabbit;
pub mod snapshot;
pub mod tls_proxy;
