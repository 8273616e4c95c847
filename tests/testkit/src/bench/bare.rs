//! The baseline every sidecar benchmark is read against: a bare rmcp server
//! with one tool that does nothing: served on stdio by
//! [`super::serve_bare_if_asked`], and over streamable HTTP by
//! `mcp-teller/benches/http_load.rs`.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

/// One tool, `ping`, answering `pong`.
#[derive(Clone)]
pub struct Bare {
    tool_router: ToolRouter<Self>,
}

impl Default for Bare {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl Bare {
    #[tool(description = "Answers pong.")]
    fn ping(&self) -> String {
        "pong".into()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bare {}
