//! convlog keeps the conversation logs of chatbots.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! HTTP ─► ingest (validate, pseudonymise, sessions) ─► store (SQLite, source of truth)
//!                                                        │
//!                                         index (tantivy, follows the store's change stream)
//!                                                        │
//!                                    query (filters, facets, cursors) ─► HTTP
//!
//! tag (rayon job over the change stream)   archive (past retention ─► Parquet in object storage)
//! ```
//!
//! [`app::serve`] wires them together; [`config`] turns `config.toml` into typed settings.

pub mod app;
pub mod archive;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod query;
pub mod review;
pub mod store;
pub mod tag;
