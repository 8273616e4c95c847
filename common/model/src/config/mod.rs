//! Per-type integration configs: which fields each type has, which are
//! secret, validation on write, and the redacted view on read.
//!
//! The redacted view is an allowlist: only fields declared non-secret are
//! shown; declared secret fields appear as [`MASK`]; anything else is left out.
//! Scanning never copies a secret value out of its zeroizing buffer.
//!
//! One file per job: `fields` (the per-type tables), `identity` (external
//! identities and server-managed fields), `input` (what a request or a
//! flow writes), `scan` (reading JSON against a table), `decrypted`
//! (validation, rewriting, the redacted view) and `schema` (the JSON
//! Schema a request is checked against).

mod decrypted;
mod fields;
mod identity;
mod input;
mod scan;
mod schema;
#[cfg(test)]
mod tests;

pub use decrypted::{DecryptedConfig, ValidConfig};
pub use fields::{WEBHOOK_SIGNATURES, field_names};
pub use identity::{identity_noun, identity_types, identity_value};
pub use input::{ConfigInput, FieldValue};
pub use schema::{config_schema, non_blank_schema};

/// What a secret field shows in every redacted view.
pub const MASK: &str = "********";

/// Why a config was refused. Names fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
