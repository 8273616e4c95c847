//! Python packages the tests run (aiosmtpd, the SMTP server; the Standard
//! Webhooks library, an independent check of our signatures): used as
//! python3 has them, else fetched from PyPI into the system's temporary
//! directory on first use, so that `cargo test` needs only python3 with pip.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// The directories already looked up, by module.
static FETCHED: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);

/// A directory to put on `PYTHONPATH` so that python3 imports `module`
/// (empty when python3 has it already), installing the PyPI package `pip`
/// there when it does not.
pub fn package(module: &str, pip: &str) -> anyhow::Result<PathBuf> {
    let mut fetched = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    let fetched = fetched.get_or_insert_with(HashMap::new);
    let found = fetched
        .entry(module.to_string())
        .or_insert_with(|| fetch(module, pip));
    found.clone().map_err(anyhow::Error::msg)
}

fn fetch(module: &str, pip: &str) -> Result<PathBuf, String> {
    let has = |path: &Path| {
        Command::new("python3")
            .env("PYTHONPATH", path)
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let dir = std::env::temp_dir().join(format!("integrations-tests-{pip}"));
    if has(&dir) {
        return Ok(dir);
    }
    let installed = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&dir)
        .arg(pip)
        .status();
    match installed {
        Ok(status) if status.success() && has(&dir) => Ok(dir),
        _ => Err(format!(
            "these tests need python3 with pip (or with {pip} installed): `python3 -m pip install {pip}`"
        )),
    }
}

/// Runs `python3 <script>` with `input` on its stdin (and `pythonpath`, if
/// given, on `PYTHONPATH`): what it printed and how it ended, once it has.
pub fn run(script: &Path, pythonpath: Option<&Path>, input: &[u8]) -> std::io::Result<Output> {
    let mut command = Command::new("python3");
    command
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = pythonpath {
        command.env("PYTHONPATH", path);
    }
    let mut child = command.spawn()?;
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(input)?;
    child.wait_with_output()
}
