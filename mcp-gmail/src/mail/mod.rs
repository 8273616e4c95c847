//! Mail as Gmail stores it and as we send it.
//!
//! Pure functions, no I/O: [`compose`] builds the RFC 5322 bytes of an outgoing
//! plain-text message (ready to be base64url-encoded into Gmail's `raw`), and
//! [`read`] turns a `format=full` payload tree into what an agent reads: decoded
//! headers, one readable body (plain text, or HTML flattened to text), and the
//! list of attachments.
//!
//! ```
//! use mcp_gmail::mail::compose::{Outgoing, compose};
//!
//! let mail = Outgoing {
//!     from: "me@example.com",
//!     to: "Ana Pérez <ana@example.org>",
//!     cc: None,
//!     bcc: None,
//!     subject: "Überweisung",
//!     body: "Hallo Ana",
//!     in_reply_to: None,
//!     references: None,
//! };
//! let raw = compose(&mail, std::time::SystemTime::now()).unwrap();
//! assert!(raw.starts_with(b"From: me@example.com\r\n"));
//! ```

mod address;
mod charset;
pub mod compose;
mod compose_error;
mod html;
pub mod read;
mod words;
