//! Facet columns, opened once per segment and shared by every search.
//!
//! Counting a facet in a segment counts its term ordinals; turning ordinals
//! into values reads the segment's dictionary, and opening the column reads
//! its dictionary's index. Paid per search and per segment, that grows with
//! the number of segments a search touches (every partition in its range)
//! rather than with the values it counts. So each (segment, field) column is
//! opened once, with its ordinals mapped to ids of values shared by all
//! segments: a search counts ordinals, adds the counts up by value id, and
//! names the ids with values once at the end.

use crate::index::IndexView;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tantivy::SegmentReader;
use tantivy::columnar::{BytesColumn, StrColumn};
use tantivy::index::SegmentId;

/// Columns kept before the cache starts over (a backstop: [`FacetColumns::follow`]
/// drops the columns of segments the index no longer has).
const MAX_COLUMNS: usize = 16_384;

/// A segment's column of one string field, its ordinals mapped to value ids.
pub struct FacetColumn {
    pub column: StrColumn,
    /// Term ordinal → value id.
    pub ids: Vec<u32>,
}

impl FacetColumn {
    /// The ordinals of the values whose ids are in `wanted` (sorted).
    pub fn ords_of(&self, wanted: &[u32]) -> Vec<u64> {
        self.ids
            .iter()
            .enumerate()
            .filter(|(_, id)| wanted.contains(id))
            .map(|(ord, _)| ord as u64)
            .collect()
    }
}

/// Every value seen in a facet field, each with an id.
#[derive(Default)]
struct Values {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Values {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }
}

/// The cache; one per search service.
#[derive(Default)]
pub struct FacetColumns {
    columns: Mutex<HashMap<(SegmentId, &'static str), Arc<FacetColumn>>>,
    values: RwLock<Values>,
    /// The newest index view the columns were pruned for.
    followed: Mutex<u64>,
}

impl FacetColumns {
    /// Keeps only the columns of segments `view` has, once per newer view: a
    /// column holds its segment's files open, so merged-away segments must go.
    pub fn follow(&self, view: &IndexView) {
        let mut followed = self.followed.lock().expect("followed view");
        if view.id <= *followed {
            return;
        }
        *followed = view.id;
        let alive = view.segment_ids();
        self.columns
            .lock()
            .expect("facet columns")
            .retain(|(segment, _), _| alive.contains(segment));
    }

    /// The column of `field` in `reader`'s segment (empty when it has none).
    pub fn get(
        &self,
        reader: &SegmentReader,
        field: &'static str,
    ) -> tantivy::Result<Arc<FacetColumn>> {
        let key = (reader.segment_id(), field);
        if let Some(column) = self.columns.lock().expect("facet columns").get(&key) {
            return Ok(column.clone());
        }
        let column = reader
            .fast_fields()
            .str(field)?
            .unwrap_or_else(|| StrColumn::wrap(BytesColumn::empty(reader.max_doc())));
        let mut ids = Vec::with_capacity(column.num_terms());
        let mut terms = column.dictionary().stream()?;
        {
            let mut values = self.values.write().expect("facet values");
            while terms.advance() {
                ids.push(values.intern(&String::from_utf8_lossy(terms.key())));
            }
        }
        let column = Arc::new(FacetColumn { column, ids });
        let mut columns = self.columns.lock().expect("facet columns");
        if columns.len() >= MAX_COLUMNS {
            columns.clear();
        }
        columns.insert(key, column.clone());
        Ok(column)
    }

    /// The ids of these values, for the ones seen (sorted).
    pub fn ids_of(&self, names: &[String]) -> Vec<u32> {
        let values = self.values.read().expect("facet values");
        let mut ids: Vec<u32> = names
            .iter()
            .filter_map(|name| values.ids.get(name).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Counts by value id → counts by value.
    pub fn named(&self, counts: HashMap<u32, u64>) -> HashMap<String, u64> {
        let values = self.values.read().expect("facet values");
        counts
            .into_iter()
            .filter_map(|(id, count)| Some((values.names.get(id as usize)?.clone(), count)))
            .collect()
    }
}
