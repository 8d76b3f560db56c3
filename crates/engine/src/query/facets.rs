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
//!
//! A search with no words and no filters (the default view: a bot's last 24
//! hours) matches every conversation whose first message is in its range, so
//! such documents are counted per distinct value, not per document: each
//! segment's [`Summary`] holds its documents' counts per hour of their first
//! message, and a search adds up the hours its range covers whole. A summary
//! also keeps each hour's best positions in both time orders, so a first page
//! takes its top hits from them too, and the query then leaves those hours
//! out altogether. Only the documents of the partial hours at the edges of the
//! range and those open from the hour before it are visited one by one; those
//! open from earlier come from the summary's list of long conversations.

use super::request::MAX_LIMIT;
use super::top::{SortPosition, Top};
use crate::index::IndexView;
use convlog_core::Micros;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use tantivy::columnar::{BytesColumn, StrColumn};
use tantivy::index::SegmentId;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, SegmentReader, TERMINATED, Term};

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
    /// Id → rank of its name in sorted order; stale while shorter than `names`.
    ranks: Vec<u32>,
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

    fn rank(&mut self) {
        let mut by_name: Vec<u32> = (0..self.names.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        self.ranks = vec![0; by_name.len()];
        for (rank, id) in by_name.into_iter().enumerate() {
            self.ranks[id as usize] = rank as u32;
        }
    }
}

/// The width of a [`Summary`]'s time buckets.
pub const BUCKET: Micros = 3_600_000_000;

/// The whole buckets inside `[from, to)`, as a range of bucket starts; `None`
/// when there is none.
pub fn whole_buckets(from: Option<Micros>, to: Option<Micros>) -> Option<(Micros, Micros)> {
    let lo = from.map_or(Micros::MIN, |from| {
        from.div_euclid(BUCKET)
            .saturating_add(i64::from(from.rem_euclid(BUCKET) != 0))
            * BUCKET
    });
    let hi = to.map_or(Micros::MAX, |to| to.div_euclid(BUCKET) * BUCKET);
    (lo < hi).then_some((lo, hi))
}

/// Counts per time bucket: bucket start → (ordinal, count), ordinals ascending.
type Buckets = BTreeMap<Micros, Vec<(u32, u32)>>;

/// The sort fields (i64 columns) whose best positions a [`Summary`] keeps per bucket.
const RANKED: [&str; 2] = ["last_ts", "first_ts"];

/// How many best positions a [`Summary`] keeps per bucket and sort field: a
/// page's largest limit and the one more that tells whether a next page exists.
pub const RANKED_PER_BUCKET: usize = MAX_LIMIT + 1;

/// One segment's live conversation documents of one bot, counted per hour
/// (bucket) of their first message: how many, per facet field how many have
/// each value, and per sort field of [`RANKED`] the best
/// [`RANKED_PER_BUCKET`] positions (the first page of any search over whole
/// buckets is among them). Deletes only grow in a segment, so the number of
/// deleted documents tells whether a summary is still its segment's.
pub struct Summary {
    deleted: u32,
    totals: BTreeMap<Micros, u64>,
    fields: HashMap<&'static str, Buckets>,
    /// Sort field → bucket → its best positions (`conv_id` as the id), best first.
    best: HashMap<&'static str, BTreeMap<Micros, Vec<SortPosition>>>,
    /// The documents whose conversation lasts a bucket or more, with their
    /// first and last message times: the only ones that can have started a
    /// bucket or more before a range and still be in it.
    long: Vec<(DocId, Micros, Micros)>,
}

impl Summary {
    /// Documents whose first message is in the buckets of `[lo, hi)`.
    pub fn total(&self, (lo, hi): (Micros, Micros)) -> u64 {
        self.totals.range(lo..hi).map(|(_, n)| n).sum()
    }

