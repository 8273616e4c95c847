//! mcp-teller: read-only Teller bank data for agents, over MCP on stdio or streamable HTTP.
//!
//! Every tool call re-reads the store, re-checks that the enrollment is
//! enabled and granted to the running profile (identity from the spawn
//! environment, or over HTTP from the request's capability token), decrypts that one row and calls Teller.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use mcp_teller::TellerServer;
//! use rmcp::ServiceExt;
//! let identity = model::Identity::from_env(None, None).map_err(anyhow::Error::msg)?;
//! let backing = sidecar::Backing::new("mcp-teller", store::Store::url_from_env(), 1);
//! let server = TellerServer::new(sidecar::IdentitySource::Spawned(identity), backing);
//! server.serve(sidecar::guarded_stdio()).await?.waiting().await?;
//! # Ok(()) }
//! ```

mod server;

pub use server::TellerServer;

/// The `mcp-teller` command: the server on stdio, or one call by hand
/// (`sidecar::standalone::main`), what its binary runs.
pub async fn main() -> std::process::ExitCode {
    sidecar::standalone::main(
        "mcp-teller",
        "Teller bank data for one running agent, over MCP on stdio.",
        TellerServer::tools,
        TellerServer::new,
    )
    .await
}
