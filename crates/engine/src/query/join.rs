//! Conversation text answered from message documents.
//!
//! A conversation matches a word when any of its messages has it, and a phrase
//! when one message has it. Conversation documents carry no text (so a new
//! message or a tag never re-indexes a conversation's text): each word or phrase
//! of `q` is looked up once in the message documents, the conversations of the
//! messages it matches are gathered into a [`ConvSet`], the sets are combined by
//! `q`'s `AND`/`OR`/`NOT` ([`evaluate`]), and the conversation query keeps the
//! documents whose `conv_id` is in the result ([`ConvSetQuery`]).
//!
//! A set is a bitmap over conversation ids. Ids are handed out in creation
//! order, so those of a time range are nearly contiguous: the bitmap of a
//! 30-day search at 10M messages is about 100 KiB. With relevance, each
//! conversation scores the sum of the BM25 scores of its messages that matched,
//! over every word and phrase.

use crate::index::IndexView;
use convlog_querylang::QueryAst;
use std::borrow::Cow;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, SegmentOrdinal, SegmentReader, TERMINATED, Term};

/// The id field both kinds of document carry.
const CONV_ID: &str = "conv_id";
/// What looking up one id's postings costs, in reads of the id column.
const LOOKUP_COST: u64 = 16;

/// A set of conversation ids, with a score per conversation when relevance is asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvSet {
    /// `words[0]` holds ids `64 * first_word ..`.
    first_word: u64,
    words: Vec<u64>,
    /// One per bit of `words`, or empty (no scores).
    scores: Vec<f32>,
}

impl ConvSet {
    /// An empty set covering the ids `min..=max`, with room for scores if `scored`.
    fn covering(min: u64, max: u64, scored: bool) -> ConvSet {
        if max < min {
            return ConvSet::default();
        }
        let first_word = min / 64;
        let len = (max / 64 - first_word + 1) as usize;
        ConvSet {
            first_word,
            words: vec![0; len],
            scores: if scored {
                vec![0.0; len * 64]
            } else {
                Vec::new()
            },
        }
    }

    /// The word holding `id`'s bit, if the set covers it.
    fn slot(&self, id: u64) -> Option<usize> {
        let word = (id / 64).checked_sub(self.first_word)? as usize;
        (word < self.words.len()).then_some(word)
    }

    fn insert(&mut self, id: u64, score: f32) {
        if let Some(word) = self.slot(id) {
            self.words[word] |= 1 << (id % 64);
            if !self.scores.is_empty() {
                self.scores[(id - self.first_word * 64) as usize] += score;
            }
        }
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        self.slot(id)
            .is_some_and(|word| self.words[word] & (1 << (id % 64)) != 0)
    }

    /// The score of `id` (0 without scores or when absent).
    pub fn score(&self, id: u64) -> f32 {
        match self.slot(id) {
            Some(_) if !self.scores.is_empty() => self.scores[(id - self.first_word * 64) as usize],
            _ => 0.0,
        }
    }

    /// Whether any id in `min..=max` may be in the set.
    pub fn overlaps(&self, min: u64, max: u64) -> bool {
        let end = self.first_word + self.words.len() as u64;
        !self.words.is_empty() && min / 64 < end && max / 64 >= self.first_word
    }

    /// The global indexes of the words that hold `min..=max`, clipped to the set.
    fn words_between(&self, min: u64, max: u64) -> std::ops::Range<u64> {
        (min / 64).max(self.first_word)..(max / 64 + 1).min(self.end())
    }

    /// About how many ids of `min..=max` the set holds (it counts whole words).
    fn count_near(&self, min: u64, max: u64) -> u64 {
        self.words_between(min, max)
            .map(|at| u64::from(self.word(at).count_ones()))
            .sum()
    }

