//! Time partitions: each a pair of tantivy indexes (conversations, messages)
//! holding the conversations placed in one span of time.
//!
//! A conversation is placed by its store column `placed_at` (the time of its
//! first message when it was created), which never changes, so its documents
//! never move between partitions and a change or a tombstone names the one
//! partition that holds them.

use super::{CommitPayload, IndexError, IndexSchema};
use convlog_core::Micros;
use std::path::{Path, PathBuf};
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher};

/// Which documents: each kind has its own index in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Conversation,
    Message,
}

/// A partition, named by the start of the span it covers (a multiple of the span since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey(pub Micros);

impl PartitionKey {
    /// The partition `placed_at` falls in.
    pub fn of(placed_at: Micros, span: Micros) -> PartitionKey {
        PartitionKey(placed_at.div_euclid(span) * span)
    }

    /// The end of its span (exclusive).
    pub fn end(self, span: Micros) -> Micros {
        self.0.saturating_add(span)
    }

    /// Its directory inside a generation.
    pub fn dir_name(self) -> String {
        format!("p{}", self.0)
    }

    /// The key a directory name stands for.
    pub fn parse(name: &str) -> Option<PartitionKey> {
        name.strip_prefix('p')?.parse().ok().map(PartitionKey)
    }
}

/// One tantivy index and its reader.
#[derive(Clone)]
pub struct Part {
    pub index: Index,
    pub reader: IndexReader,
}

impl Part {
    /// Opens the index in `dir` if it was built with `schema`; `None` when it
    /// must be rebuilt (another version or other fields).
    fn open_existing(dir: &Path, schema: &IndexSchema) -> Result<Option<Part>, IndexError> {
        if !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let index = Index::open_in_dir(dir)?;
        let version = index
            .load_metas()?
            .payload
            .and_then(|text| serde_json::from_str::<CommitPayload>(&text).ok())
            .map(|payload| payload.schema_version);
        let same_fields = serde_json::to_string(&index.schema()).ok()
            == serde_json::to_string(&schema.schema).ok();
        if version.is_some_and(|v| v != schema.version) || !same_fields {
            tracing::warn!(
                dir = %dir.display(),
                "index part was built with another schema; the generation is rebuilt"
            );
            return Ok(None);
        }
        Ok(Some(Part::with_reader(index, schema)?))
    }

    fn create(dir: &Path, schema: &IndexSchema) -> Result<Part, IndexError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let index = Index::create_in_dir(dir, schema.schema.clone())?;
        Part::with_reader(index, schema)
    }

    fn with_reader(index: Index, schema: &IndexSchema) -> Result<Part, IndexError> {
        schema.register_tokenizer(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Part { index, reader })
    }
}

/// One partition: its conversation and message documents.
#[derive(Clone)]
pub struct Partition {
    pub key: PartitionKey,
    pub conversations: Part,
    pub messages: Part,
}

impl Partition {
    /// Opens an existing partition; `None` when it was built with another schema.
    pub fn open(
        dir: PathBuf,
        key: PartitionKey,
        schema: &IndexSchema,
    ) -> Result<Option<Partition>, IndexError> {
        let conversations = Part::open_existing(&dir.join("conversations"), schema)?;
        let messages = Part::open_existing(&dir.join("messages"), schema)?;
        Ok(match (conversations, messages) {
            (Some(conversations), Some(messages)) => Some(Partition {
                key,
                conversations,
                messages,
            }),
            _ => None,
        })
    }

    /// Creates an empty partition.
    pub fn create(
        dir: PathBuf,
        key: PartitionKey,
        schema: &IndexSchema,
    ) -> Result<Partition, IndexError> {
        let conversations = Part::create(&dir.join("conversations"), schema)?;
        let messages = Part::create(&dir.join("messages"), schema)?;
        // The directory entries must survive a crash before the first commit names them.
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(Partition {
            key,
            conversations,
            messages,
        })
    }

    /// A point-in-time view of it.
    pub fn view(&self) -> PartitionView {
        let conversations = self.conversations.reader.searcher();
        let messages = self.messages.reader.searcher();
        PartitionView {
            key: self.key,
            bounds: bounds(&conversations),
            ids: ids(&conversations),
            conversations,
            messages,
        }
    }
}

/// The smallest and largest values over the live segments of a searcher, from
/// each segment's column statistics (deleted documents included: it only errs
/// wide); `whole` when a segment lacks the columns, `None` when it holds none.
fn extent<T: Ord + Copy>(
    searcher: &Searcher,
    whole: (T, T),
    of_segment: impl Fn(&tantivy::SegmentReader) -> Option<(T, T)>,
) -> Option<(T, T)> {
    let mut extent: Option<(T, T)> = None;
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            continue;
        }
        let Some((lo, hi)) = of_segment(segment) else {
            // Without the columns nothing can be excluded.
            return Some(whole);
        };
        extent = Some(match extent {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
    extent
}

/// The earliest first message and the latest last message of the
/// conversations in a searcher, or `None` when it holds none.
fn bounds(conversations: &Searcher) -> Option<(Micros, Micros)> {
    extent(conversations, (Micros::MIN, Micros::MAX), |segment| {
        let fast = segment.fast_fields();
        let (first, last) = (fast.i64("first_ts").ok()?, fast.i64("last_ts").ok()?);
        Some((first.min_value(), last.max_value()))
    })
}

/// The smallest and largest conversation id in a searcher's conversation
/// documents, or `None` when it holds none.
fn ids(conversations: &Searcher) -> Option<(u64, u64)> {
    extent(conversations, (0, u64::MAX), |segment| {
        let column = segment.fast_fields().u64("conv_id").ok()?;
        Some((column.min_value(), column.max_value()))
    })
}

/// A point-in-time view of one partition.
#[derive(Clone)]
pub struct PartitionView {
    pub key: PartitionKey,
    /// See [`bounds`]; `None` when the partition is empty.
    pub bounds: Option<(Micros, Micros)>,
    /// See [`ids`]; `None` when the partition is empty.
    pub ids: Option<(u64, u64)>,
    pub conversations: Searcher,
    pub messages: Searcher,
}

impl PartitionView {
    /// Whether a conversation of it can have a message in `[from, to)`.
    pub fn touches(&self, from: Option<Micros>, to: Option<Micros>) -> bool {
        self.bounds.is_some_and(|(first, last)| {
            from.is_none_or(|from| last >= from) && to.is_none_or(|to| first < to)
        })
    }

    /// The searcher of one kind of document.
    pub fn searcher(&self, kind: DocKind) -> &Searcher {
        match kind {
            DocKind::Conversation => &self.conversations,
            DocKind::Message => &self.messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_align_to_the_span_and_round_trip_through_names() {
        let day = 86_400_000_000;
        assert_eq!(PartitionKey::of(day * 3 + 5, day), PartitionKey(day * 3));
        assert_eq!(PartitionKey::of(day * 3, day), PartitionKey(day * 3));
        // Before the epoch the partition still starts at or before the time.
        assert_eq!(PartitionKey::of(-1, day), PartitionKey(-day));
        for key in [PartitionKey(day * 3), PartitionKey(-day)] {
            assert_eq!(PartitionKey::parse(&key.dir_name()), Some(key));
        }
        assert_eq!(PartitionKey::parse("conversations"), None);
        assert_eq!(PartitionKey(day).end(day), 2 * day);
    }
}
