//! Serving a connector whose runs are spread over replicas (`CONNECTOR_ROLE`): a process that plans competes for
//! the leadership and, while it leads, pings the state and runs the schedule, each run publishing jobs; a process
//! that works takes jobs and does them. `all` does both in one process; any number of replicas of either role may
//! run, and they share the jobs and hand the leadership over through the broker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::jobs::{FAILED_JOB_PAUSE, Job, JobLink, JobsError, Outcomes, QueueNames, Tally};
use crate::leadership::Candidate;
use crate::metrics;
use crate::runtime::{BoxError, Job as RunJob, RunContext, Runtime, RuntimeError};
use crate::send::{Expectations, SendError, Sender, SplitSettings};
use crate::work::Work;

/// What a connector does with a job it takes.
pub trait Worker: Send + Sync {
    /// Does `job`; returns a report of what it sent (JSON, read by the leader for the run's summary). An error
    /// hands the job back to be tried again (and parked after too many failures).
    fn work(
        &self,
        job: &Job,
        context: &WorkContext<'_>,
    ) -> impl Future<Output = Result<serde_json::Value, BoxError>> + Send;
}

/// What a job works with.
pub struct WorkContext<'r> {
    runtime: &'r Runtime,
    work: Work,
}

impl<'r> WorkContext<'r> {
    pub fn runtime(&self) -> &'r Runtime {
        self.runtime
    }

    /// The work the job's messages count towards (opened by the leader).
    pub fn work(&self) -> &Work {
        &self.work
    }

    /// A sender for the job's messages, split as `split` says (the leader's way, which it counted); their
    /// expectations were announced by the leader when it published the job. `None` on shutdown.
    pub async fn sender(&self, split: SplitSettings) -> Result<Option<Sender>, SendError> {
        self.runtime.sender_with(&self.work, Expectations::AnnouncedElsewhere, split).await
    }
}

/// A run's jobs, as its leader publishes and follows them. A lost broker connection is reopened (for up to
/// [`JOB_LINK_OUTAGE`]); outcomes read and not yet acknowledged are delivered again on the new one, and counted once.
pub struct JobRun {
    endpoint: crate::send::AmqpEndpoint,
    names: QueueNames,
    name: String,
    link: Option<(JobLink, Outcomes)>,
    run_id: String,
    work: Work,
    tally: Tally,
}

/// How long the broker may stay unreachable before a leader gives its run up.
pub const JOB_LINK_OUTAGE: Duration = Duration::from_secs(300);

impl std::fmt::Debug for JobRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRun").field("run_id", &self.run_id).field("work_id", &self.work.id()).finish()
    }
}

/// Why a job run stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobRunError {
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("cannot announce a job's expectations: {0}")]
    Expectations(#[from] crate::opencti::OpenCtiError),
    #[error("stopped by shutdown while waiting for the run's jobs")]
    Interrupted,
}

