//! Command-line arguments: which command to run and its flags. Configuration proper comes from the environment
//! (and `config.yml`); the command line only picks the job and the files it works on.

use std::path::PathBuf;

pub const USAGE: &str = "\
maltrail-connector: keeps an OpenCTI platform in sync with Maltrail's static trails

USAGE:
    maltrail-connector [run] [--config FILE]
        Run the connector: register with OpenCTI, then import Maltrail on schedule.
        Settings come from environment variables (see README), config.yml as a fallback.

    maltrail-connector export --trails DIR --out DIR [--jobs N] [--config FILE]
        Convert trail files to STIX bundle files (pycti DIRECTORY_BUNDLE), no OpenCTI needed.
        --trails   the trails folder (e.g. a Maltrail checkout's trails/static); default: MALTRAIL_DIRECTORY
        --out      where bundle files are written (created if missing)
        --jobs     worker threads (default: the number of CPUs)

    maltrail-connector --help | --version
";

/// The job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run { config: Option<PathBuf> },
    Export { trails: Option<PathBuf>, out: PathBuf, jobs: Option<usize>, config: Option<PathBuf> },
    Help,
    Version,
}

/// Parses the arguments after the program name. Errors are one line for the user, followed by the usage.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let command = match args.peek().map(String::as_str) {
        Some("run") | Some("export") => args.next(),
        _ => None,
    };
    let mut config = None;
    let mut trails = None;
    let mut out = None;
    let mut jobs = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--trails" => trails = Some(PathBuf::from(value("--trails")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
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
    match command.as_deref() {
        Some("export") => {
            let out = out.ok_or("export needs --out DIR")?;
            Ok(Command::Export { trails, out, jobs, config })
        }
        _ => {
            if trails.is_some() || out.is_some() || jobs.is_some() {
                return Err("--trails, --out and --jobs belong to the export command".into());
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
        assert_eq!(parse(args("frobnicate")), Err("unexpected argument `frobnicate`".into()));
    }
}
