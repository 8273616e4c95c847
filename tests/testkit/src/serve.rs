//! A spawned server process (`integrations serve`, a sidecar's `serve`)
//! that prints `listening on <base>` on stdout: its base URL and its
//! stderr, kept for the log checks.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Spawns `cmd` (killed on drop) and waits for the address it is listening
/// on; its stderr is collected into the returned log.
pub async fn spawn(
    cmd: &mut tokio::process::Command,
) -> (tokio::process::Child, String, Arc<Mutex<String>>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line))
        .await
        .expect("the server starts")
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_string();
    let log = collect(child.stderr.take().unwrap());
    (child, base, log)
}

/// Collects a child's stderr into the returned log.
pub fn collect(
    mut stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    log
}

/// A serving process, killed on drop: its base URL and its stderr, kept for
/// the log checks.
pub struct Server {
    /// The process.
    pub child: tokio::process::Child,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Spawns `cmd` and waits for the address it is listening on.
    pub async fn spawn(cmd: &mut tokio::process::Command) -> Self {
        let (child, base, log) = spawn(cmd).await;
        Self { child, base, log }
    }

    /// Starts `program` with `args` and only `envs` (and `RUST_LOG=debug`).
    pub async fn start(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "debug")
            .envs(envs.iter().copied());
        Self::spawn(&mut cmd).await
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}
