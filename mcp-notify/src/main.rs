//! `mcp-notify`: the notify MCP server on stdio, or one call by hand.

use std::process::ExitCode;

use mcp_notify::NotifyServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    sidecar::standalone::main(
        "mcp-notify",
        "notify_user for one running agent, over MCP on stdio.",
        NotifyServer::tools,
        NotifyServer::new,
    )
    .await
}
