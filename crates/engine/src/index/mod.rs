//! The search index: tantivy, derived from the store and rebuildable at any time.
//!
//! One writer thread ([`writer`]) follows the store's change stream and commits
//! every refresh interval, recording in the commit payload how far it got, so
//! after a crash it resumes from there. Searches use [`SearchIndex::searcher`].

mod document;
mod live;
pub mod schema;
mod writer;

pub use crate::settings::SchemaChange;
pub use live::LiveIndex;
pub use schema::{Fields, IndexSchema};
pub use writer::{IndexState, Indexer};

use serde::{Deserialize, Serialize};
use std::path::Path;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher};

/// What went wrong in the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("schema: {0}")]
    Schema(#[from] schema::SchemaError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(
        "the index was built with schema version {found}, this binary has {expected}; \
         run `convlog reindex` or set index.on_schema_change = \"rebuild\""
    )]
    SchemaMismatch { found: u32, expected: u32 },
}

/// What each commit records: the schema it was built with and the store position it covers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitPayload {
    pub schema_version: u32,
    pub position: u64,
}

/// One tantivy index and its reader.
#[derive(Clone)]
pub struct Part {
    pub index: Index,
    pub reader: IndexReader,
}

impl Part {
    fn open(dir: &Path, schema: &IndexSchema) -> Result<(Part, Option<CommitPayload>), IndexError> {
        let existing = open_existing(dir, schema)?;
        let (index, payload) = match existing {
            Some((index, payload)) => (index, Some(payload)),
            None => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir)?;
                }
                std::fs::create_dir_all(dir)?;
                (Index::create_in_dir(dir, schema.schema.clone())?, None)
            }
        };
        schema.register_tokenizer(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok((Part { index, reader }, payload))
    }
}

/// The search index: conversation documents and message documents in two
/// tantivy indexes, so each one's columns are dense and its scans short.
#[derive(Clone)]
pub struct SearchIndex {
    pub conversations: Part,
    pub messages: Part,
    pub schema: IndexSchema,
}

impl SearchIndex {
    /// Opens the index in `dir`, rebuilding from scratch what was built with another schema.
    ///
    /// Returns the index and the store position both parts cover.
    pub fn open(dir: &Path, schema: IndexSchema) -> Result<(SearchIndex, u64), IndexError> {
        let (conversations, conversation_payload) =
            Part::open(&dir.join("conversations"), &schema)?;
        let (messages, message_payload) = Part::open(&dir.join("messages"), &schema)?;
        // A crash between the two commits leaves one part ahead: resume from the other.
        let position = match (conversation_payload, message_payload) {
            (Some(a), Some(b)) => a.position.min(b.position),
            _ => 0,
        };
        Ok((
            SearchIndex {
                conversations,
                messages,
                schema,
            },
            position,
        ))
    }

    /// The schema version the index in `dir` was built with, if there is one.
    pub fn built_version(dir: &Path) -> Result<Option<u32>, IndexError> {
        let part = dir.join("conversations");
        if !part.join("meta.json").exists() {
            return Ok(None);
        }
        let payload = Index::open_in_dir(&part)?
            .load_metas()?
            .payload
            .and_then(|text| serde_json::from_str::<CommitPayload>(&text).ok());
        Ok(Some(payload.map(|p| p.schema_version).unwrap_or(0)))
    }

    /// A point-in-time view of the conversation documents.
    pub fn conversation_searcher(&self) -> Searcher {
        self.conversations.reader.searcher()
    }

    /// A point-in-time view of the message documents.
    pub fn message_searcher(&self) -> Searcher {
        self.messages.reader.searcher()
    }

    /// The fields, resolved.
    pub fn fields(&self) -> &Fields {
        &self.schema.fields
    }
}

/// The existing index and its payload, or `None` when there is none or it must be rebuilt.
fn open_existing(
    dir: &Path,
    schema: &IndexSchema,
) -> Result<Option<(Index, CommitPayload)>, IndexError> {
    if !dir.join("meta.json").exists() {
        return Ok(None);
    }
    let index = Index::open_in_dir(dir)?;
    let payload = index
        .load_metas()?
        .payload
        .and_then(|text| serde_json::from_str::<CommitPayload>(&text).ok())
        .unwrap_or(CommitPayload {
            schema_version: 0,
            position: 0,
        });
    if payload.schema_version != schema.version {
        tracing::warn!(
            on_disk = payload.schema_version,
            expected = schema.version,
            dir = %dir.display(),
            "index was built with another schema version; rebuilding it from the store"
        );
        return Ok(None);
    }
    let same_fields =
        serde_json::to_string(&index.schema()).ok() == serde_json::to_string(&schema.schema).ok();
    if !same_fields {
        tracing::warn!(
            version = schema.version,
            "index fields differ from index-schema/schema.toml without a version bump; rebuilding"
        );
        return Ok(None);
    }
    Ok(Some((index, payload)))
}
