//! The workspace's binaries, found beside the running test and built when
//! missing: `cargo test -p mcp-teller` needs `integrations` too, which only
//! the root package's own tests would have built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One build at a time: tests run in parallel and may ask together.
static BUILDING: Mutex<()> = Mutex::new(());

/// The workspace binary `name` (its package has the same name), beside the
/// running test or benchmark in the same target directory and profile;
/// built with `cargo build -p <name> --bin <name>` when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let path = profile_dir.join(name);
    if path.exists() {
        return path;
    }
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        build(name, &profile_dir);
    }
    assert!(
        path.exists(),
        "`cargo build -p {name} --bin {name}` did not leave {}",
        path.display()
    );
    path
}

/// The directory of the running executable's profile: `<target>/debug` for
/// `target/…/debug/deps/it-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let deps = exe.parent().expect("the test's directory");
    match deps.file_name() {
        Some(d) if d == "deps" => deps.parent().unwrap().to_path_buf(),
        _ => deps.to_path_buf(),
    }
}

/// Builds `name` into the target directory and profile of `profile_dir`.
fn build(name: &str, profile_dir: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "-p", name, "--bin", name]);
    // `debug` is the dev profile's directory; `release` holds the release
    // and bench profiles' binaries.
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    eprintln!(
        "{} is missing: building it",
        profile_dir.join(name).display()
    );
    let status = cmd.status().expect("cargo runs");
    assert!(
        status.success(),
        "cargo build -p {name} --bin {name} failed"
    );
}
