//! The live index: the generation being served, its indexer, and the swap a
//! reindex ends with.
//!
//! Each build of the index lives in its own directory (`index-<n>`) under the
//! data directory; the file `INDEX` names the one being served and is replaced
//! with a rename, so after a crash at any moment the service opens either the
//! old or the new generation, never a half-built one. Generations that are not
//! named are removed at start-up.

use super::{IndexError, IndexSchema, IndexState, Indexer, Recent, SearchIndex};
use crate::jobs::Progress;
use crate::settings::{IndexConfig, SchemaChange};
use crate::store::{Store, tagging::conversation_count};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

const POINTER: &str = "INDEX";

/// The index being served and the thread keeping it up to date.
pub struct LiveIndex {
    data_dir: PathBuf,
    store: Store,
    config: IndexConfig,
    schema: IndexSchema,
    current: RwLock<(SearchIndex, Arc<Indexer>)>,
    /// Held while a reindex runs: one at a time.
    rebuilding: Mutex<()>,
    /// What open live tails share; its indexers hand new messages over.
    recent: Arc<Recent>,
}

/// Changes waiting for the index beyond which ingest counts as outrunning
/// it. At a steady pace the index takes in every refresh interval what came
/// meanwhile: a few dozen changes (conversations written) at 200 messages a
/// second. A flat-out import leaves tens of thousands waiting.
const OUTRUN: u64 = 1_000;

fn generation_name(n: u64) -> String {
    format!("index-{n:04}")
}

/// The generation named by the pointer file, if any.
fn read_pointer(data_dir: &Path) -> Option<String> {
    let name = std::fs::read_to_string(data_dir.join(POINTER)).ok()?;
    let name = name.trim().to_string();
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Points the service at `name`, atomically and durably.
fn write_pointer(data_dir: &Path, name: &str) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{POINTER}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(name.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(POINTER))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Generation directories present in the data directory.
fn generations(data_dir: &Path) -> Vec<(u64, String)> {
    let mut found: Vec<(u64, String)> = std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let n = name.strip_prefix("index-")?.parse().ok()?;
            Some((n, name))
        })
        .collect();
    found.sort();
    found
}

fn next_generation(data_dir: &Path) -> String {
    generation_name(
        generations(data_dir)
            .last()
            .map(|(n, _)| n + 1)
            .unwrap_or(1),
    )
}

/// Removes every generation but `keep` (half-built ones after a crash, old ones after a swap).
fn remove_other_generations(data_dir: &Path, keep: &str) {
    for (_, name) in generations(data_dir) {
        if name != keep
            && let Err(err) = std::fs::remove_dir_all(data_dir.join(&name))
        {
            tracing::warn!(generation = %name, error = %err, "could not remove an old index generation");
        }
    }
}

/// The partition span of `config` in microseconds.
fn span_of(config: &IndexConfig) -> convlog_core::Micros {
    config.partition_span.as_micros() as convlog_core::Micros
}

impl LiveIndex {
    /// Opens the generation the pointer names (creating the first one) and starts its indexer.
    pub fn open(
        data_dir: &Path,
        store: Store,
        config: IndexConfig,
        schema: IndexSchema,
        on_schema_change: SchemaChange,
    ) -> Result<LiveIndex, IndexError> {
        let name = match read_pointer(data_dir) {
            Some(name) if data_dir.join(&name).exists() => name,
            _ => {
                let name = next_generation(data_dir);
                std::fs::create_dir_all(data_dir.join(&name))?;
                write_pointer(data_dir, &name)?;
                name
            }
        };
        remove_other_generations(data_dir, &name);
        let dir = data_dir.join(&name);
        let span = span_of(&config);
        if on_schema_change == SchemaChange::Refuse
            && let Some((found, found_span)) = SearchIndex::built_with(&dir)?
        {
            if found != schema.version {
                return Err(IndexError::SchemaMismatch {
                    found,
                    expected: schema.version,
                });
            }
            if let Some(found) = found_span
                && found != span
            {
                return Err(IndexError::SpanMismatch {
                    found,
                    expected: span,
                });
            }
        }
        // An index of an older schema this binary still serves goes on
        // serving, and indexing, while a reindex builds the current one.
        let older = match SearchIndex::built_with(&dir)? {
            Some((found, Some(found_span)))
                if found != schema.version
                    && found_span == span
                    && on_schema_change == SchemaChange::Rebuild =>
            {
                IndexSchema::older(found)
            }
            _ => None,
        };
        if let Some(older) = &older {
            tracing::warn!(
                generation = %name,
                found = older.version,
                current = schema.version,
                "the index was built with an older schema: it serves searches while a reindex builds the current one"
            );
        }
        let served = older.unwrap_or_else(|| schema.clone());
        let (index, position) = SearchIndex::open(&dir, served, span)?;
        let recent = Arc::new(Recent::default());
        let indexer = Indexer::spawn(
            index.clone(),
            store.clone(),
            config.clone(),
            position,
            store.head(),
            recent.clone(),
        )?;
        tracing::info!(generation = %name, position, "index opened");
        Ok(LiveIndex {
            data_dir: data_dir.to_path_buf(),
            store,
            config,
            schema,
            current: RwLock::new((index, Arc::new(indexer))),
            rebuilding: Mutex::new(()),
            recent,
        })
    }

