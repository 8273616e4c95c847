//! The resolver: for a user and a running profile, which MCP servers the
//! platform spawns (command, args, environment), which tools the agent may
//! call, which notification channels it may use, and which inbound chat
//! surfaces route to it. Also where an inbound message goes. Over HTTP
//! ([`mint`]), the same servers as endpoints of the sidecars' service, with
//! one capability token for the running agent instead of any reference to a
//! secret; or as stdio relays to them holding only that token
//! ([`HttpPlan::relayed`]).
//!
//! It reads clear-text metadata only and never holds a keyring: secrets reach
//! the sidecars by reference (`INTEGRATIONS_KEYS_FILE` or a `${VAR}`
//! placeholder the agent runtime expands).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use resolver::{PlanRequest, SidecarEnv, plan};
//! let store = store::Store::connect("sqlite://integrations.db?mode=rwc").await?;
//! let env = SidecarEnv::from_process("sqlite://integrations.db?mode=rwc");
//! let request = PlanRequest { user_id: "u1", profile_id: "prof_vzfin", session_id: None, bin_dir: "/usr/local/bin".as_ref() };
//! let plan = plan(&store, &env, &request).await?;
//! println!("{}", serde_json::to_string_pretty(&plan.claude_code())?);
//! # Ok(()) }
//! ```

mod env;
mod http;
mod plan;
mod route;

pub use env::SidecarEnv;
pub use http::{HttpPlan, check_base_url, mint};
pub use plan::{InboundSurface, Plan, PlanRequest, ResolveError, Routing, ServerSpec, plan};
pub use route::{Route, RouteError, route};
