//! The root package's integration tests, in one test binary: the
//! `integrations` binary, its HTTP server and the sidecars driven from
//! outside, on the helpers of `tests/testkit` and the fakes of
//! `tests/fakes` (docs/testing.md).

mod abuse;
mod api;
mod api_answers;
mod api_router;
mod chat;
mod cli;
mod connect;
mod connections;
mod dashboard;
mod events;
mod health;
mod http_mode;
mod import;
mod openapi;
mod relay;
mod schemas;
mod sessions;
mod slack;
mod smtp;
mod telegram;

/// The `integrations` binary, which cargo builds for this test.
const BIN: &str = env!("CARGO_BIN_EXE_integrations");