    /// Whether the index being served was built with an older schema, which a
    /// reindex replaces.
    pub fn outdated(&self) -> bool {
        self.index().schema().version != self.schema.version
    }

    /// The index being served.
    pub fn index(&self) -> SearchIndex {
        self.current.read().expect("index lock").0.clone()
    }

    /// What open live tails share.
    pub fn recent(&self) -> &Arc<Recent> {
        &self.recent
    }

    /// Whether ingest outruns the index (a burst): more than [`OUTRUN`]
    /// changes wait for it.
    pub fn outrun(&self) -> bool {
        let position = self.state().position();
        self.store.head().saturating_sub(position) > OUTRUN
    }

    /// How far the served index is, and whether it is healthy.
    pub fn state(&self) -> Arc<IndexState> {
        self.current.read().expect("index lock").1.state.clone()
    }

    /// Stops the indexer after a last commit.
    pub fn shutdown(&self) {
        let indexer = self.current.read().expect("index lock").1.clone();
        indexer.shutdown();
    }

    /// Builds a new generation from the store while the current one keeps
    /// serving and indexing, then swaps it in. Reports conversations written.
    pub fn reindex(&self, progress: &Progress) -> Result<(), String> {
        let _one_at_a_time = self
            .rebuilding
            .lock()
            .map_err(|_| "a reindex panicked before")?;
        let total = self
            .store
            .read(conversation_count)
            .map_err(|e| e.to_string())?;
        progress.total.store(total, Ordering::Relaxed);
        let name = next_generation(&self.data_dir);
        let dir = self.data_dir.join(&name);
        let result = self.build_and_swap(&name, &dir, progress);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn build_and_swap(&self, name: &str, dir: &Path, progress: &Progress) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let (index, _) = SearchIndex::open(dir, self.schema.clone(), span_of(&self.config))
            .map_err(|e| e.to_string())?;
        let build_config = IndexConfig {
            writer_threads: 0,
            ..self.config.clone()
        };
        let mut cancelled = false;
        let mut position =
            Indexer::catch_up_once(&index, &self.store, &build_config, 0, |_, written| {
                let done = progress
                    .processed
                    .fetch_add(written as u64, Ordering::Relaxed)
                    + written as u64;
                // Conversations that arrive during the build count too: the total grows with them.
                progress.total.fetch_max(done, Ordering::Relaxed);
                cancelled = progress.is_cancelled();
                !cancelled
            })
            .map_err(|e| e.to_string())?;
        if cancelled {
            return Err("cancelled".into());
        }

        // Catch up with what arrived during the build while the old generation still indexes.
        position = Indexer::catch_up_once(&index, &self.store, &self.config, position, |_, _| true)
            .map_err(|e| e.to_string())?;

        if progress.is_cancelled() {
            return Err("cancelled".into());
        }

        // The swap: the old generation keeps serving (no longer updated) while the
        // new one takes the last changes; then one pointer rename and one assignment.
        let old = self
            .current
            .read()
            .map_err(|_| "index lock poisoned")?
            .clone();
        old.1.shutdown();
        let swapped = (|| {
            position =
                Indexer::catch_up_once(&index, &self.store, &self.config, position, |_, _| true)
                    .map_err(|e| e.to_string())?;
            // The last moment a cancel can take effect: after this the new generation is live.
            if progress.is_cancelled() {
                return Err("cancelled".to_string());
            }
            let indexer = Indexer::spawn(
                index.clone(),
                self.store.clone(),
                self.config.clone(),
                position,
                position,
                self.recent.clone(),
            )
            .map_err(|e| e.to_string())?;
            if let Err(err) = write_pointer(&self.data_dir, name) {
                indexer.shutdown();
                return Err(format!("could not switch to the new index: {err}"));
            }
            Ok(indexer)
        })();
        let mut current = self.current.write().map_err(|_| "index lock poisoned")?;
        match swapped {
            Ok(indexer) => *current = (index, Arc::new(indexer)),
            Err(err) => {
                // Keep serving the old generation, with a fresh indexer: nothing is lost.
                let resumed = Indexer::spawn(
                    old.0.clone(),
                    self.store.clone(),
                    self.config.clone(),
                    old.1.state.position(),
                    old.1.state.position(),
                    self.recent.clone(),
                )
                .map_err(|e| e.to_string())?;
                current.1 = Arc::new(resumed);
                return Err(err);
            }
        }
        drop(current);
        tracing::info!(generation = %name, position, "reindexed: new index generation is live");
        remove_other_generations(&self.data_dir, name);
        Ok(())
    }
}
