//! One pass over the matching documents: exact count, facet counts and the top
//! hits after a cursor position.
//!
//! Everything reads fast fields (columns), so a pass costs a few column reads
//! per matching document and no stored-document access. A search with only a
//! time range takes the count and facets of the conversations that started in
//! its whole hours from segment summaries ([`Summarized`]) instead.

use super::facets::{FacetColumn, FacetColumns, RANKED_PER_BUCKET, Summary};
pub use super::top::SortPosition;
use super::top::Top;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::column_index::{MultiValueIndex, OptionalIndex};
use tantivy::columnar::{Column, ColumnIndex};
use tantivy::schema::Field;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// The exact "any message in [from, to)" test for conversation documents.
///
/// The query only checks that the conversation's span overlaps the range (two
/// single-valued columns: cheap); a conversation that sticks out of the range
/// on either side might have all its messages outside it, in a gap, so for
/// those few this looks at every message time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactRange {
    pub from: i64,
    pub to: i64,
}

/// Per-segment columns of [`ExactRange`].
pub struct SegmentRange {
    range: ExactRange,
    first: Column<i64>,
    last: Column<i64>,
    times: Column<i64>,
}

impl SegmentRange {
    fn new(
        range: Option<ExactRange>,
        reader: &SegmentReader,
    ) -> tantivy::Result<Option<SegmentRange>> {
        let Some(range) = range else { return Ok(None) };
        let fast = reader.fast_fields();
        Ok(Some(SegmentRange {
            range,
            first: fast.i64("first_ts")?,
            last: fast.i64("last_ts")?,
            times: fast.i64("ts")?,
        }))
    }

    fn accepts(&self, doc: DocId) -> bool {
        let first = self.first.first(doc).unwrap_or(i64::MIN);
        let last = self.last.first(doc).unwrap_or(i64::MAX);
        if first >= self.range.from && last < self.range.to {
            return true;
        }
        self.times
            .values_for_doc(doc)
            .any(|ts| ts >= self.range.from && ts < self.range.to)
    }
}

fn accepted(range: &Option<SegmentRange>, doc: DocId) -> bool {
    range.as_ref().is_none_or(|range| range.accepts(doc))
}

/// What the result is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortSource {
    /// An i64 fast field (a time), newest first.
    Field(&'static str),
    /// The BM25 score, best first.
    Score,
}

/// Counts, facets and the top hits of one query.
pub struct SearchCollector {
    pub sort: SortSource,
    /// The fast field holding the hit id (`conv_id` or `msg_seq`).
    pub id_field: &'static str,
    pub limit: usize,
    /// Only documents strictly after this position are candidates for the top.
    pub after: Option<SortPosition>,
    /// Facet dimensions to count: (name, fast string field).
    pub facets: Vec<(&'static str, &'static str)>,
    /// The exact time-range test of conversation documents, when there is a range.
    pub exact_range: Option<ExactRange>,
    /// Filtered dimensions tested here instead of in the query, each counted
    /// disjunctively in this same pass (see [`Disjunctive`]).
    pub disjunctive: Vec<Disjunctive>,
    /// Only documents of these conversations (ascending ids), when given.
    pub within: Option<Arc<Vec<u64>>>,
    /// The facet columns of every segment, opened once.
    pub columns: Arc<FacetColumns>,
    /// When the query is only a bot and a time range: the documents whose
    /// first message is in these whole buckets are counted from segment
    /// summaries (see [`super::facets`]), not one by one.
    pub summarized: Option<Summarized>,
}

/// What [`SearchCollector::summarized`] needs: the bot and the whole buckets.
#[derive(Debug, Clone)]
pub struct Summarized {
    pub bot_field: Field,
    pub bot: String,
    /// Bucket starts `[lo, hi)`: see [`super::facets::whole_buckets`].
    pub buckets: (i64, i64),
}

/// Per-segment state of [`Summarized`].
struct SegmentSummary {
    first: Column<i64>,
    buckets: (i64, i64),
    summary: Arc<Summary>,
    /// The facet fields, in the order of [`SearchSegmentCollector::facets`].
    fields: Vec<&'static str>,
    /// The sort field whose best positions the summary gives, when it gives
    /// the top hits of the documents it holds too.
    ranked: Option<&'static str>,
    /// When the query visits only the documents outside the summary (see
    /// [`SearchCollector::unvisited`]): the range's start, before which the
    /// query looks back one bucket only; the summary's long conversations
    /// that started earlier and are still open at it are collected at harvest.
    open_at: Option<i64>,
}

impl SegmentSummary {
    /// Whether the summary counts `doc`.
    fn holds(&self, doc: DocId) -> bool {
        let (lo, hi) = self.buckets;
        self.first.first(doc).is_some_and(|ts| ts >= lo && ts < hi)
    }
}

