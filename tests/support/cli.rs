//! The `integrations` CLI as the HTTP tests run it: on one store and
//! keyring, with nothing else in its environment.

use std::process::{Command, Stdio};

/// The `integrations` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_integrations");

/// `integrations <args>` on the store at `url` with the keyring `keys`.
pub fn command(url: &str, keys: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
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
