//! What the workspace's tests and benchmarks share (a dev-dependency only):
//! a store on each backend ([`Backend`]), the product's example account
//! ([`Account`]), the workspace's binaries ([`bin`]), the `integrations`
//! CLI ([`cli`]), a serving process ([`Server`]), MCP tool calls ([`mcp`]),
//! the sidecars' service ([`service`]), the benchmarks' measures ([`bench`])
//! and the fake providers ([`fakes`]).

pub mod account;
pub mod backend;
pub mod bench;
mod binary;
pub mod cli;
pub mod mcp;
pub mod serve;
pub mod service;

pub use account::Account;
pub use backend::{Backend, Database};
pub use binary::bin;
pub use fakes;
pub use serve::Server;
