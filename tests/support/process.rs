//! The connector's binary as a process: started with exactly the environment a test gives it, its stderr kept,
//! stopped with SIGTERM or SIGKILL, and killed when dropped (a failing test leaves no process behind).

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary, running with exactly the environment it was given (plus `PATH` and `HOME`) in an empty working
/// directory (no stray `config.yml`), its stderr in a file. Killed when dropped.
pub struct Connector {
    pub child: Child,
    stderr: std::path::PathBuf,
    _dir: TempDir,
}

impl Connector {
    pub fn start(env: &[(&str, String)]) -> Connector {
        Self::start_with(env, &["run"])
    }

    /// Starts the binary with `args`.
    pub fn start_with(env: &[(&str, String)], args: &[&str]) -> Connector {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_maltrail-connector"))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start the connector binary");
        Connector { child, stderr, _dir: dir }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the process to exit; panics with its stderr after `timeout`.
    pub async fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the connector") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the connector still runs after {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGKILL: the process dies at once, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the stderr holds `needle`; panics with it after `timeout`, or when the process ends first.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < deadline, "no `{needle}` after {timeout:?}; stderr:\n{}", self.stderr());
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the connector ended ({status}) before `{needle}`; stderr:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM unless the process has ended already.
    pub fn terminate_if_running(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
    }

    /// Sends SIGTERM, as `docker stop` does.
    pub fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
