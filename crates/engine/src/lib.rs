//! convlog's engine: everything between a validated request and the data —
//! no HTTP, no command line.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! ingest (validate, pseudonymise, sessions) ─► store (SQLite, source of truth)
//!                                                │
//!                                 index (tantivy, follows the store's change stream)
//!                                                │
//!                            query (filters, facets, cursors) ─► the caller
//!
//! tag (rayon job over the change stream)   archive (past retention ─► Parquet in object storage)
//! review (labels, flags, debug, shares, bulk)   jobs (background work with progress)
//! ```
//!
//! [`config`] turns `config.toml` into typed settings; [`auth`] holds keys,
//! roles and per-key limits; [`audit`] is the audit log the server and the
//! command line both append to. It imports `convlog-core` and `convlog-querylang`,
//! never the server crate (`convlog`: HTTP, wiring, command line).

pub mod archive;
pub mod audit;
pub mod auth;
pub mod config;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod query;
pub mod review;
pub mod store;
pub mod tag;
