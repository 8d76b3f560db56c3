//! Query: turns search requests into index queries and reads what they find from the store.

pub mod build;
pub mod collector;
pub mod cursor;
pub mod export;
mod facets;
pub mod filters;
pub mod highlight;
mod join;
mod request;
mod search;
pub mod tail;
mod top;
pub mod trace;

pub use request::{DEFAULT_LIMIT, MAX_LIMIT, SearchRequest, Sort, Target};
pub use search::{
    ConversationDetail, ConversationHit, ConversationPage, FlowFunnel, MessageHit, MessagePage,
    NodeCount, SearchService, StepFunnel, TailPage,
};

/// Why a search could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("invalid query at position {position}: {reason}")]
    InvalidQuery { position: usize, reason: String },
    #[error("not found")]
    NotFound,
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("search task failed: {0}")]
    Task(String),
}