    /// The ids of `min..=max` in the set, ascending.
    fn ids_between(&self, min: u64, max: u64) -> impl Iterator<Item = u64> + '_ {
        self.words_between(min, max)
            .flat_map(move |at| {
                let mut word = self.word(at);
                std::iter::from_fn(move || {
                    (word != 0).then(|| {
                        let bit = u64::from(word.trailing_zeros());
                        word &= word - 1;
                        at * 64 + bit
                    })
                })
            })
            .filter(move |id| (min..=max).contains(id))
    }

    /// The word of global index `at` (0 outside the set).
    fn word(&self, at: u64) -> u64 {
        at.checked_sub(self.first_word)
            .and_then(|i| self.words.get(i as usize))
            .copied()
            .unwrap_or(0)
    }

    fn score_at(&self, at: u64, bit: u64) -> f32 {
        if self.scores.is_empty() {
            return 0.0;
        }
        at.checked_sub(self.first_word)
            .filter(|&i| i < self.words.len() as u64)
            .map_or(0.0, |i| self.scores[(i * 64 + bit) as usize])
    }

    /// The words `from..to` (global indexes) of `combine(self, other)`, scores summed.
    fn combined(&self, other: &ConvSet, from: u64, to: u64, combine: fn(u64, u64) -> u64) -> Self {
        let scored = !self.scores.is_empty() || !other.scores.is_empty();
        let len = to.saturating_sub(from) as usize;
        let mut out = ConvSet {
            first_word: from,
            words: Vec::with_capacity(len),
            scores: if scored {
                vec![0.0; len * 64]
            } else {
                Vec::new()
            },
        };
        for at in from..to {
            let mut word = combine(self.word(at), other.word(at));
            out.words.push(word);
            if scored {
                while word != 0 {
                    let bit = u64::from(word.trailing_zeros());
                    word &= word - 1;
                    out.scores[((at - from) * 64 + bit) as usize] =
                        self.score_at(at, bit) + other.score_at(at, bit);
                }
            }
        }
        out
    }

    fn end(&self) -> u64 {
        self.first_word + self.words.len() as u64
    }

    /// Conversations in both.
    fn and(&self, other: &ConvSet) -> ConvSet {
        let from = self.first_word.max(other.first_word);
        self.combined(other, from, self.end().min(other.end()), |a, b| a & b)
    }

    /// Conversations in either.
    fn or(&self, other: &ConvSet) -> ConvSet {
        if self.words.is_empty() {
            return other.clone();
        }
        if other.words.is_empty() {
            return self.clone();
        }
        let from = self.first_word.min(other.first_word);
        self.combined(other, from, self.end().max(other.end()), |a, b| a | b)
    }

    /// Conversations in `self` and not in `other` (scores of `self`).
    fn and_not(&self, other: &ConvSet) -> ConvSet {
        let mut out = self.clone();
        for (i, word) in out.words.iter_mut().enumerate() {
            *word &= !other.word(self.first_word + i as u64);
        }
        out
    }

    /// The union of the sets segments found: one allocation over all their ids.
    fn union_all(parts: Vec<ConvSet>) -> ConvSet {
        let parts: Vec<ConvSet> = parts.into_iter().filter(|p| !p.words.is_empty()).collect();
        let (Some(from), Some(to)) = (
            parts.iter().map(|p| p.first_word).min(),
            parts.iter().map(ConvSet::end).max(),
        ) else {
            return ConvSet::default();
        };
        let scored = parts.iter().any(|p| !p.scores.is_empty());
        let mut out = ConvSet::covering(from * 64, to * 64 - 1, scored);
        // In segment order, so sums of scores come out the same every time.
        for part in parts {
            let offset = (part.first_word - from) as usize;
            for (i, word) in part.words.iter().enumerate() {
                out.words[offset + i] |= word;
            }
            for (i, score) in part.scores.iter().enumerate() {
                out.scores[offset * 64 + i] += score;
            }
        }
        out
    }
}

/// What the text of a conversation search keeps: the conversations in a set, or those not in it.
#[derive(Debug, Clone)]
pub enum ConvText {
    /// No text in the search.
    Any,
    In(Arc<ConvSet>),
    NotIn(Arc<ConvSet>),
}

impl ConvText {
    /// The partitions of `index` a conversation search with this text needs:
    /// with `In`, only those whose conversation ids the set may hold (a rare
    /// word opens the few partitions it was found in).
    pub fn view<'a>(&self, index: &'a IndexView) -> Cow<'a, IndexView> {
        match self {
            ConvText::In(set) => Cow::Owned(index.holding(|lo, hi| set.overlaps(lo, hi))),
            ConvText::Any | ConvText::NotIn(_) => Cow::Borrowed(index),
        }
    }
}

/// A set, or the complement of one (`NOT word` matches conversations without the word).
struct Signed {
    set: ConvSet,
    negated: bool,
}

/// Combines the sets of `ast`'s words and phrases, each found by `leaf`, by
/// `ast`'s operators. `leaf` gets a `Term` node.
pub fn evaluate<E>(
    ast: &QueryAst,
    leaf: &mut impl FnMut(&QueryAst) -> Result<ConvSet, E>,
) -> Result<ConvText, E> {
    let signed = signed(ast, leaf)?;
    let set = Arc::new(signed.set);
    Ok(if signed.negated {
        ConvText::NotIn(set)
    } else {
        ConvText::In(set)
    })
}

