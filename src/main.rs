//! Entry point: parses the command line, loads the settings, and hands over to the connector, the export or the
//! health check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use maltrail_connector::cli::{self, Command};
use maltrail_connector::convert::Converter;
use maltrail_connector::export::{ExportOptions, export};
use maltrail_connector::settings::{self, Config, MaltrailSettings, SECTIONS};
use maltrail_connector::source::Source;
use maltrail_connector::source::directory::DirectorySource;
use opencti_connector::send::{ConnectorIdentity, DirectoryOutput};
use opencti_connector::settings::{ConnectorSettings, OpenCtiSettings, Vars};
use opencti_connector::{Shutdown, Timings, logging};
use proto_stix::Timestamp;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("maltrail-connector {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Export { trails, out, jobs, config } => run_export(trails, out, jobs, config.as_deref()),
        Command::Run { config } => run_connector(config.as_deref()),
        Command::Health { url, config } => health(url, config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// The connector. The settings are checked in full before anything touches the network.
fn run_connector(config_file: Option<&Path>) -> anyhow::Result<()> {
    let vars = Vars::from_process(config_file, &SECTIONS)?;
    let config = Config::read(&vars)?;
    let connector = &config.platform.connector;
    logging::init(connector.log_level.as_str(), config.platform.opencti.json_logging, &["maltrail-connector"]);
    let source = match &config.maltrail.directory {
        Some(directory) => format!("dir:{}", directory.display()),
        None => format!("github:{}@{}", config.maltrail.repository, config.maltrail.git_ref),
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), connector_id = %connector.id, source, "starting");
    tokio_runtime()?.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        maltrail_connector::connector::serve(config, shutdown, Timings::default()).await
    })
}

fn run_export(
    trails: Option<PathBuf>,
    out: PathBuf,
    jobs: Option<usize>,
    config_file: Option<&Path>,
) -> anyhow::Result<()> {
    let vars = Vars::from_process(config_file, &SECTIONS)?;
    logging::init(
        ConnectorSettings::log_level(&vars)?.as_str(),
        OpenCtiSettings::json_logging(&vars)?,
        &["maltrail-connector"],
    );
    let maltrail = MaltrailSettings::read(&vars)?;
    let converter = Arc::new(Converter::new(settings::convert_options(&vars, &maltrail)?));
    let source = match trails.or_else(|| maltrail.directory.clone()) {
        Some(directory) => Source::Directory(DirectorySource::new(directory)),
        None => Source::from_settings(&maltrail).context("cannot set up the GitHub source")?,
    };
    let identity = ConnectorIdentity {
        id: std::env::var("CONNECTOR_ID").unwrap_or_else(|_| uuid::Uuid::nil().to_string()),
        name: std::env::var("CONNECTOR_NAME").unwrap_or_else(|_| settings::DEFAULTS.name.into()),
        connector_type: "EXTERNAL_IMPORT".into(),
        scope: settings::DEFAULTS.scope.join(","),
        auto: false,
        validate_before_import: false,
    };
    let output = DirectoryOutput::new(&out, 0, &identity, None)
        .map_err(|e| anyhow::anyhow!("cannot use {} as the output directory: {e}", out.display()))?;
    let options = ExportOptions {
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        progress: true,
        now: Timestamp::now(),
    };
    let started = Instant::now();
    let report = tokio_runtime()?.block_on(export(&source, converter, Arc::new(output), &options))?;
    println!("{report}");
    println!("read {} and wrote to {} in {:.1} s", source.describe(), out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Asks the running connector's `/health`: exit 0 when it answers 200.
fn health(url: Option<String>, config_file: Option<&Path>) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let vars = Vars::from_process(config_file, &SECTIONS)?;
            let port = ConnectorSettings::metrics_port(&vars)?;
            format!("http://127.0.0.1:{port}/health")
        }
    };
    tokio_runtime()?.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
        let answer = client.get(&url).send().await.with_context(|| format!("no answer from {url}"))?;
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "{url} answered {status}: {}", body.trim());
        println!("{}", body.trim());
        Ok(())
    })
}
