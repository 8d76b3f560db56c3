//! Integration tests: one binary, the server started as a real process.
//!
//! Each module proves one item of the acceptance list (issue #2) through HTTP
//! against the real `convlog` binary; `oracle` recomputes expected answers
//! from the generated data.

mod access;
mod access_isolation;
mod access_limits;
mod access_secrets;
mod adapters;
mod anonymity;
mod archive;
mod archive_s3;
mod cli;
mod common;
mod crash;
mod erasure;
mod errors;
mod export;
mod filters;
mod hardening;
mod ingest;
mod insights;
mod isolation;
mod languages;
mod observability;
mod ops;
mod oracle;
mod paging;
mod partitions;
mod privacy;
mod readme;
mod reindex;
mod review;
mod review_concurrency;
mod schemathesis;
mod search_oracle;
mod sessions;
mod sources;
mod sources_kafka;
mod tagging;
mod tail;
mod ui;
