//! Where trail files come from: a local directory, or the GitHub API.

pub mod directory;
