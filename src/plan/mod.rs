//! What a run sends: nothing (the source is where the state says), every trail file of the head revision (a first
//! run, another source, or a revision the source no longer knows), or only what changed since the last synced
//! revision, revoking what Maltrail removed ([`incremental`]).

mod incremental;

pub(crate) use incremental::{FilePlan, IncrementalPlan, ParsedChange, plan_incremental};

use crate::source::{Revision, Source, SourceError};
use crate::state::SyncState;

/// A run's plan.
#[derive(Debug)]
pub(crate) enum Plan {
    /// The source is at the synced revision, or no trail file changed since: nothing to send.
    UpToDate { head: Revision },
    /// Every trail file of `head`.
    Full { head: Revision },
    /// What changed from `base` to `head`.
    Update { base: String, head: Revision, plan: IncrementalPlan },
}

impl Plan {
    pub fn head(&self) -> &Revision {
        match self {
            Self::UpToDate { head } | Self::Full { head } | Self::Update { head, .. } => head,
        }
    }

    /// The work's name, e.g. `Maltrail update 8adace1..4f0e2c1 (12 files)` or `Maltrail full import 8adace1
    /// (github:stamparm/maltrail@master)`.
    pub(crate) fn work_name(&self, source: &str) -> String {
        match self {
            Self::UpToDate { head } => format!("Maltrail up to date {}", short(&head.id)),
            Self::Full { head } => format!("Maltrail full import {} ({source})", short(&head.id)),
            Self::Update { base, head, plan } => {
                format!("Maltrail update {}..{} ({} files)", short(base), short(&head.id), plan.files.len())
            }
        }
    }
}

/// Settles what the run sends, from the source's head and the synced state.
pub async fn plan(
    source: &Source,
    state: &SyncState,
    converter: &crate::convert::Converter,
) -> Result<Plan, SourceError> {
    let head = source.head().await?;
    let described = source.describe();
    let Some(base) = state.synced_revision(&described).map(str::to_owned) else {
        return Ok(Plan::Full { head });
    };
    if base == head.id {
        tracing::info!(revision = %head.id, "up to date with the source");
        return Ok(Plan::UpToDate { head });
    }
    match source.changes(&base, &head).await {
        Ok(changes) => {
            tracing::info!(from = %base, to = %head.id, changed_files = changes.len(), "incremental run");
            let plan = plan_incremental(source, &head, changes, converter).await?;
            if plan.files.is_empty() {
                tracing::info!(revision = %head.id, "no trail file changed");
                return Ok(Plan::UpToDate { head });
            }
            Ok(Plan::Update { base, head, plan })
        }
        Err(SourceError::UnknownRevision(revision)) => {
            tracing::warn!(revision, "the last synced revision is unknown to the source: full import");
            Ok(Plan::Full { head })
        }
        Err(error) => Err(error),
    }
}

/// The first seven characters of a revision, as git shows commits.
pub(crate) fn short(revision: &str) -> &str {
    revision.get(..7).unwrap_or(revision)
}