fn signed<E>(
    ast: &QueryAst,
    leaf: &mut impl FnMut(&QueryAst) -> Result<ConvSet, E>,
) -> Result<Signed, E> {
    Ok(match ast {
        QueryAst::Term { .. } | QueryAst::Field { .. } => Signed {
            set: leaf(ast)?,
            negated: false,
        },
        QueryAst::Not(inner) => {
            let inner = signed(inner, leaf)?;
            Signed {
                set: inner.set,
                negated: !inner.negated,
            }
        }
        QueryAst::And(children) => {
            let children = children
                .iter()
                .map(|child| signed(child, leaf))
                .collect::<Result<Vec<_>, E>>()?;
            all_of(children)
        }
        // a OR b = NOT (NOT a AND NOT b)
        QueryAst::Or(children) => {
            let children = children
                .iter()
                .map(|child| {
                    signed(child, leaf).map(|s| Signed {
                        set: s.set,
                        negated: !s.negated,
                    })
                })
                .collect::<Result<Vec<_>, E>>()?;
            let all = all_of(children);
            Signed {
                set: all.set,
                negated: !all.negated,
            }
        }
    })
}

/// The conversations every one of `children` keeps: the positive sets
/// intersected, less the union of the negated ones; or, with no positive
/// set, the complement of that union.
fn all_of(children: Vec<Signed>) -> Signed {
    let mut positive: Option<ConvSet> = None;
    let mut excluded = ConvSet::default();
    for child in children {
        if child.negated {
            excluded = excluded.or(&child.set);
        } else {
            positive = Some(match positive {
                None => child.set,
                Some(set) => set.and(&child.set),
            });
        }
    }
    match positive {
        Some(set) => Signed {
            set: set.and_not(&excluded),
            negated: false,
        },
        None => Signed {
            set: excluded,
            negated: true,
        },
    }
}

/// Gathers the conversations of the message documents a query matches, with
/// the sum of their scores when the collector is scoring.
pub struct ConvCollector {
    pub scored: bool,
}

/// Per-segment state of [`ConvCollector`].
pub struct ConvSegmentCollector {
    column: Column<u64>,
    set: ConvSet,
}

impl Collector for ConvCollector {
    type Fruit = ConvSet;
    type Child = ConvSegmentCollector;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<ConvSegmentCollector> {
        let column = reader.fast_fields().u64(CONV_ID)?;
        let set = ConvSet::covering(column.min_value(), column.max_value(), self.scored);
        Ok(ConvSegmentCollector { column, set })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<ConvSet>) -> tantivy::Result<ConvSet> {
        Ok(ConvSet::union_all(fruits))
    }
}

impl SegmentCollector for ConvSegmentCollector {
    type Fruit = ConvSet;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(id) = self.column.first(doc) {
            self.set.insert(id, score);
        }
    }

    fn harvest(self) -> ConvSet {
        self.set
    }
}

/// Matches the conversation documents whose `conv_id` is in a set, scoring each with its score there.
#[derive(Debug, Clone)]
pub struct ConvSetQuery(pub Arc<ConvSet>);

impl Query for ConvSetQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ConvSetWeight {
            set: self.0.clone(),
            scored: scoring.is_scoring_enabled(),
        }))
    }
}

struct ConvSetWeight {
    set: Arc<ConvSet>,
    scored: bool,
}

