//! `mcp-gmail`: the gmail MCP server on stdio, or one call by hand.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    mcp_gmail::main().await
}
