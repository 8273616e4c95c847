//! mcp-notify: `notify_user` for agents over MCP on stdio, and the delivery
//! library (Slack, Telegram, Email through Resend, signed webhooks) that
//! `integrations notify` and `integrations test` use too.
//!
//! Every call re-reads the store and chooses the channel among the
//! integrations granted to the running profile now; every notification ends
//! in one `notification_log` row.

pub mod deliver;
pub mod markdown;
pub mod notifier;
mod server;

pub use notifier::{Notifier, NotifyError, Request, Sent, validate};
pub use server::NotifyServer;

/// The `mcp-notify` command: the server on stdio, or one call by hand
/// (`sidecar::standalone::main`), what its binary runs.
pub async fn main() -> std::process::ExitCode {
    sidecar::standalone::main(
        "mcp-notify",
        "notify_user for one running agent, over MCP on stdio.",
        NotifyServer::tools,
        NotifyServer::new,
    )
    .await
}
