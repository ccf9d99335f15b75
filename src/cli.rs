//! Command-line arguments: which command to run and its flags. Settings proper come from the environment (and
//! `config.yml`); the command line only picks the job and the files it works on.

use std::path::PathBuf;

pub const USAGE: &str = "\
maltrail-connector: keeps an OpenCTI platform in sync with Maltrail's static trails

USAGE:
    maltrail-connector [run] [--config FILE]
        Run the connector: register with OpenCTI, then import Maltrail on schedule.
        Settings come from environment variables (see README), config.yml as a fallback.

    maltrail-connector export --out DIR [--trails DIR] [--jobs N] [--config FILE]
        Convert Maltrail's trails to STIX bundle files (pycti DIRECTORY_BUNDLE), no OpenCTI needed.
        --out      where bundle files are written (created if missing)
        --trails   a local trails folder (a Maltrail checkout's trails/static); default: MALTRAIL_DIRECTORY,
                   else Maltrail on GitHub as the connector reads it (MALTRAIL_REPOSITORY, MALTRAIL_REF, ...)
        --jobs     files converted at once (default: the number of CPUs)

    maltrail-connector health [--url URL] [--config FILE]
        Exit 0 when the running connector says it is healthy: GET http://127.0.0.1:<CONNECTOR_METRICS_PORT>/health
        (or URL); for container health checks (the connector needs CONNECTOR_EXPOSE_METRICS=true).

    maltrail-connector --help | --version
";

/// The job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run { config: Option<PathBuf> },
    Export { trails: Option<PathBuf>, out: PathBuf, jobs: Option<usize>, config: Option<PathBuf> },
    Health { url: Option<String>, config: Option<PathBuf> },
    Help,
    Version,
}

/// Parses the arguments after the program name. Errors are one line for the user, followed by the usage.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let command = match args.peek().map(String::as_str) {
        Some("run" | "export" | "health") => args.next(),
        _ => None,
    };
    let mut config = None;
    let mut trails = None;
    let mut out = None;
    let mut jobs = None;
    let mut url = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--trails" => trails = Some(PathBuf::from(value("--trails")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--url" => url = Some(value("--url")?),
            "--jobs" => {
                let text = value("--jobs")?;
                let n: usize = text.parse().map_err(|_| format!("--jobs: `{text}` is not a number"))?;
                if n == 0 {
                    return Err("--jobs must be at least 1".into());
                }
                jobs = Some(n);
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let export_only = trails.is_some() || out.is_some() || jobs.is_some();
    match command.as_deref() {
        Some("export") => {
            let out = out.ok_or("export needs --out DIR")?;
            if url.is_some() {
                return Err("--url belongs to the health command".into());
            }
            Ok(Command::Export { trails, out, jobs, config })
        }
        Some("health") => {
            if export_only {
                return Err("--trails, --out and --jobs belong to the export command".into());
            }
            Ok(Command::Health { url, config })
        }
        _ => {
            if export_only {
                return Err("--trails, --out and --jobs belong to the export command".into());
            }
            if url.is_some() {
                return Err("--url belongs to the health command".into());
            }
            Ok(Command::Run { config })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands() {
        assert_eq!(parse(args("")), Ok(Command::Run { config: None }));
        assert_eq!(parse(args("run --config c.yml")), Ok(Command::Run { config: Some("c.yml".into()) }));
        assert_eq!(
            parse(args("export --trails t --out o --jobs 2")),
            Ok(Command::Export { trails: Some("t".into()), out: "o".into(), jobs: Some(2), config: None })
        );
        assert_eq!(
            parse(args("export --out o")),
            Ok(Command::Export { trails: None, out: "o".into(), jobs: None, config: None })
        );
        assert_eq!(parse(args("health")), Ok(Command::Health { url: None, config: None }));
        assert_eq!(
            parse(args("health --url http://x:1/health")),
            Ok(Command::Health { url: Some("http://x:1/health".into()), config: None })
        );
        assert_eq!(parse(args("export --help")), Ok(Command::Help));
        assert_eq!(parse(args("--version")), Ok(Command::Version));
    }

    #[test]
    fn mistakes_are_explained() {
        assert_eq!(parse(args("export --trails t")), Err("export needs --out DIR".into()));
        assert_eq!(parse(args("export --out")), Err("--out needs a value".into()));
        assert_eq!(parse(args("export --out o --jobs 0")), Err("--jobs must be at least 1".into()));
        assert_eq!(parse(args("export --out o --jobs x")), Err("--jobs: `x` is not a number".into()));
        assert_eq!(parse(args("--out o")), Err("--trails, --out and --jobs belong to the export command".into()));
        assert_eq!(
            parse(args("health --out o")),
            Err("--trails, --out and --jobs belong to the export command".into())
        );
        assert_eq!(parse(args("--url u")), Err("--url belongs to the health command".into()));
        assert_eq!(parse(args("frobnicate")), Err("unexpected argument `frobnicate`".into()));
    }
}
