//! The providers' wire formats: the signatures of their webhooks.

pub mod signature;
