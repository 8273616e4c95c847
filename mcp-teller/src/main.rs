//! `mcp-teller`: the teller MCP server on stdio, or one call by hand.

use std::process::ExitCode;

use mcp_teller::TellerServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    sidecar::standalone::main(
        "mcp-teller",
        "Teller bank data for one running agent, over MCP on stdio.",
        TellerServer::tools,
        TellerServer::new,
    )
    .await
}