    /// Adds the counts of `field` in the buckets of `[lo, hi)` to `counts` (by ordinal).
    pub fn add(&self, field: &str, (lo, hi): (Micros, Micros), counts: &mut [u32]) {
        let Some(buckets) = self.fields.get(field) else {
            return;
        };
        for (_, values) in buckets.range(lo..hi) {
            for &(ord, count) in values {
                counts[ord as usize] += count;
            }
        }
    }

    /// The best positions by `sort` of each bucket of `[lo, hi)`, when `sort`
    /// is one of [`RANKED`].
    pub fn best(
        &self,
        sort: &str,
        (lo, hi): (Micros, Micros),
    ) -> Option<impl Iterator<Item = SortPosition> + '_> {
        let buckets = self.best.get(sort)?;
        Some(
            buckets
                .range(lo..hi)
                .flat_map(|(_, best)| best.iter().copied()),
        )
    }

    /// The documents that started before `at - BUCKET` and whose last message
    /// is at or after `at`.
    pub fn open_long_before(&self, at: Micros) -> impl Iterator<Item = DocId> + '_ {
        self.long
            .iter()
            .filter(move |(_, first, last)| *first < at - BUCKET && *last >= at)
            .map(|(doc, _, _)| *doc)
    }

    /// Whether `sort` is one of the fields whose best positions are kept.
    pub fn ranks(sort: &str) -> bool {
        RANKED.contains(&sort)
    }
}

/// The cache; one per search service.
#[derive(Default)]
pub struct FacetColumns {
    columns: Mutex<HashMap<(SegmentId, &'static str), Arc<FacetColumn>>>,
    summaries: Mutex<HashMap<(SegmentId, String), Arc<Summary>>>,
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
        self.summaries
            .lock()
            .expect("facet summaries")
            .retain(|(segment, _), _| alive.contains(segment));
    }