impl Weight for ConvSetWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let column = reader.fast_fields().u64(CONV_ID)?;
        let (min, max) = (column.min_value(), column.max_value());
        let near = self.set.count_near(min, max);
        if near == 0 {
            return Ok(Box::new(EmptyScorer));
        }
        let mut docs = Vec::new();
        if near.saturating_mul(LOOKUP_COST) < u64::from(reader.max_doc()) {
            // A few conversations (a rare word): each through its id's postings.
            let field = reader.schema().get_field(CONV_ID)?;
            let inverted = reader.inverted_index(field)?;
            for id in self.set.ids_between(min, max) {
                let term = Term::from_field_u64(field, id);
                if let Some(mut postings) =
                    inverted.read_postings(&term, IndexRecordOption::Basic)?
                {
                    while postings.doc() != TERMINATED {
                        docs.push(postings.doc());
                        postings.advance();
                    }
                }
            }
            docs.sort_unstable();
        } else {
            // Many: one pass over the segment's ids (conversation segments are
            // small: a document per conversation, no text).
            docs.extend(
                (0..reader.max_doc())
                    .filter(|&doc| column.first(doc).is_some_and(|id| self.set.contains(id))),
            );
        }
        let scores = if self.scored {
            docs.iter()
                .map(|&doc| column.first(doc).map_or(0.0, |id| self.set.score(id)) * boost)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Box::new(ListScorer {
            docs,
            scores,
            at: 0,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let column = reader.fast_fields().u64(CONV_ID)?;
        let score = column.first(doc).map_or(0.0, |id| self.set.score(id));
        Ok(Explanation::new(
            "sum of the scores of the conversation's matching messages",
            score,
        ))
    }
}

/// A scorer over a sorted list of documents.
struct ListScorer {
    docs: Vec<DocId>,
    /// Per document, or empty when not scoring.
    scores: Vec<Score>,
    at: usize,
}

impl DocSet for ListScorer {
    fn advance(&mut self) -> DocId {
        self.at += 1;
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc() < target {
            self.at += self.docs[self.at..].partition_point(|&doc| doc < target);
        }
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.docs.get(self.at).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        self.docs.len() as u32
    }
}

impl Scorer for ListScorer {
    fn score(&mut self) -> Score {
        self.scores.get(self.at).copied().unwrap_or(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> ConvSet {
        let mut set =
            ConvSet::covering(*ids.iter().min().unwrap(), *ids.iter().max().unwrap(), true);
        for &id in ids {
            set.insert(id, id as f32);
        }
        set
    }

    fn ids(set: &ConvSet) -> Vec<u64> {
        (0..1000).filter(|&id| set.contains(id)).collect()
    }

    #[test]
    fn sets_combine_across_unaligned_ranges() {
        let a = set(&[3, 70, 200, 640]);
        let b = set(&[70, 130, 640, 900]);
        assert_eq!(ids(&a.and(&b)), vec![70, 640]);
        assert_eq!(ids(&a.or(&b)), vec![3, 70, 130, 200, 640, 900]);
        assert_eq!(ids(&a.and_not(&b)), vec![3, 200]);
        assert_eq!(a.and(&b).score(640), 1280.0);
        assert_eq!(a.or(&b).score(130), 130.0);
        assert_eq!(
            a.ids_between(60, 640).collect::<Vec<_>>(),
            vec![70, 200, 640]
        );
        assert_eq!(a.ids_between(641, 5000).count(), 0);
        assert_eq!(a.count_near(0, 63), 1);
        assert_eq!(ids(&a.and(&set(&[950]))), Vec::<u64>::new());
        let union = ConvSet::union_all(vec![set(&[900]), ConvSet::default(), set(&[3, 70])]);
        assert_eq!(ids(&union), vec![3, 70, 900]);
        assert_eq!(union.score(900), 900.0);
    }

    #[test]
    fn the_query_finds_a_few_ids_through_postings_and_many_through_the_column() {
        use tantivy::collector::DocSetCollector;
        use tantivy::schema::{FAST, INDEXED, Schema};
        let mut schema = Schema::builder();
        let conv_id = schema.add_u64_field(CONV_ID, INDEXED | FAST);
        let index = tantivy::Index::create_in_ram(schema.build());
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        for id in 1000..1200u64 {
            writer.add_document(tantivy::doc!(conv_id => id)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let found = |ids: &[u64]| -> Vec<u64> {
            let docs = searcher
                .search(&ConvSetQuery(Arc::new(set(ids))), &DocSetCollector)
                .unwrap();
            let column = searcher
                .segment_reader(0)
                .fast_fields()
                .u64(CONV_ID)
                .unwrap();
            let mut found: Vec<u64> = docs
                .into_iter()
                .map(|address| column.first(address.doc_id).unwrap())
                .collect();
            found.sort_unstable();
            found
        };
        // 3 ids of 200 documents: postings; 150: the column.
        assert_eq!(
            found(&[999, 1003, 1100, 1199, 1500]),
            vec![1003, 1100, 1199]
        );
        let many: Vec<u64> = (1000..1150).collect();
        assert_eq!(found(&many), many);
        assert_eq!(found(&[5, 7]), Vec::<u64>::new());
    }

    #[test]
    fn operators_follow_boolean_logic_over_conversations() {
        // Words a, b, c in conversations 1..=6.
        let words = |word: &str| match word {
            "a" => vec![1, 2, 3],
            "b" => vec![2, 3, 4],
            _ => vec![3, 5],
        };
        let universe: Vec<u64> = (1..=6).collect();
        let cases = [
            ("a b", vec![2, 3]),
            ("a -b", vec![1]),
            ("-a", vec![4, 5, 6]),
            ("a OR c", vec![1, 2, 3, 5]),
            ("a OR -b", vec![1, 2, 3, 5, 6]),
            ("-a -c", vec![4, 6]),
            ("(a OR c) -b", vec![1, 5]),
        ];
        for (q, expected) in cases {
            let ast = convlog_querylang::parse(q, convlog_querylang::QueryLimits::default())
                .unwrap()
                .unwrap();
            let text = evaluate(&ast, &mut |leaf| {
                let QueryAst::Term { tokens, .. } = leaf else {
                    unreachable!()
                };
                Ok::<_, ()>(set(&words(&tokens[0])))
            })
            .unwrap();
            let kept: Vec<u64> = universe
                .iter()
                .copied()
                .filter(|&id| match &text {
                    ConvText::Any => true,
                    ConvText::In(set) => set.contains(id),
                    ConvText::NotIn(set) => !set.contains(id),
                })
                .collect();
            assert_eq!(kept, expected, "{q}");
        }
    }
}
