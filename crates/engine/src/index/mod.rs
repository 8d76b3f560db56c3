//! The search index: tantivy, derived from the store and rebuildable at any time.
//!
//! The index is split into time partitions ([`partition`]), each a pair of
//! tantivy indexes. One writer thread ([`writer`]) follows the store's change
//! stream, commits the partitions a page of changes touched every refresh
//! interval and then records in the generation's `STATE` file how far it got,
//! so after a crash it resumes from there. Searches take an [`IndexView`]: a
//! point-in-time view of every partition, which searches only the partitions
//! a time range can touch, their segments in parallel.

mod document;
mod live;
mod partition;
pub mod recent;
pub mod schema;
mod writer;

pub use crate::settings::SchemaChange;
pub use live::LiveIndex;
use partition::Partition;
pub use partition::{DocKind, PartitionKey, PartitionView};
pub use recent::{Recent, Tailed};
pub use schema::{Fields, IndexSchema, LanguageFields, TextAnalysis};
pub use writer::{IndexState, Indexer};

use convlog_core::Micros;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{Bm25StatisticsProvider, EnableScoring, Query};
use tantivy::schema::Field;
use tantivy::{DocSet, Searcher, Term};

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
    #[error(
        "the index was built with partitions of {found}µs, index.partition_span is {expected}µs; \
         run `convlog reindex` or set index.on_schema_change = \"rebuild\""
    )]
    SpanMismatch { found: Micros, expected: Micros },
}

/// What each commit of a partition records: the schema it was built with and the store position.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitPayload {
    pub schema_version: u32,
    pub position: u64,
}

/// The generation's `STATE` file: how it was built and the store position
/// every partition covers. Written after the partitions of a page commit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildState {
    pub schema_version: u32,
    pub partition_span: Micros,
    pub position: u64,
}

const STATE: &str = "STATE";

/// The suffix a dropped partition's directory takes before it is removed.
const DROPPED: &str = ".dropped";

