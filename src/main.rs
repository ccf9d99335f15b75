//! Entry point: parses the command line, loads the configuration, and hands over to the export or the connector.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use maltrail_connector::cli::{self, Command};
use maltrail_connector::config;
use maltrail_connector::convert::Converter;
use maltrail_connector::directory_output::{ConnectorIdentity, DirectoryOutput};
use maltrail_connector::export::{ExportOptions, export};
use maltrail_connector::logging;
use maltrail_connector::service;
use maltrail_connector::shutdown::Shutdown;
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The connector service. The configuration is checked in full before anything touches the network.
fn run_connector(config_file: Option<&Path>) -> anyhow::Result<()> {
    let config = config::from_process(config_file)?.connector()?;
    logging::init(config.connector.log_level.as_str(), config.opencti.json_logging);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        connector_id = %config.connector.id,
        source = config.maltrail.directory.as_ref().map_or_else(|| format!("github:{}@{}", config.maltrail.repository, config.maltrail.git_ref), |d| format!("dir:{}", d.display())),
        "starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        service::run(config, shutdown).await
    })
}

fn run_export(
    trails: Option<PathBuf>,
    out: PathBuf,
    jobs: Option<usize>,
    config_file: Option<&Path>,
) -> anyhow::Result<()> {
    let settings = config::from_process(config_file)?;
    logging::init(settings.log_level()?.as_str(), settings.json_logging()?);
    let maltrail = settings.maltrail()?;
    let trails = trails
        .or(maltrail.directory)
        .ok_or_else(|| anyhow::anyhow!("export needs --trails DIR (or MALTRAIL_DIRECTORY)"))?;
    let converter = Converter::new(settings.convert_options()?);
    let identity = ConnectorIdentity {
        id: std::env::var("CONNECTOR_ID").unwrap_or_else(|_| uuid::Uuid::nil().to_string()),
        name: std::env::var("CONNECTOR_NAME").unwrap_or_else(|_| "Maltrail".into()),
        connector_type: config::CONNECTOR_TYPE.into(),
        scope: "maltrail".into(),
        auto: false,
        validate_before_import: false,
    };
    let output = DirectoryOutput::new(&out, 0, &identity, None)
        .map_err(|e| anyhow::anyhow!("cannot use {} as the output directory: {e}", out.display()))?;
    let options = ExportOptions {
        trails_dir: trails,
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        progress: true,
        now: Timestamp::now(),
    };
    let started = std::time::Instant::now();
    let stats = export(&converter, &output, &options)?;
    println!("{stats}");
    println!("written to {} in {:.1} s", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}
