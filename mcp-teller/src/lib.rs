//! mcp-teller
