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
//! It imports `convlog-core` and `convlog-querylang`, never the server crate
//! (`convlog`: HTTP, wiring, command line).
//!
//! # Layers
//!
//! Imports follow this order, lowest first: a module may import only modules
//! of lower layers, and modules of one layer don't import each other.
//! `tests/layers.rs` reads this list and fails on any `crate::` path in the
//! engine's code (tests aside) that goes up or sideways, and on files of one
//! module that import each other in a cycle.
//!
//! 1. `settings`, `failpoints`: the typed settings each layer is given,
//!    already validated; test-only crash injection at named steps.
//! 2. `auth`, `ingest`: pure rules the store applies — keys, roles, scopes and
//!    limits; validation, pseudonyms and session grouping of a batch.
//! 3. `store`: SQLite, the source of truth, and its change stream.
//! 4. `jobs`: background work with progress, recorded in the store.
//! 5. `index`: tantivy, following the store's change stream.
//! 6. `query`: searches over the index, read from the store.
//! 7. `tag`, `archive`, `review`, `insights`, `audit`: the services — tagging,
//!    retention and the Parquet archive, reviewers' work, what the bot missed
//!    (clusters of unidentified inputs), the audit log the server and the
//!    command line both append to.
//! 8. `admin`: key changes beside a running server (the command line), each
//!    audited in the same transaction.
//! 9. `config`: `config.toml` layered and validated into the settings of
//!    every layer (and the tagging rules), so it sits above all of them.
//!
//! The data flows from ingest into the store, but the imports go the other
//! way: ingest's checks are pure, and the store's ingest transaction applies
//! them.

pub mod admin;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod config;
mod failpoints;
pub mod index;
pub mod ingest;
pub mod insights;
pub mod jobs;
pub mod query;
pub mod review;
pub mod settings;
pub mod store;
pub mod tag;
