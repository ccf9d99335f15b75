//! A minimal external-import connector: each run sends one bundle (a TLP marking, an author and an indicator) and
//! records when it ran. Run it with `OPENCTI_URL`, `OPENCTI_TOKEN` and `CONNECTOR_ID` set.
use std::time::Duration;

use opencti_connector::send::Expectations;
use opencti_connector::settings::{ConnectorDefaults, PLATFORM_SECTIONS, Settings, Vars};
use opencti_connector::{About, BoxError, Job, RunContext, RunOutcome, Runtime, Shutdown, StateDocument, logging};
use proto_stix::{Common, Identity, Indicator, StixObject, Timestamp, Tlp, id};

struct Example;

impl Job for Example {
    async fn run(&self, run: &RunContext<'_>) -> Result<RunOutcome, BoxError> {
        let (runtime, now) = (run.runtime(), run.started());
        let work = runtime.open_work("Example import").await?;
        run.label(Some(work.id()), None);
        let Some(mut sender) = runtime.sender(&work, Expectations::Announce(work.clone())).await? else {
            return Ok(RunOutcome::Interrupted); // shutdown while connecting to the broker
        };
        let author = Identity {
            common: Common::new(id::identity_id("Example", "organization"), now, now),
            name: "Example".into(),
            description: None,
            identity_class: "organization".into(),
        };
        let pattern = "[domain-name:value = 'example.com']";
        let mut common = Common::new(id::indicator_id(pattern), now, now);
        common.created_by_ref = Some(author.common.id);
        let indicator = Indicator {
            common,
            name: "example.com".into(),
            description: None,
            indicator_types: Default::default(),
            pattern: pattern.into(),
            pattern_type: "stix".into(),
            valid_from: now,
            valid_until: None,
            x_opencti_score: Some(50),
            x_opencti_main_observable_type: Some("Domain-Name".into()),
            x_opencti_detection: Some(true),
            x_opencti_create_observables: None,
        };
        let mut bundle = sender.bundle("example")?;
        bundle.header(&StixObject::MarkingDefinition(Tlp::Clear.marking_definition()))?;
        bundle.header(&StixObject::Identity(author))?;
        bundle.group(vec![StixObject::Indicator(indicator)])?;
        sender.close(bundle).await?;
        sender.confirm_all().await?; // nothing counts as sent before RabbitMQ confirms it
        opencti_connector::close(sender).await;
        let mut state = StateDocument::new();
        state.insert("last_run".into(), now.to_seconds_string().into());
        run.commit_state(state).await;
        work.finish("1 bundle sent", false).await;
        Ok(RunOutcome::Success)
    }

    fn last_run(&self, state: &StateDocument) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(state.get("last_run")?.as_str()?).ok()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let defaults =
        ConnectorDefaults { name: "Example", scope: &["example"], duration_period: Duration::from_secs(3600) };
    let settings = Settings::read(&Vars::from_process(None, &PLATFORM_SECTIONS)?, &defaults)?;
    logging::init(settings.connector.log_level.as_str(), settings.opencti.json_logging, &["minimal"]);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let about = About { slug: "example", version: env!("CARGO_PKG_VERSION") };
    let Some(runtime) = Runtime::start(settings, about, shutdown).await? else { return Ok(()) };
    let result = runtime.run_scheduled(&Example).await;
    runtime.stop().await;
    Ok(result?)
}
