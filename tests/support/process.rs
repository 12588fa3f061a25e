//! The gateway as a separate process (the real binary), for what only a process can show: a
//! `kill -9`, environment overrides, everything it logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::poll::eventually;

/// A running `imchannel serve`, its log captured to a file.
pub struct GatewayProcess {
    child: Child,
    log: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

impl GatewayProcess {
    /// Runs `imchannel serve --config <config>` with `env` and `RUST_LOG=<log_level>`, and waits
    /// until it listens.
    pub async fn start(dir: &Path, config: &Path, env: &[(&str, String)], log_level: &str) -> Self {
        let mut child = Self::command(dir, config, env, log_level)
            .spawn()
            .expect("the gateway binary starts");
        let log = dir.join(format!("gateway-{}.log", child.id()));
        let port = eventually("the gateway to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the gateway exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&log).ok()?;
            let line = text
                .lines()
                .find(|line| line.contains("[serve] listening on"))?;
            line.rsplit_once("(port ")?
                .1
                .trim_end_matches(')')
                .parse::<u16>()
                .ok()
        })
        .await;
        Self {
            child,
            log,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs the binary to its end (for a start that must fail); its exit success and log.
    pub fn run_to_end(dir: &Path, config: &Path, env: &[(&str, String)]) -> (bool, String) {
        let mut child = Self::command(dir, config, env, "info")
            .spawn()
            .expect("the gateway binary starts");
        let log = dir.join(format!("gateway-{}.log", child.id()));
        let status = child.wait().expect("the gateway exits");
        (
            status.success(),
            std::fs::read_to_string(log).unwrap_or_default(),
        )
    }

    fn command(dir: &Path, config: &Path, env: &[(&str, String)], log_level: &str) -> Command {
        // The log file is named by the child's pid, known only once it runs: `sh` redirects, then
        // `exec` keeps the pid for the gateway.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"exec "$0" serve --config "$1" 2>"$2/gateway-$$.log""#)
            .arg(env!("CARGO_BIN_EXE_imchannel"))
            .arg(config)
            .arg(dir)
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful stop, nothing flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