/// A filtered facet dimension whose filter the collector applies itself.
///
/// A document counts as a hit only if it passes every such filter; it counts
/// for a dimension's facet if it passes all the others: exactly the counts of
/// running the query once more per filtered dimension with that filter left
/// out, in one pass.
#[derive(Debug, Clone)]
pub struct Disjunctive {
    /// The fast string field counted for the facet.
    pub facet: &'static str,
    /// The fast string field the filter tests.
    pub filter: &'static str,
    /// A document passes when it has any of these values.
    pub values: Vec<String>,
}

/// A facet column and the counts of its ordinals in one segment.
type Counting = (Arc<FacetColumn>, Vec<u32>);

/// The result of a [`SearchCollector`].
#[derive(Debug, Default)]
pub struct SearchFruit {
    pub total: u64,
    /// Best first.
    pub top: Vec<SortPosition>,
    /// Per dimension (in the order asked, then those of `disjunctive`): value → count.
    pub facets: Vec<BTreeMap<String, u64>>,
}

/// Per-segment state.
pub struct SearchSegmentCollector {
    sort_column: Option<Column<i64>>,
    id_column: Column<u64>,
    limit: usize,
    after: Option<SortPosition>,
    facets: Vec<Counting>,
    /// Facets of [`SearchSegmentCollector::facets`] counted at harvest from
    /// their column instead of per document (see [`optional_index`]).
    deferred: Vec<bool>,
    /// The documents that matched, when a facet is deferred: a bit per document.
    matched: Vec<u64>,
    /// Per disjunctive dimension: its filter column and accepted ordinals (sorted).
    filters: Vec<(Arc<FacetColumn>, Vec<u64>)>,
    /// Per disjunctive dimension: its facet column and counts.
    disjunctive: Vec<Counting>,
    range: Option<SegmentRange>,
    /// The `conv_id` column and the conversations documents must belong to.
    within: Option<(Column<u64>, Arc<Vec<u64>>)>,
    summarized: Option<SegmentSummary>,
    total: u64,
    top: Top,
}

/// A facet column with its zeroed counts (empty when the segment has no values:
/// counting then skips it).
fn counting(
    columns: &FacetColumns,
    reader: &SegmentReader,
    field: &'static str,
) -> tantivy::Result<Counting> {
    let column = columns.get(reader, field)?;
    let terms = column.ids.len();
    Ok((column, vec![0u32; terms]))
}

/// The optional index of a column whose documents don't all have a value (at
/// most one each, or several with a start index by rank), if it has one.
/// Reading such a column per document pays a rank lookup in that index each
/// time: most of a frequent word's cost, profiled. Its values are better read
/// in one sweep over the documents that have any, keeping those that matched.
fn optional_index(column: &FacetColumn) -> Option<&OptionalIndex> {
    match &column.column.ords().index {
        ColumnIndex::Optional(optional) => Some(optional),
        ColumnIndex::Multivalued(MultiValueIndex::MultiValueIndexV2(multi)) => {
            Some(&multi.optional_index)
        }
        _ => None,
    }
}

/// Counts a deferred column's values over the matched documents, by whichever
/// is shorter: a sweep over the documents with values, or the matched ones.
fn count_deferred((column, counts): &mut Counting, matched: &[u64], total: u64) {
    let ords = column.column.ords();
    let Some(optional) = optional_index(column) else {
        return;
    };
    if total.saturating_mul(8) < u64::from(optional.num_non_nulls()) {
        for doc in set_bits(matched) {
            for ord in column.column.term_ords(doc) {
                counts[ord as usize] += 1;
            }
        }
        return;
    }
    let hit = |doc: u32| matched[doc as usize / 64] & (1 << (doc % 64)) != 0;
    let starts = match &ords.index {
        ColumnIndex::Multivalued(MultiValueIndex::MultiValueIndexV2(multi)) => {
            Some(&multi.start_index_column)
        }
        _ => None,
    };
    for (rank, doc) in optional.iter_non_null_docs().enumerate() {
        if !hit(doc) {
            continue;
        }
        let rank = rank as u32;
        let values = match starts {
            Some(starts) => starts.get_val(rank)..starts.get_val(rank + 1),
            None => rank..rank + 1,
        };
        for value in values {
            counts[ords.values.get_val(value) as usize] += 1;
        }
    }
}

/// The positions of the set bits, ascending; empty words cost one test each.
fn set_bits(words: &[u64]) -> impl Iterator<Item = u32> + '_ {
    words.iter().enumerate().flat_map(|(word, &bits)| {
        let mut rest = bits;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                word as u32 * 64 + bit
            })
        })
    })
}

fn count_facet((column, counts): &mut Counting, doc: DocId) {
    if counts.is_empty() {
        return;
    }
    for ord in column.column.term_ords(doc) {
        counts[ord as usize] += 1;
    }
}

