//! A real `redis-server` per test, on a free loopback port, stopped when dropped. Installs
//! `redis-server` (apt) the first time it is missing.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running redis-server owned by one test.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a fresh, empty server without persistence.
    pub async fn start() -> Self {
        ensure_installed();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let until = Instant::now() + Duration::from_secs(10);
            let mut tick = actix_web::rt::time::interval(Duration::from_millis(10));
            while Instant::now() < until {
                tick.tick().await;
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("redis-server on port {port} exited with {status}");
                    break;
                }
                if ping(port) {
                    return Self { child, port };
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A synchronous connection, for a test to look at what the gateway stored.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to the test redis-server")
    }

    /// How many entries the gateways' journals (own and adopted) hold, all together.
    pub fn journal_len(&self) -> usize {
        let mut connection = self.connection();
        let journals: Vec<String> = redis::cmd("KEYS")
            .arg("imch:*journal*")
            .query(&mut connection)
            .unwrap_or_default();
        let adopted: Vec<String> = redis::cmd("KEYS")
            .arg("imch:adopted:*")
            .query(&mut connection)
            .unwrap_or_default();
        journals
            .iter()
            .chain(&adopted)
            .map(|key| {
                redis::cmd("XLEN")
                    .arg(key)
                    .query::<usize>(&mut connection)
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Stops the server now (to test what the gateway does without it).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs redis-server with apt when missing, once per machine (a file lock keeps the test
/// binaries from installing at the same time).
fn ensure_installed() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if installed() {
            return;
        }
        let lock = File::create(std::env::temp_dir().join("imchannel-redis-install.lock"))
            .expect("lock file");
        lock.lock().expect("install lock");
        if !installed() {
            let apt = |args: &[&str]| {
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            };
            if !apt(&["install", "-y", "redis-server"]) {
                apt(&["update"]);
                apt(&["install", "-y", "redis-server"]);
            }
        }
        assert!(
            installed(),
            "redis-server is missing and `apt-get install -y redis-server` did not install it"
        );
    });
}
