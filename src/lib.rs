//! convlog keeps the conversation logs of chatbots: this crate is the server —
//! HTTP ([`http`]), start-up wiring ([`app`]), the command line ([`cli`]), its log ([`logging`]) and
//! the metrics it exports — over the engine (`convlog-engine`), which does the
//! work:
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
//! [`app::serve`] wires them together.

pub mod app;
pub mod cli;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod sources;
