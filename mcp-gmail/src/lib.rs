//! mcp-gmail: the user's Gmail for agents, over MCP on stdio or streamable HTTP.
//!
//! Every tool call re-reads the store, re-checks that the user's Gmail
//! integration is enabled and granted to the running profile (identity from
//! the spawn environment, or over HTTP from the request's capability token), decrypts that one row, refreshes its access
//! token when it is about to expire (writing it back encrypted), and calls
//! Gmail through `google-gmail1`.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use mcp_gmail::GmailServer;
//! use rmcp::ServiceExt;
//! let identity = model::Identity::from_env(None, None).map_err(anyhow::Error::msg)?;
//! let backing = sidecar::Backing::new("mcp-gmail", store::Store::url_from_env(), 1);
//! let server = GmailServer::new(sidecar::IdentitySource::Spawned(identity), backing);
//! server.serve(sidecar::guarded_stdio()).await?.waiting().await?;
//! # Ok(()) }
//! ```

mod grant;
pub mod mail;
mod outbox;
mod render;
mod schema;
mod server;
mod upstream;

pub use server::GmailServer;

/// The `mcp-gmail` command: the server on stdio, or one call by hand
/// (`sidecar::standalone::main`), what its binary runs.
pub async fn main() -> std::process::ExitCode {
    sidecar::standalone::main(
        "mcp-gmail",
        "The user's Gmail for one running agent, over MCP on stdio.",
        GmailServer::tools,
        GmailServer::new,
    )
    .await
}