    /// The [`Summary`] of `bot`'s documents in `reader`'s segment with the
    /// counts of `fields`, made by one pass over them when the cached one is
    /// missing, lacks a field or predates a delete.
    pub fn summary(
        &self,
        reader: &SegmentReader,
        bot_field: Field,
        bot: &str,
        fields: &[&'static str],
    ) -> tantivy::Result<Arc<Summary>> {
        let key = (reader.segment_id(), bot.to_string());
        let cached = self
            .summaries
            .lock()
            .expect("facet summaries")
            .get(&key)
            .cloned();
        let mut wanted: Vec<&'static str> = fields.to_vec();
        if let Some(summary) = cached
            && summary.deleted == reader.num_deleted_docs()
        {
            if fields.iter().all(|f| summary.fields.contains_key(f)) {
                return Ok(summary);
            }
            wanted.extend(summary.fields.keys());
        }
        wanted.sort_unstable();
        wanted.dedup();
        let summary = Arc::new(self.summarize(reader, bot_field, bot, &wanted)?);
        let mut summaries = self.summaries.lock().expect("facet summaries");
        if summaries.len() >= MAX_COLUMNS {
            summaries.clear();
        }
        summaries.insert(key, summary.clone());
        Ok(summary)
    }

    fn summarize(
        &self,
        reader: &SegmentReader,
        bot_field: Field,
        bot: &str,
        fields: &[&'static str],
    ) -> tantivy::Result<Summary> {
        let columns = fields
            .iter()
            .map(|field| self.get(reader, field))
            .collect::<tantivy::Result<Vec<_>>>()?;
        let fast = reader.fast_fields();
        let first = fast.i64("first_ts")?;
        let ids = fast.u64("conv_id")?;
        let sorts = RANKED
            .iter()
            .map(|field| fast.i64(field))
            .collect::<tantivy::Result<Vec<_>>>()?;
        let mut totals = BTreeMap::new();
        let mut counts: Vec<BTreeMap<Micros, HashMap<u32, u32>>> =
            vec![BTreeMap::new(); fields.len()];
        let mut best: Vec<BTreeMap<Micros, Top>> = RANKED.iter().map(|_| BTreeMap::new()).collect();
        let last = fast.i64("last_ts")?;
        let mut long = Vec::new();
        let term = Term::from_field_text(bot_field, bot);
        if let Some(mut postings) = reader
            .inverted_index(bot_field)?
            .read_postings(&term, IndexRecordOption::Basic)?
        {
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if !reader.is_deleted(doc)
                    && let Some(ts) = first.first(doc)
                {
                    let bucket = ts.div_euclid(BUCKET) * BUCKET;
                    *totals.entry(bucket).or_insert(0) += 1;
                    if let Some(end) = last.first(doc)
                        && end - ts >= BUCKET
                    {
                        long.push((doc, ts, end));
                    }
                    for (column, counts) in columns.iter().zip(&mut counts) {
                        let bucket = counts.entry(bucket).or_default();
                        for ord in column.column.term_ords(doc) {
                            *bucket.entry(ord as u32).or_insert(0) += 1;
                        }
                    }
                    // Keys and ids as the collector reads them (`rank`).
                    let id = ids.first(doc).unwrap_or(0);
                    for (column, best) in sorts.iter().zip(&mut best) {
                        let key = column.first(doc).unwrap_or(i64::MIN) as f64;
                        best.entry(bucket)
                            .or_insert_with(|| Top::new(RANKED_PER_BUCKET))
                            .push(SortPosition { key, id });
                    }
                }
                doc = postings.advance();
            }
        }
        let fields = fields
            .iter()
            .zip(counts)
            .map(|(field, buckets)| {
                let buckets = buckets
                    .into_iter()
                    .map(|(bucket, values)| {
                        let mut values: Vec<(u32, u32)> = values.into_iter().collect();
                        values.sort_unstable();
                        (bucket, values)
                    })
                    .collect();
                (*field, buckets)
            })
            .collect();
        let best = RANKED
            .into_iter()
            .zip(best)
            .map(|(field, buckets)| {
                let buckets = buckets
                    .into_iter()
                    .map(|(bucket, top)| (bucket, top.into_best()))
                    .collect();
                (field, buckets)
            })
            .collect();
        Ok(Summary {
            deleted: reader.num_deleted_docs(),
            totals,
            fields,
            best,
            long,
        })
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

    /// How many values have ids (all ids are below it).
    pub fn value_count(&self) -> usize {
        self.values.read().expect("facet values").names.len()
    }

    /// Counts by value id (an index into `counts`) → counts by value, without
    /// zeros. Ids are put in name order by their ranks, so the map is built
    /// from sorted input without hashing or comparing names.
    pub fn named(&self, counts: Vec<u64>) -> BTreeMap<String, u64> {
        let stale = {
            let values = self.values.read().expect("facet values");
            values.ranks.len() < values.names.len()
        };
        if stale {
            self.values.write().expect("facet values").rank();
        }
        let values = self.values.read().expect("facet values");
        let mut hits: Vec<(u32, u32, u64)> = counts
            .into_iter()
            .enumerate()
            .filter(|(id, count)| *count > 0 && *id < values.ranks.len())
            .map(|(id, count)| (values.ranks[id], id as u32, count))
            .collect();
        hits.sort_unstable();
        hits.into_iter()
            .map(|(_, id, count)| (values.names[id as usize].clone(), count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_buckets_are_the_hours_inside_the_range() {
        let h = BUCKET;
        assert_eq!(whole_buckets(Some(h), Some(3 * h)), Some((h, 3 * h)));
        assert_eq!(whole_buckets(Some(h + 1), Some(3 * h - 1)), None);
        assert_eq!(
            whole_buckets(Some(h + 1), Some(4 * h - 1)),
            Some((2 * h, 3 * h))
        );
        assert_eq!(whole_buckets(Some(-h - 1), Some(0)), Some((-h, 0)));
        assert_eq!(whole_buckets(None, Some(h)), Some((Micros::MIN, h)));
        assert_eq!(whole_buckets(Some(h), None), Some((h, Micros::MAX)));
        assert_eq!(whole_buckets(Some(h + 5), Some(h + 9)), None);
    }
}
