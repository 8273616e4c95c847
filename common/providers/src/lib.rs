//! The providers' wire formats: one client per provider, used by the API
//! and the sidecars alike (each module mirrors a fake of `tests/fakes`),
//! the webhooks' signatures, and the webhook updates Telegram sends.
//!
//! The only crate that reads a provider's base URL (`TELLER_API_BASE`,
//! `GMAIL_API_BASE`, `GOOGLE_TOKEN_URL`, `SLACK_API_BASE`, ...): whoever
//! talks to a provider goes through its module here.

pub mod gmail;
pub mod google;
pub mod http;
pub mod resend;
pub mod signature;
pub mod slack;
pub mod smtp;
pub mod telegram;
pub mod teller;