impl BuildState {
    /// The state of the generation in `dir`, if it has one.
    pub fn read(dir: &Path) -> Option<BuildState> {
        let text = std::fs::read_to_string(dir.join(STATE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Replaces the state file atomically and durably.
    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{STATE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).expect("state serialises"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(STATE))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// One partition's documents of one kind (see [`SearchIndex::partition_stats`]).
#[derive(Debug, Clone)]
pub struct PartitionStats {
    /// Its directory's name.
    pub partition: String,
    pub kind: DocKind,
    pub segments: u64,
    pub documents: u64,
    pub deleted: u64,
    pub bytes: u64,
}

/// The bytes of the files directly in `dir` (0 when it can't be read).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.metadata().ok())
                .filter(|meta| meta.is_file())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The partitions of one generation; cheap to clone.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    schema: IndexSchema,
    span: Micros,
    /// Every partition with its last published view.
    partitions: Mutex<BTreeMap<PartitionKey, (Partition, PartitionView)>>,
    /// What searches see; replaced whole after each page of changes.
    view: RwLock<Arc<IndexView>>,
}

impl SearchIndex {
    /// Opens the generation in `dir` with partitions of `span`, rebuilding from
    /// scratch what was built with another schema or span.
    ///
    /// Returns the index and the store position every partition covers.
    pub fn open(
        dir: &Path,
        schema: IndexSchema,
        span: Micros,
    ) -> Result<(SearchIndex, u64), IndexError> {
        std::fs::create_dir_all(dir)?;
        let state = BuildState::read(dir)
            .filter(|state| state.schema_version == schema.version && state.partition_span == span);
        let mut partitions = BTreeMap::new();
        let mut position = state.map(|state| state.position).unwrap_or(0);
        if state.is_some() {
            for (key, path) in partition_dirs(dir) {
                match Partition::open(path, key, &schema)? {
                    Some(partition) => {
                        let view = partition.view();
                        partitions.insert(key, (partition, view));
                    }
                    None => {
                        partitions.clear();
                        position = 0;
                        break;
                    }
                }
            }
        }
        if position == 0 {
            if BuildState::read(dir).is_some() || dir.join("conversations").exists() {
                tracing::warn!(
                    dir = %dir.display(),
                    "index was built with another schema or partition span; rebuilding it from the store"
                );
            }
            partitions.clear();
            clear_generation(dir)?;
            BuildState {
                schema_version: schema.version,
                partition_span: span,
                position: 0,
            }
            .write(dir)?;
        }
        let view = IndexView {
            id: next_view_id(),
            analysis: schema.analysis,
            partitions: partitions.values().map(|(_, view)| view.clone()).collect(),
        };
        Ok((
            SearchIndex {
                inner: Arc::new(Inner {
                    dir: dir.to_path_buf(),
                    schema,
                    span,
                    partitions: Mutex::new(partitions),
                    view: RwLock::new(Arc::new(view)),
                }),
            },
            position,
        ))
    }

    /// The schema version and partition span the generation in `dir` was built with, if any.
    pub fn built_with(dir: &Path) -> Result<Option<(u32, Option<Micros>)>, IndexError> {
        if let Some(state) = BuildState::read(dir) {
            return Ok(Some((state.schema_version, Some(state.partition_span))));
        }
        // A generation from before partitions: one pair of indexes, the version in its payload.
        let part = dir.join("conversations");
        if !part.join("meta.json").exists() {
            return Ok(None);
        }
        let payload = tantivy::Index::open_in_dir(&part)?
            .load_metas()?
            .payload
            .and_then(|text| serde_json::from_str::<CommitPayload>(&text).ok());
        Ok(Some((payload.map(|p| p.schema_version).unwrap_or(0), None)))
    }

    /// What searches see now.
    pub fn view(&self) -> Arc<IndexView> {
        self.inner.view.read().expect("view lock").clone()
    }

    /// What each partition of the view searches see holds, per kind of
    /// document: segments, documents, deleted documents and bytes on disk
    /// (every file of its directory, so segments a merge replaced count until
    /// they are removed).
    pub fn partition_stats(&self) -> Vec<PartitionStats> {
        let view = self.view();
        let mut stats = Vec::new();
        for partition in &view.partitions {
            let name = partition.key.dir_name();
            for (kind, dir) in [
                (DocKind::Conversation, "conversations"),
                (DocKind::Message, "messages"),
            ] {
                let searcher = partition.searcher(kind);
                let segments = searcher.segment_readers();
                stats.push(PartitionStats {
                    partition: name.clone(),
                    kind,
                    segments: segments.len() as u64,
                    documents: searcher.num_docs(),
                    deleted: segments.iter().map(|s| s.num_deleted_docs() as u64).sum(),
                    bytes: dir_bytes(&self.inner.dir.join(&name).join(dir)),
                });
            }
        }
        stats
    }

    /// The fields, resolved.
    pub fn fields(&self) -> &Fields {
        &self.inner.schema.fields
    }

    /// The schema.
    pub fn schema(&self) -> &IndexSchema {
        &self.inner.schema
    }

    /// The time each partition covers.
    pub fn span(&self) -> Micros {
        self.inner.span
    }

    /// The partition of `key`, created when there is none yet.
    fn partition(&self, key: PartitionKey) -> Result<Partition, IndexError> {
        let mut partitions = self.inner.partitions.lock().expect("partitions lock");
        if let Some((partition, _)) = partitions.get(&key) {
            return Ok(partition.clone());
        }
        let partition =
            Partition::create(self.inner.dir.join(key.dir_name()), key, &self.inner.schema)?;
        let view = partition.view();
        partitions.insert(key, (partition.clone(), view));
        Ok(partition)
    }

    /// Whether the partition of `key` exists.
    fn has_partition(&self, key: PartitionKey) -> bool {
        self.inner
            .partitions
            .lock()
            .expect("partitions lock")
            .contains_key(&key)
    }

    /// The partitions whose conversation documents include `conversation`.
    fn holding(&self, conversation: u64) -> Vec<PartitionKey> {
        let term = Term::from_field_u64(self.fields().conv_id, conversation);
        self.view()
            .partitions
            .iter()
            .filter(|p| p.conversations.doc_freq(&term).is_ok_and(|n| n > 0))
            .map(|p| p.key)
            .collect()
    }

    /// Removes a partition whole: from searches at the next publish, and from disk.
    fn drop_partition(&self, key: PartitionKey) -> Result<(), IndexError> {
        let removed = self
            .inner
            .partitions
            .lock()
            .expect("partitions lock")
            .remove(&key);
        let dir = self.inner.dir.join(key.dir_name());
        if removed.is_some() || dir.exists() {
            // Renamed first: a crash mid-removal must not leave a half partition under its name.
            let doomed = self.inner.dir.join(format!("{}{DROPPED}", key.dir_name()));
            std::fs::rename(&dir, &doomed)?;
            std::fs::File::open(&self.inner.dir)?.sync_all()?;
            std::fs::remove_dir_all(&doomed)?;
        }
        Ok(())
    }

    /// Records that every partition covers the store up to `position`.
    fn record_position(&self, position: u64) -> Result<(), IndexError> {
        BuildState {
            schema_version: self.inner.schema.version,
            partition_span: self.inner.span,
            position,
        }
        .write(&self.inner.dir)?;
        Ok(())
    }

    /// Reloads the readers of `touched` partitions and shows searches the new state of all.
    fn publish(&self, touched: &[PartitionKey]) -> Result<(), IndexError> {
        let mut partitions = self.inner.partitions.lock().expect("partitions lock");
        for key in touched {
            if let Some((partition, view)) = partitions.get_mut(key) {
                partition.messages.reader.reload()?;
                partition.conversations.reader.reload()?;
                *view = partition.view();
            }
        }
        *self.inner.view.write().expect("view lock") = Arc::new(IndexView {
            id: next_view_id(),
            analysis: self.inner.schema.analysis,
            partitions: partitions.values().map(|(_, view)| view.clone()).collect(),
        });
        Ok(())
    }
}

/// The partition directories of a generation (removing what a crash left
/// of a dropped one).
fn partition_dirs(dir: &Path) -> Vec<(PartitionKey, PathBuf)> {
    let mut found: Vec<(PartitionKey, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if name.ends_with(DROPPED) {
                let _ = std::fs::remove_dir_all(entry.path());
                return None;
            }
            Some((PartitionKey::parse(&name)?, entry.path()))
        })
        .collect();
    found.sort_by_key(|(key, _)| *key);
    found
}

/// Empties a generation directory for a build from scratch.
fn clear_generation(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A point-in-time view of every partition: what a search runs over and a cursor pins.
#[derive(Clone)]
pub struct IndexView {
    /// Grows with every view published, across generations.
    pub id: u64,
    /// How its text was analysed (the generation's schema).
    pub analysis: TextAnalysis,
    /// Oldest first.
    pub partitions: Vec<PartitionView>,
}

/// The id of a new view.
fn next_view_id() -> u64 {
    static VIEWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    VIEWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The threads searches run segments on: both cores for one query, apart from
/// the tagging job's pool so a long job doesn't queue ahead of searches.
fn search_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| per_core_pool("search", |_| {}))
}

/// A pool of one thread per core, named `<name>-<n>`, each starting with `start`.
pub(crate) fn per_core_pool(
    name: &'static str,
    start: impl Fn(usize) + Send + Sync + 'static,
) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
        .thread_name(move |n| format!("{name}-{n}"))
        .start_handler(start)
        .build()
        .unwrap_or_else(|err| panic!("{name} threads start: {err}"))
}

impl IndexView {
    /// Runs `query` over the `kind` documents of the partitions that `[from, to)`
    /// can touch, their segments in parallel, and merges what `collector`
    /// found. Scores use the statistics of all those partitions together, so
    /// they are what one index holding them would give.
    pub fn search<C>(
        &self,
        kind: DocKind,
        range: (Option<Micros>, Option<Micros>),
        query: &dyn Query,
        collector: &C,
    ) -> tantivy::Result<C::Fruit>
    where
        C: Collector + Sync,
        <C::Child as SegmentCollector>::Fruit: Send,
    {
        self.search_segments(kind, range, query, collector, |_| true)
    }