impl JobRun {
    /// The link, opened again when it was lost; retries with backoff for up to [`JOB_LINK_OUTAGE`].
    async fn link(&mut self) -> Result<&mut (JobLink, Outcomes), JobsError> {
        if self.link.as_ref().is_some_and(|(link, _)| link.is_connected()) {
            return Ok(self.link.as_mut().expect("checked just above"));
        }
        if let Some((link, mut outcomes)) = self.link.take() {
            outcomes.forget();
            link.close().await;
            tracing::warn!(run = %self.run_id, "the job queues' connection was lost: reconnecting");
        }
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(500);
        loop {
            let opened = async {
                let link = JobLink::open(&self.endpoint, self.names.clone(), &self.name).await?;
                let outcomes = link.outcomes().await?;
                Ok::<_, JobsError>((link, outcomes))
            };
            match opened.await {
                Ok(opened) => return Ok(self.link.insert(opened)),
                Err(error) if started.elapsed() < JOB_LINK_OUTAGE => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot reach the job queues: retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(15));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Announces `expectations` on the work, then publishes the job: the platform never sees a message before the
    /// expectation it counts towards.
    pub async fn submit(
        &mut self,
        job_id: u64,
        label: &str,
        expectations: u64,
        payload: Vec<u8>,
    ) -> Result<(), JobRunError> {
        if expectations > 0 {
            self.work.add_expectations(expectations).await?;
        }
        self.publish(job_id, label, payload).await
    }

    /// Publishes a job whose expectations were announced before (by a leader that died after announcing it).
    pub async fn publish(&mut self, job_id: u64, label: &str, payload: Vec<u8>) -> Result<(), JobRunError> {
        let job = Job {
            run_id: self.run_id.clone(),
            work_id: self.work.id().to_owned(),
            job_id,
            label: label.to_owned(),
            payload,
        };
        let started = std::time::Instant::now();
        loop {
            let (link, _) = self.link().await?;
            match link.publish_job(&job).await {
                Ok(()) => return Ok(()),
                // Lost with the connection: published again on the next one (a job done twice is harmless).
                Err(error) if started.elapsed() < JOB_LINK_OUTAGE => {
                    tracing::warn!(%error, job = job_id, "publishing a job failed: retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Waits until every job of `0..total` is done or parked. `progress` is called after each event counted.
    pub async fn wait(
        &mut self,
        total: u64,
        shutdown: &crate::Shutdown,
        mut progress: impl FnMut(&Tally),
    ) -> Result<&Tally, JobRunError> {
        while !self.tally.complete(total) {
            let (_, outcomes) = self.link().await?;
            let event = tokio::select! {
                event = outcomes.next() => event,
                () = shutdown.triggered() => return Err(JobRunError::Interrupted),
            };
            match event {
                Ok(event) => {
                    if self.tally.count(&self.run_id, &event) {
                        progress(&self.tally);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the jobs' outcomes failed: reconnecting");
                    if let Some((link, mut outcomes)) = self.link.take() {
                        outcomes.forget();
                        link.close().await;
                    }
                }
            }
        }
        Ok(&self.tally)
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Ends the run's use of the queues: the outcomes read are acknowledged (they are counted), the connection
    /// closed.
    pub async fn close(mut self) {
        if let Some((link, mut outcomes)) = self.link.take() {
            outcomes.settle().await;
            link.close().await;
        }
    }

    /// Drops the connection without acknowledging what was read: a run abandoned (shutdown, lost leadership) leaves
    /// its outcomes to the leader that carries it on.
    pub async fn abandon(mut self) {
        if let Some((link, _)) = self.link.take() {
            link.close().await;
        }
    }
}

impl RunContext<'_> {
    /// Opens the job queues for run `run_id` (a new one, or one carried on) of `work`.
    pub async fn job_run(&self, run_id: &str, work: &Work) -> Result<JobRun, JobsError> {
        let runtime = self.runtime();
        let mut run = JobRun {
            endpoint: runtime.amqp_endpoint(),
            names: runtime.queue_names(),
            name: format!("{} leader {}", runtime.about().slug, runtime.connector_id()),
            link: None,
            run_id: run_id.to_owned(),
            work: work.clone(),
            tally: Tally::default(),
        };
        run.link().await?;
        Ok(run)
    }
}

impl Runtime {
    /// The names of this connector's job queues.
    pub fn queue_names(&self) -> QueueNames {
        QueueNames::new(self.about().slug, &self.connector_id())
    }

    /// Serves `connector` in the role the settings give: competes for the leadership and runs the schedule while
    /// leading (`all`, `scheduler`), takes jobs (`all`, `worker`). Returns on shutdown, or after the one run of
    /// run-and-terminate.
    pub async fn serve<C: RunJob + Worker + 'static>(&self, connector: Arc<C>) -> Result<(), RuntimeError> {
        let role = self.settings().connector.role;
        tracing::info!(role = role.as_str(), "serving");
        let workers = role.works().then(|| {
            let (runtime, connector) = (self.clone(), connector.clone());
            self.shutdown().spawn(async move { runtime.work_loop(&*connector).await })
        });
        let result = if role.plans() {
            let result = self.lead(&*connector).await;
            // One run done (run-and-terminate): the process's own workers stop too.
            self.shutdown().trigger();
            result
        } else {
            self.shutdown().triggered().await;
            Ok(())
        };
        if let Some(workers) = workers {
            let _ = workers.await;
        }
        result
    }

    /// Competes for the leadership; while leading, pings and runs the schedule. A lost leadership stops planning
    /// at once (the run in flight is left to the next leader) and the process competes again.
    async fn lead<C: RunJob>(&self, connector: &C) -> Result<(), RuntimeError> {
        let names = self.queue_names();
        let name = format!("{} candidate {} {}", self.about().slug, self.connector_id(), uuid::Uuid::new_v4());
        let mut pause = Duration::from_secs(1);
        loop {
            let endpoint = self.amqp_endpoint();
            let joined = tokio::select! {
                joined = Candidate::join(&endpoint, &names.leader, &name) => joined,
                () = self.shutdown().triggered() => return Ok(()),
            };
            let candidate = match joined {
                Ok(candidate) => candidate,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot join the leadership's candidates: retrying");
                    if !self.shutdown().sleep(pause).await {
                        return Ok(());
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            pause = Duration::from_secs(1);
            tracing::info!(queue = %names.leader, "waiting for the leadership");
            let acquired = tokio::select! {
                lease = candidate.acquire() => lease,
                () = self.shutdown().triggered() => return Ok(()),
            };
            let mut lease = match acquired {
                Ok(lease) => lease,
                Err(error) => {
                    tracing::warn!(%error, "the leadership's queue went away: competing again");
                    continue;
                }
            };
            tracing::info!("leading: this process plans the runs and pings the state");
            // Another replica may have led meanwhile: start from the platform's state.
            self.refresh_state().await;
            let pings = self.start_pinging().await;
            let result = tokio::select! {
                result = self.schedule(connector) => Some(result),
                () = lease.lost() => None,
            };
            pings.cancel();
            match result {
                Some(result) => {
                    self.final_ping().await;
                    lease.release().await;
                    return result;
                }
                None => tracing::warn!("leadership lost: this process stops planning; another replica carries on"),
            }
        }
    }

    /// Takes jobs and does them, one at a time, until shutdown; reconnects when the broker goes away.
    async fn work_loop<W: Worker>(&self, worker: &W) {
        let names = self.queue_names();
        let name = format!("{} worker {} {}", self.about().slug, self.connector_id(), uuid::Uuid::new_v4());
        let mut pause = Duration::from_secs(1);
        while !self.shutdown().is_triggered() {
            let endpoint = self.amqp_endpoint();
            let opened = tokio::select! {
                link = JobLink::open(&endpoint, names.clone(), &name) => link,
                () = self.shutdown().triggered() => return,
            };
            let link = match opened {
                Ok(link) => link,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot reach the job queues: retrying");
                    if !self.shutdown().sleep(pause).await {
                        return;
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            pause = Duration::from_secs(1);
            if let Err(error) = self.take_jobs(worker, &link).await {
                tracing::warn!(%error, "the job queues' connection was lost: reconnecting");
            }
            link.close().await;
        }
    }

    /// Takes jobs on `link` until shutdown (`Ok`) or a broker error.
    async fn take_jobs<W: Worker>(&self, worker: &W, link: &JobLink) -> Result<(), JobsError> {
        let mut jobs = link.jobs(1).await?;
        loop {
            metrics::global().alive();
            let delivery = tokio::select! {
                delivery = jobs.next() => delivery?,
                () = self.shutdown().triggered() => return Ok(()),
                // Idle: still alive.
                () = tokio::time::sleep(Duration::from_secs(60)) => continue,
            };
            let job = &delivery.job;
            let span = tracing::info_span!("job", work_id = %job.work_id, run = %job.run_id, job = job.job_id, label = %job.label);
            let context = WorkContext { runtime: self, work: self.work_of(&job.work_id) };
            span.in_scope(|| tracing::info!(previous_deliveries = delivery.previous_deliveries, "job started"));
            let result = worker.work(job, &context).instrument(span.clone()).await;
            let _entered = span.enter();
            match result {
                Ok(report) => {
                    tracing::info!("job done");
                    delivery.done(link, report).await?;
                }
                Err(error) if self.shutdown().is_triggered() => {
                    tracing::info!(%error, "job interrupted by shutdown: handed back for another worker");
                    delivery.failed(link, "interrupted by shutdown").await?;
                    return Ok(());
                }
                Err(error) => {
                    let reason = crate::error_chain::error_chain(&*error);
                    tracing::warn!(
                        reason,
                        previous_deliveries = delivery.previous_deliveries,
                        "job failed: handed back to be tried again"
                    );
                    self.shutdown().sleep(FAILED_JOB_PAUSE).await;
                    delivery.failed(link, &reason).await?;
                }
            }
        }
    }
}
