//! The state every request handler shares: the platform's data, the records, the pending faults.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::records::{Call, Outcome, Ping, Work, operation_matches};
use super::{FakeOptions, Fault};

/// What every request handler shares.
pub(super) struct Shared {
    pub(super) options: FakeOptions,
    pub(super) token: String,
    pub(super) started: Instant,
    /// Cancelled when the fake stops: delayed ([`Fault::Hang`]) requests are dropped then, and no request declares
    /// queues any more.
    pub(super) lifetime: CancellationToken,
    /// Requests being handled (cutting the connections does not stop a handler that is running).
    pub(super) in_flight: AtomicUsize,
    pub(super) inner: Mutex<Inner>,
}

/// The platform's data, and the records.
#[derive(Default)]
pub(super) struct Inner {
    pub(super) calls: Vec<Call>,
    pub(super) connectors: BTreeMap<String, ConnectorRecord>,
    pub(super) registrations: Vec<Value>,
    pub(super) pings: Vec<Ping>,
    pub(super) works: Vec<Work>,
    pub(super) declared_queues: BTreeSet<String>,
    pub(super) faults: Vec<FaultRule>,
    pub(super) queue_size_override: Option<u64>,
    pub(super) last_work_millis: u64,
    pub(super) mq_errors: Vec<String>,
}

/// A registered connector.
pub(super) struct ConnectorRecord {
    /// The last registration input.
    pub(super) input: Value,
    pub(super) state: Option<String>,
    /// The platform's `connector_state_reset`.
    pub(super) reset_pending: bool,
    pub(super) info: Option<Value>,
    pub(super) created_at: String,
    pub(super) updated_at: String,
}

pub(super) struct FaultRule {
    pub(super) operation: Option<String>,
    pub(super) remaining: usize,
    pub(super) fault: Fault,
}

/// A poisoned lock only means another test thread panicked: the data is still what it was.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(super) fn declared_queues(&self) -> Vec<String> {
        self.lock().declared_queues.iter().cloned().collect()
    }

    pub(super) fn take_fault(&self, operation: &str, sub_operation: Option<&str>) -> Option<Fault> {
        let mut inner = self.lock();
        let index = inner.faults.iter().position(|rule| {
            rule.remaining > 0
                && rule.operation.as_deref().is_none_or(|wanted| operation_matches(wanted, operation, sub_operation))
        })?;
        let rule = &mut inner.faults[index];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            inner.faults.remove(index);
        }
        Some(fault)
    }

    pub(super) fn record_call(&self, mut call: Call) -> usize {
        let mut inner = self.lock();
        call.seq = inner.calls.len();
        inner.calls.push(call);
        inner.calls.len() - 1
    }

    pub(super) fn finish_call(&self, seq: usize, outcome: Outcome) {
        if let Some(call) = self.lock().calls.get_mut(seq) {
            call.outcome = outcome;
        }
    }
}