/// The counts of one segment by value id.
fn by_value((column, counts): Counting) -> Vec<(u32, u64)> {
    counts
        .into_iter()
        .enumerate()
        .filter(|(_, count)| *count > 0)
        .map(|(ord, count)| (column.ids[ord], count as u64))
        .collect()
}

impl SearchCollector {
    /// The sort field whose best positions per bucket the summaries give: on
    /// a first page sorted by a time they hold the top hits of the documents
    /// they count.
    fn ranked(&self) -> Option<&'static str> {
        match self.sort {
            SortSource::Field(field)
                if self.after.is_none()
                    && self.limit <= RANKED_PER_BUCKET
                    && Summary::ranks(field) =>
            {
                Some(field)
            }
            _ => None,
        }
    }

    /// The buckets whose documents this collector takes entirely from
    /// summaries (counts, facets and top hits, or no top hits asked): the
    /// query may leave them out, so the search doesn't visit them.
    pub fn unvisited(&self) -> Option<(i64, i64)> {
        let summarized = self.summarized.as_ref()?;
        (self.limit == 0 || self.ranked().is_some()).then_some(summarized.buckets)
    }
}

impl Collector for SearchCollector {
    type Fruit = SearchFruit;
    type Child = SearchSegmentCollector;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SearchSegmentCollector> {
        let fast = reader.fast_fields();
        let sort_column = match self.sort {
            SortSource::Field(name) => Some(fast.i64(name)?),
            SortSource::Score => None,
        };
        let mut facets = Vec::with_capacity(self.facets.len());
        for (_, field) in &self.facets {
            facets.push(counting(&self.columns, reader, field)?);
        }
        let deferred: Vec<bool> = facets
            .iter()
            .map(|(column, counts)| !counts.is_empty() && optional_index(column).is_some())
            .collect();
        let matched = if deferred.contains(&true) {
            vec![0u64; (reader.max_doc() as usize).div_ceil(64)]
        } else {
            Vec::new()
        };
        let mut filters = Vec::with_capacity(self.disjunctive.len());
        let mut disjunctive = Vec::with_capacity(self.disjunctive.len());
        for dimension in &self.disjunctive {
            let column = self.columns.get(reader, dimension.filter)?;
            let ords = column.ords_of(&self.columns.ids_of(&dimension.values));
            filters.push((column, ords));
            disjunctive.push(counting(&self.columns, reader, dimension.facet)?);
        }
        Ok(SearchSegmentCollector {
            sort_column,
            id_column: fast.u64(self.id_field)?,
            limit: self.limit,
            after: self.after,
            facets,
            deferred,
            matched,
            filters,
            disjunctive,
            range: SegmentRange::new(self.exact_range, reader)?,
            within: match &self.within {
                Some(ids) => Some((fast.u64("conv_id")?, ids.clone())),
                None => None,
            },
            summarized: match &self.summarized {
                Some(summarized) => {
                    let fields: Vec<&'static str> = self.facets.iter().map(|(_, f)| *f).collect();
                    Some(SegmentSummary {
                        first: fast.i64("first_ts")?,
                        buckets: summarized.buckets,
                        summary: self.columns.summary(
                            reader,
                            summarized.bot_field,
                            &summarized.bot,
                            &fields,
                        )?,
                        fields,
                        ranked: self.ranked(),
                        open_at: self
                            .unvisited()
                            .and(self.exact_range)
                            .map(|range| range.from),
                    })
                }
                None => None,
            },
            total: 0,
            top: Top::new(self.limit),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.sort == SortSource::Score
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<SearchFruit> {
        let mut total = 0;
        // Counts by value id: ids are dense, so a vector indexed by them.
        let values = self.columns.value_count();
        let mut facets: Vec<Vec<u64>> =
            vec![Vec::new(); self.facets.len() + self.disjunctive.len()];
        let mut top = Vec::new();
        for fruit in fruits {
            total += fruit.total;
            top.extend(fruit.top);
            for (into, from) in facets.iter_mut().zip(fruit.facets) {
                for (value, count) in from {
                    if into.is_empty() {
                        into.resize(values, 0);
                    }
                    into[value as usize] += count;
                }
            }
        }
        top.sort_by(|a, b| a.order(b));
        top.truncate(self.limit);
        Ok(SearchFruit {
            total,
            top,
            facets: facets
                .into_iter()
                .map(|counts| self.columns.named(counts))
                .collect(),
        })
    }
}

/// What one segment found.
pub struct SegmentFruit {
    total: u64,
    top: Vec<SortPosition>,
    /// Per dimension: (value id, count).
    facets: Vec<Vec<(u32, u64)>>,
}

impl SegmentCollector for SearchSegmentCollector {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(summarized) = &self.summarized
            && summarized.holds(doc)
        {
            if summarized.ranked.is_none() {
                self.rank(doc, score);
            }
        } else if self.count(doc) {
            self.rank(doc, score);
        }
    }

    fn harvest(mut self) -> SegmentFruit {
        if let Some(summarized) = &self.summarized
            && let Some(at) = summarized.open_at
        {
            let summary = summarized.summary.clone();
            for doc in summary.open_long_before(at) {
                if self.count(doc) {
                    self.rank(doc, 0.0);
                }
            }
        }
        for (facet, deferred) in self.facets.iter_mut().zip(&self.deferred) {
            if *deferred {
                count_deferred(facet, &self.matched, self.total);
            }
        }
        if let Some(summarized) = &self.summarized {
            self.total += summarized.summary.total(summarized.buckets);
            for ((_, counts), field) in self.facets.iter_mut().zip(&summarized.fields) {
                summarized.summary.add(field, summarized.buckets, counts);
            }
            if self.limit > 0
                && let Some(best) = summarized
                    .ranked
                    .and_then(|sort| summarized.summary.best(sort, summarized.buckets))
            {
                for position in best {
                    self.top.push(position);
                }
            }
        }
        let facets = self
            .facets
            .into_iter()
            .chain(self.disjunctive)
            .map(by_value)
            .collect();
        SegmentFruit {
            total: self.total,
            top: self.top.into_best(),
            facets,
        }
    }
}

impl SearchSegmentCollector {
    /// Tests `doc` against what the query left to the collector and counts it
    /// (total and facets) if it passes; whether it did.
    fn count(&mut self, doc: DocId) -> bool {
        if !accepted(&self.range, doc) {
            return false;
        }
        if let Some((column, ids)) = &self.within
            && column
                .first(doc)
                .is_none_or(|id| ids.binary_search(&id).is_err())
        {
            return false;
        }
        if !self.filters.is_empty() {
            // The one dimension whose filter the document fails, if exactly one.
            let mut failed = None;
            for (at, (column, ords)) in self.filters.iter().enumerate() {
                let passes = !ords.is_empty()
                    && column
                        .column
                        .term_ords(doc)
                        .any(|ord| ords.binary_search(&ord).is_ok());
                if !passes {
                    if failed.is_some() {
                        return false;
                    }
                    failed = Some(at);
                }
            }
            if let Some(at) = failed {
                count_facet(&mut self.disjunctive[at], doc);
                return false;
            }
            for facet in &mut self.disjunctive {
                count_facet(facet, doc);
            }
        }
        self.total += 1;
        for (facet, deferred) in self.facets.iter_mut().zip(&self.deferred) {
            if !deferred {
                count_facet(facet, doc);
            }
        }
        if !self.matched.is_empty() {
            self.matched[doc as usize / 64] |= 1 << (doc % 64);
        }
        true
    }

    /// Keeps `doc` among the top hits if it is one.
    fn rank(&mut self, doc: DocId, score: Score) {
        if self.limit == 0 {
            return;
        }
        let key = match &self.sort_column {
            Some(column) => column.first(doc).unwrap_or(i64::MIN) as f64,
            None => score as f64,
        };
        // Most documents of a frequent word can't be among the best: this
        // skips their id read.
        if self.top.below_bar(key) {
            return;
        }
        let position = SortPosition {
            key,
            id: self.id_column.first(doc).unwrap_or(0),
        };
        if let Some(after) = &self.after
            && after.order(&position) != Ordering::Less
        {
            return;
        }
        self.top.push(position);
    }
}

/// Collects the id (a u64 fast field) of every matching document.
pub struct IdCollector {
    pub id_field: &'static str,
    pub exact_range: Option<ExactRange>,
}

/// Per-segment state of [`IdCollector`].
pub struct IdSegmentCollector {
    column: Column<u64>,
    range: Option<SegmentRange>,
    ids: Vec<u64>,
}

impl Collector for IdCollector {
    type Fruit = Vec<u64>;
    type Child = IdSegmentCollector;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<IdSegmentCollector> {
        Ok(IdSegmentCollector {
            column: reader.fast_fields().u64(self.id_field)?,
            range: SegmentRange::new(self.exact_range, reader)?,
            ids: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut ids: Vec<u64> = fruits.into_iter().flatten().collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

impl SegmentCollector for IdSegmentCollector {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if !accepted(&self.range, doc) {
            return;
        }
        if let Some(id) = self.column.first(doc) {
            self.ids.push(id);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_bits_lists_every_set_bit_in_order() {
        let words = [0b1001u64, 0, 1 << 63, u64::MAX];
        let bits: Vec<u32> = set_bits(&words).collect();
        let mut wanted = vec![0, 3, 191];
        wanted.extend(192..256);
        assert_eq!(bits, wanted);
    }
}
