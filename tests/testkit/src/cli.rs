//! The `integrations` CLI as the tests run it: on one store and keyring,
//! with nothing else in its environment.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `integrations` binary (built when missing, [`crate::bin`]).
pub fn integrations() -> PathBuf {
    crate::bin("integrations")
}

/// `integrations <args>` on the store at `url` with the keyring `keys`.
pub fn command(url: &str, keys: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(integrations());
    cmd.args(args)
        .env_clear()
        .env("INTEGRATIONS_DB", url)
        .env("INTEGRATIONS_KEYS", keys);
    cmd
}

/// Runs `integrations <args>` without input; it must succeed. Its stdout.
pub fn run(url: &str, keys: &str, args: &[&str]) -> String {
    let out = command(url, keys, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "integrations {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `integrations <args>` with `stdin` as its input; it must succeed.
/// Its stdout.
pub fn run_with_stdin(url: &str, keys: &str, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = command(url, keys, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "integrations {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
