//! When the next run starts: a period after the last run that did its job (counted from the state's `last_run`,
//! so a restart keeps the rhythm), sooner after a run skipped for a full push queue, and with growing delays after
//! failed runs, so an outage of GitHub or of the platform never turns into a hot loop, nor costs a whole period
//! when the period is long.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::metrics::RunOutcome;

/// The delays of the schedule besides the period. Only tests change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryTimings {
    /// First wait after a failed run; it doubles (with jitter) with each further failure, up to the period.
    pub after_failure: Duration,
    /// Wait after a run skipped because the push queue was over the threshold, before checking it again.
    pub queue_recheck: Duration,
}

impl Default for RetryTimings {
    fn default() -> Self {
        Self { after_failure: Duration::from_secs(60), queue_recheck: Duration::from_secs(60) }
    }
}

/// The waits between runs of one service.
#[derive(Debug)]
pub(crate) struct Schedule {
    period: Duration,
    timings: RetryTimings,
    failures: ExponentialBackoff,
}

impl Schedule {
    pub fn new(period: Duration, timings: RetryTimings) -> Self {
        Self { period, timings, failures: failure_delays(period, timings) }
    }

    /// How long to wait after a run that ended with `outcome`: `None` means "a period after the state's
    /// `last_run`" (the run did its job, or found nothing to do).
    pub(crate) fn wait_after(&mut self, outcome: RunOutcome) -> Option<Duration> {
        match outcome {
            RunOutcome::Failed => Some(self.failures.next().unwrap_or(self.period).min(self.period)),
            RunOutcome::Skipped => Some(self.timings.queue_recheck.min(self.period)),
            RunOutcome::Success | RunOutcome::UpToDate | RunOutcome::Interrupted => {
                self.failures = failure_delays(self.period, self.timings);
                None
            }
        }
    }
}

/// `after_failure`, doubling with jitter; the caller caps each at the period.
fn failure_delays(period: Duration, timings: RetryTimings) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(timings.after_failure.min(period))
        .with_max_delay(period)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn failures_back_off_up_to_the_period_and_a_success_starts_over() {
        let day = Duration::from_secs(86_400);
        let mut schedule = Schedule::new(day, RetryTimings::default());
        let waits: Vec<Duration> = (0..16).map(|_| schedule.wait_after(RunOutcome::Failed).unwrap()).collect();
        assert!(waits[0] >= MINUTE && waits[0] < 2 * MINUTE, "{waits:?}");
        assert!(waits[3] >= 8 * MINUTE, "doubling: {waits:?}");
        assert!(waits.iter().all(|w| *w <= day), "never beyond the period: {waits:?}");
        assert_eq!(*waits.last().unwrap(), day, "at most a period apart once backed off: {waits:?}");
        assert_eq!(schedule.wait_after(RunOutcome::Success), None);
        let again = schedule.wait_after(RunOutcome::Failed).unwrap();
        assert!(again < 2 * MINUTE, "a success resets the backoff: {again:?}");
    }

    #[test]
    fn a_short_period_bounds_every_wait() {
        let period = Duration::from_secs(5);
        let mut schedule = Schedule::new(period, RetryTimings::default());
        assert_eq!(schedule.wait_after(RunOutcome::Skipped), Some(period));
        assert_eq!(schedule.wait_after(RunOutcome::Failed), Some(period), "a failed run waits no longer than a period");
    }

    #[test]
    fn a_skipped_run_rechecks_the_queue_soon() {
        let mut schedule = Schedule::new(Duration::from_secs(3_600), RetryTimings::default());
        assert_eq!(schedule.wait_after(RunOutcome::Skipped), Some(MINUTE));
        assert_eq!(schedule.wait_after(RunOutcome::UpToDate), None);
        assert_eq!(schedule.wait_after(RunOutcome::Interrupted), None);
    }
}
