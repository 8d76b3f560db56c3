//! Ingest: validation of incoming batches, anonymity and session assignment.
//!
//! The store runs the actual transaction ([`crate::store::WriteCtx::ingest`]);
//! this module holds the pure parts it relies on.

pub mod pseudonym;
pub mod sessions;
pub mod validate;
