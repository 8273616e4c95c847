//! The integrations service as a library: the REST API and the Settings page
//! ([`api`], whose [`api::router`] tests drive in-process), the operations
//! the API and the CLI share ([`ops`]), the platform's events ([`events`]),
//! the health keeper ([`health`]), and the vonzio import ([`import`]).
//! The `integrations` binary is a thin command line over it.

pub mod api;
pub mod events;
pub mod health;
pub mod import;
pub mod ops;
