//! `mcp-gmail`: the gmail MCP server on stdio, or one call by hand.

use std::process::ExitCode;

use mcp_gmail::GmailServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    sidecar::standalone::main(
        "mcp-gmail",
        "The user's Gmail for one running agent, over MCP on stdio.",
        GmailServer::tools,
        GmailServer::new,
    )
    .await
}