    /// [`search`](Self::search) over the segments of every partition that
    /// hold a document whose u64 `field` is above `after` (a live tail's new
    /// messages are in the newest segments: the others are not searched).
    pub fn search_above<C>(
        &self,
        kind: DocKind,
        (field, after): (&str, u64),
        query: &dyn Query,
        collector: &C,
    ) -> tantivy::Result<C::Fruit>
    where
        C: Collector + Sync,
        <C::Child as SegmentCollector>::Fruit: Send,
    {
        self.search_segments(kind, (None, None), query, collector, |segment| {
            segment
                .fast_fields()
                .u64(field)
                .map_or(true, |column| column.max_value() > after)
        })
    }

    fn search_segments<C>(
        &self,
        kind: DocKind,
        (from, to): (Option<Micros>, Option<Micros>),
        query: &dyn Query,
        collector: &C,
        searched: impl Fn(&tantivy::SegmentReader) -> bool,
    ) -> tantivy::Result<C::Fruit>
    where
        C: Collector + Sync,
        <C::Child as SegmentCollector>::Fruit: Send,
    {
        let searchers: Vec<&Searcher> = self
            .partitions
            .iter()
            .filter(|p| p.touches(from, to))
            .map(|p| p.searcher(kind))
            .collect();
        let Some(first) = searchers.first() else {
            return collector.merge_fruits(Vec::new());
        };
        let statistics = Statistics(&searchers);
        let scoring = if collector.requires_scoring() {
            EnableScoring::enabled_from_statistics_provider(&statistics, first)
        } else {
            EnableScoring::disabled_from_searcher(first)
        };
        let weight = query.weight(scoring)?;
        let segments: Vec<_> = searchers
            .iter()
            .flat_map(|searcher| searcher.segment_readers())
            .filter(|segment| segment.num_docs() > 0 && searched(segment))
            .collect();
        // Most segments of a long range may lack a rare word: a scorer that
        // matches nothing costs a term lookup, a collector (sort and facet
        // columns) much more, so with words in the query such segments are
        // skipped. Keyword filters alone (bot, channel…) match almost
        // everywhere, so they don't pay the extra scorer.
        let schema = first.schema();
        let mut has_words = false;
        query.query_terms(&mut |term, _| {
            has_words |= matches!(
                schema.get_field_entry(term.field()).field_type(),
                tantivy::schema::FieldType::Str(options)
                    if options.get_indexing_options().is_some_and(|o| o.tokenizer() != "raw")
            );
        });
        let collect = |(ord, segment): (usize, &&tantivy::SegmentReader)| {
            if has_words && weight.scorer(segment, 1.0)?.doc() == tantivy::TERMINATED {
                return Ok(None);
            }
            collector
                .collect_segment(weight.as_ref(), ord as u32, segment)
                .map(Some)
        };
        // A search already on a pool's thread (a live tail's, at low
        // priority) stays there rather than taking the searches' threads.
        let fruits: tantivy::Result<Vec<_>> =
            if segments.len() <= 1 || rayon::current_thread_index().is_some() {
                segments.iter().enumerate().map(collect).collect()
            } else {
                search_pool().install(|| segments.par_iter().enumerate().map(collect).collect())
            };
        collector.merge_fruits(fruits?.into_iter().flatten().collect())
    }

