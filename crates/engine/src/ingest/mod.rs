//! Ingest: validation of incoming batches, anonymity and session assignment,
//! and the adapters that turn what bots already emit (OpenTelemetry traces,
//! Rasa tracker events) into batches of convlog's own format.
//!
//! The store runs the actual transaction ([`crate::store::WriteCtx::ingest`]);
//! this module holds the pure parts it relies on.

pub mod json;
pub mod otlp;
pub mod pseudonym;
pub mod rasa;
pub mod records;
pub mod redact;
pub mod sessions;
pub mod validate;
