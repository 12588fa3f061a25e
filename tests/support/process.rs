//! The gateway as a separate process (the real binary), for what only a process can show: a
//! `kill -9`, environment overrides, everything it logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::poll::eventually;

/// A temporary folder holding `config.toml` with `text`: where a test's processes keep their
/// config and logs.
pub fn config_dir(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).expect("config written");
    (dir, config)
}

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
        let mut process = Self::spawn("serve", dir, config, env, log_level);
        let port = process
            .wait_for_line("[serve] listening on", |line| {
                line.rsplit_once("(port ")?
                    .1
                    .trim_end_matches(')')
                    .parse::<u16>()
                    .ok()
            })
            .await;
        process.address = format!("http://127.0.0.1:{port}");
        process
    }

    /// Runs `imchannel sandbox --config <config>` and waits until its stand-ins listen.
    pub async fn sandbox(dir: &Path, config: &Path, env: &[(&str, String)]) -> Self {
        let mut process = Self::spawn("sandbox", dir, config, env, "info");
        process
            .wait_for_line("[sandbox] listening on", |_| Some(()))
            .await;
        process
    }

    /// Runs `imchannel serve` to its end (for a start that must fail); its exit success and log.
    pub fn run_to_end(dir: &Path, config: &Path, env: &[(&str, String)]) -> (bool, String) {
        let mut process = Self::spawn("serve", dir, config, env, "info");
        let status = process.child.wait().expect("the gateway exits");
        (status.success(), process.log())
    }

    fn spawn(
        subcommand: &str,
        dir: &Path,
        config: &Path,
        env: &[(&str, String)],
        log_level: &str,
    ) -> Self {
        // The log file is named by the child's pid, known only once it runs: `sh` redirects, then
        // `exec` keeps the pid for the gateway.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"exec "$0" "$1" --config "$2" >"$3/imchannel-$$.log" 2>&1"#)
            .arg(env!("CARGO_BIN_EXE_imchannel"))
            .arg(subcommand)
            .arg(config)
            .arg(dir)
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("the imchannel binary starts");
        let log = dir.join(format!("imchannel-{}.log", child.id()));
        Self {
            child,
            log,
            address: String::new(),
        }
    }

    /// Waits for a log line containing `marker` from which `read` takes a value.
    async fn wait_for_line<T>(&mut self, marker: &str, read: impl Fn(&str) -> Option<T>) -> T {
        let (child, log) = (&mut self.child, &self.log);
        eventually(marker, Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "imchannel exited with {status}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(log).ok()?;
            text.lines()
                .filter(|line| line.contains(marker))
                .find_map(&read)
        })
        .await
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
