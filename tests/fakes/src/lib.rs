//! Fake upstream providers for tests and the demo. Each speaks its provider's
//! real wire format (see `docs/providers.md`), errors included, records the
//! requests it receives, and injects faults on request.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let teller = fakes::teller::FakeTeller::start().await?;
//! teller.faults().inject(fakes::Fault::status("/accounts", 502, serde_json::json!({"error": {"code": "bank_error", "message": "down"}})));
//! // point TELLER_API_BASE at teller.base_url() ...
//! # Ok(()) }
//! ```

mod faults;
pub mod gmail;
mod http;
pub mod python;
pub mod resend;
pub mod slack;
pub mod smtp;
pub mod telegram;
pub mod teller;
pub mod tls;
pub mod webhook;

pub use faults::{Fault, FaultKind, Faults, Recorded};