    /// The same view without the partitions none of whose conversation ids
    /// `may_hold` accepts (a search for conversations whose ids are known).
    pub fn holding(&self, may_hold: impl Fn(u64, u64) -> bool) -> IndexView {
        IndexView {
            id: self.id,
            analysis: self.analysis,
            partitions: self
                .partitions
                .iter()
                .filter(|p| p.ids.is_some_and(|(lo, hi)| may_hold(lo, hi)))
                .cloned()
                .collect(),
        }
    }

    /// The segments of every partition, both kinds.
    pub fn segment_ids(&self) -> std::collections::HashSet<tantivy::index::SegmentId> {
        self.partitions
            .iter()
            .flat_map(|p| [&p.conversations, &p.messages])
            .flat_map(|searcher| searcher.segment_readers())
            .map(|segment| segment.segment_id())
            .collect()
    }

    /// The distinct terms of a raw (untokenised) field of `kind`'s documents
    /// starting with `prefix`, across every segment, at most `limit`: `None`
    /// when there are more. Deleted documents' terms may count.
    pub fn terms(
        &self,
        kind: DocKind,
        field: tantivy::schema::Field,
        prefix: &str,
        limit: usize,
    ) -> tantivy::Result<Option<std::collections::BTreeSet<String>>> {
        let mut found = std::collections::BTreeSet::new();
        for segment in self
            .partitions
            .iter()
            .flat_map(|p| p.searcher(kind).segment_readers())
        {
            let index = segment.inverted_index(field)?;
            let mut terms = index.terms().range().ge(prefix.as_bytes()).into_stream()?;
            while terms.advance() {
                let Ok(term) = std::str::from_utf8(terms.key()) else {
                    continue;
                };
                if !term.starts_with(prefix) {
                    break;
                }
                if found.len() == limit && !found.contains(term) {
                    return Ok(None);
                }
                found.insert(term.to_string());
            }
        }
        Ok(Some(found))
    }

    /// The largest value of a u64 fast field over `kind`'s documents (deleted
    /// ones included), from each segment's column statistics: no document is read.
    pub fn max_u64(&self, kind: DocKind, field: &str) -> tantivy::Result<Option<u64>> {
        let mut max = None;
        for segment in self
            .partitions
            .iter()
            .flat_map(|p| p.searcher(kind).segment_readers())
            .filter(|segment| segment.max_doc() > 0)
        {
            let column = segment.fast_fields().u64(field)?;
            max = max.max(Some(column.max_value()));
        }
        Ok(max)
    }

    /// How many `kind` documents hold each of `terms` in `field` (deleted
    /// ones may count until merged away), and how many there are in all.
    pub fn doc_freqs(
        &self,
        kind: DocKind,
        field: Field,
        terms: &[&str],
    ) -> tantivy::Result<(u64, Vec<u64>)> {
        let mut freqs = vec![0u64; terms.len()];
        let mut docs = 0;
        for searcher in self.partitions.iter().map(|p| p.searcher(kind)) {
            docs += searcher.num_docs();
            for (freq, term) in freqs.iter_mut().zip(terms) {
                *freq += searcher.doc_freq(&Term::from_field_text(field, term))?;
            }
        }
        Ok((docs, freqs))
    }
}

/// BM25 statistics over several partitions.
struct Statistics<'a>(&'a [&'a Searcher]);

impl Bm25StatisticsProvider for Statistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        self.0.iter().map(|s| s.total_num_tokens(field)).sum()
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        self.0
            .iter()
            .map(|s| Bm25StatisticsProvider::total_num_docs(*s))
            .sum()
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.0.iter().map(|s| s.doc_freq(term)).sum()
    }
}
