//! Logging for every binary: `tracing` to stderr (stdout may carry a
//! protocol), filtered by `RUST_LOG`, `warn` by default.

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber.
pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
}
