//! A real SMTP server on loopback, not one written here: Python's
//! `aiosmtpd`, configured by `server.py` (STARTTLS, TLS from the first
//! byte, or neither; AUTH with one login; scripted replies to DATA), with a
//! certificate from a [`TestPki`] CA. What it accepted is read back as
//! Python's `email` package parses it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use serde_json::Value;

use crate::tls::TestPki;

/// The server's script, written next to its mailbox at start.
const SCRIPT: &str = include_str!("server.py");

/// How a server is started.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// `starttls`, `tls` or `none` (no STARTTLS offered).
    pub security: &'static str,
    pub username: String,
    pub password: String,
    /// Replies to DATA, in order, then 250: `451`, `554`, `drop` (taken,
    /// then the connection closed before the answer).
    pub replies: Vec<&'static str>,
}

impl SmtpOptions {
    /// STARTTLS, login `alerts@example.com` with `app-password`, every
    /// message taken.
    pub fn starttls() -> Self {
        Self {
            security: "starttls",
            username: "alerts@example.com".into(),
            password: "app-password".into(),
            replies: Vec::new(),
        }
    }
}

/// A running server; killed when dropped.
pub struct SmtpServer {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The CA its certificate is signed by (for `SMTP_CA_PATH`).
    pub ca: PathBuf,
    mailbox: PathBuf,
}

impl SmtpServer {
    /// Starts a server under `dir` (its certificates, script and mailbox),
    /// its certificate signed by a fresh CA.
    pub fn start(dir: &Path, options: &SmtpOptions) -> anyhow::Result<Self> {
        let pki = TestPki::generate(dir)?;
        Self::start_with(dir, options, &pki)
    }

    /// Starts a server under `dir` whose certificate `pki`'s CA signed.
    pub fn start_with(dir: &Path, options: &SmtpOptions, pki: &TestPki) -> anyhow::Result<Self> {
        let (cert, key) = pki.write_server_pair(dir)?;
        let mailbox = dir.join("mailbox");
        std::fs::create_dir_all(&mailbox)?;
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SCRIPT)?;
        let password_file = dir.join("smtp-password");
        std::fs::write(&password_file, &options.password)?;
        let mut child = Command::new("python3")
            .env(
                "PYTHONPATH",
                crate::python::package("aiosmtpd", "aiosmtpd")?,
            )
            .arg(&script)
            .args(["--security", options.security])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--username", &options.username])
            .arg("--password-file")
            .arg(&password_file)
            .arg("--mailbox")
            .arg(&mailbox)
            .args(["--replies", &options.replies.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("python3 is needed for the SMTP server")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .with_context(|| {
                let _ = child.kill();
                "the SMTP server did not start (its stderr says why)"
            })?;
        Ok(Self {
            child,
            port,
            ca: pki.ca.clone(),
            mailbox,
        })
    }

    /// The messages it accepted, in order, each as Python's `email` package
    /// parsed it: `mail_from`, `rcpt_tos`, `content_type`, `headers`
    /// (lower-cased names, decoded values) and `parts` (`type`, `content`).
    pub fn messages(&self) -> Vec<Value> {
        (1..)
            .map(|n| self.mailbox.join(format!("{n}.json")))
            .take_while(|path| path.exists())
            .filter_map(|path| serde_json::from_slice(&std::fs::read(path).ok()?).ok())
            .collect()
    }

    /// What happened, in order: `{"event": "auth", "ok", "tls",
    /// "mechanism"}` and `{"event": "data", "reply"}`.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.mailbox.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
