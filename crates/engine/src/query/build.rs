//! Turns a validated request into one tantivy query, always scoped to one bot.
//!
//! Conversation documents carry no text: the text part of a conversation query
//! is a [`ConvText`] the caller worked out from the message documents
//! ([`super::join`]), each word or phrase with [`message_text`].

use super::SearchRequest;
use super::facets::BUCKET;
pub use super::filters::Dimension;
use super::filters::{Clause, FILTERS, Scope};
use super::join::ConvSetQuery;
pub use super::join::ConvText;
use crate::index::Fields;
use crate::index::schema::{ANY_DROPOFF, flow_step, plain_words};
use convlog_core::Micros;
use convlog_querylang::analysis;
use convlog_querylang::{Mode, QueryAst};
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};

pub use crate::index::DocKind;

/// The time range of a search, already resolved (defaults applied).
///
/// For conversations the query checks that the span overlaps the range and
/// [`TimeRange::exact`] gives the collectors the rest of the test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeRange {
    pub from: Option<Micros>,
    pub to: Option<Micros>,
}

impl TimeRange {
    /// The exact test collectors apply to conversation documents.
    pub fn exact(&self) -> Option<super::collector::ExactRange> {
        (self.from.is_some() || self.to.is_some()).then(|| super::collector::ExactRange {
            from: self.from.unwrap_or(Micros::MIN),
            to: self.to.unwrap_or(Micros::MAX),
        })
    }
}

fn term_query(field: Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    ))
}

fn any_of<S: AsRef<str>>(field: Field, values: impl IntoIterator<Item = S>) -> Box<dyn Query> {
    Box::new(TermSetQuery::new(
        values
            .into_iter()
            .map(|value| Term::from_field_text(field, value.as_ref())),
    ))
}

/// What a query searches: message documents (their text from the request's
/// `q`), or conversation documents with the conversations `q` keeps.
#[derive(Clone, Copy)]
pub enum Docs<'a> {
    /// Message documents, with what the query's words become in the index.
    Messages(&'a Vocabulary),
    Conversations(&'a ConvText),
}

/// What a query's words become in one index view: how its text was
/// analysed, and the indexed words each prefix (`refu*`) expands to.
#[derive(Debug)]
pub struct Vocabulary {
    pub analysis: WordLookup,
    /// Folded prefix → the words it expands to.
    pub prefixes: HashMap<String, Vec<String>>,
}

/// Where a query word is looked up in one index view.
#[derive(Debug)]
pub enum WordLookup {
    /// In each language its messages were analysed in; prefixes and typos in
    /// the folded words of `words`.
    Languages { langs: Vec<String>, words: Field },
    /// An index of schema 5, served while a reindex replaces it: plain
    /// lowercase words of `text`, prefixes and typos among them too.
    PlainWords { max_token_len: usize },
}

impl Vocabulary {
    /// The field prefixes and typos are looked up in, and `token` as indexed there.
    pub fn words(&self, fields: &Fields, token: &str) -> (Field, String) {
        match &self.analysis {
            WordLookup::Languages { words, .. } => (*words, analysis::fold(token)),
            WordLookup::PlainWords { .. } => (fields.text, token.to_string()),
        }
    }

    /// The term sequences that `tokens` (one word, or a phrase) may be indexed as.
    fn sequences(&self, tokens: &[String]) -> BTreeSet<Vec<String>> {
        match &self.analysis {
            // A single word: each of its tokens per language. A phrase: its
            // sequence of tokens per language. Runs of CJK are the same in
            // every language: distinct sequences only.
            WordLookup::Languages { langs, .. } => match tokens {
                [word] if !analysis::is_run(word) => langs
                    .iter()
                    .flat_map(|lang| analysis::word_tokens(lang, word))
                    .map(|token| vec![token])
                    .collect(),
                _ => langs
                    .iter()
                    .map(|lang| analysis::term_tokens(lang, tokens))
                    .filter(|sequence| !sequence.is_empty())
                    .collect(),
            },
            WordLookup::PlainWords { max_token_len } => {
                let words: Vec<String> = tokens
                    .iter()
                    .flat_map(|token| plain_words(token, *max_token_len))
                    .collect();
                BTreeSet::from_iter((!words.is_empty()).then_some(words))
            }
        }
    }
}

impl Docs<'_> {
    fn kind(self) -> DocKind {
        match self {
            Docs::Messages(_) => DocKind::Message,
            Docs::Conversations(_) => DocKind::Conversation,
        }
    }
}

/// Builds the query for `request` over `docs` of `bot`, leaving out the filter of `without`.
pub fn build(
    fields: &Fields,
    bot: &str,
    docs: Docs<'_>,
    request: &SearchRequest,
    range: TimeRange,
    without: Option<Dimension>,
) -> Box<dyn Query> {
    build_without(fields, bot, docs, request, range, without.as_slice())
}

/// The conversations of `bot` with a message in `range` whose first message
/// is outside the buckets `[lo, hi)`: what a search with nothing but a time
/// range still visits when summaries give all it needs of the others
/// (`SearchCollector::unvisited`). Each branch is led by a narrow range of
/// first-message times (the edges of the range, and the conversations that
/// started in the bucket before it and are still open in it), so the search
/// doesn't walk every conversation of a day to skip most of them. Those that
/// started earlier and are still open are few (conversations lasting a bucket
/// or more) and the collector takes them from the summaries too.
pub fn outside_buckets(
    fields: &Fields,
    bot: &str,
    range: TimeRange,
    (lo, hi): (Micros, Micros),
) -> Box<dyn Query> {
    let started = |from: Option<Micros>, to: Option<Micros>| -> Box<dyn Query> {
        Box::new(RangeQuery::new(
            bound(fields.first_ts, from, true),
            bound(fields.first_ts, to, false),
        ))
    };
    // Intersections are led by their cheapest clause, and a range costs less
    // than a term matching the whole segment: the bot goes last.
    let branch = |mut clauses: Vec<Box<dyn Query>>| -> (Occur, Box<dyn Query>) {
        clauses.push(term_query(fields.bot, bot));
        let clauses = clauses.into_iter().map(|c| (Occur::Must, c)).collect();
        (Occur::Should, Box::new(BooleanQuery::new(clauses)))
    };
    let mut branches = Vec::new();
    if let Some(from) = range.from.filter(|from| *from < lo) {
        branches.push(branch(vec![started(Some(from), Some(lo))]));
    }
    if let Some(to) = range.to.filter(|to| hi < *to) {
        branches.push(branch(vec![started(Some(hi), Some(to))]));
    }
    if let Some(from) = range.from {
        let still_open = RangeQuery::new(bound(fields.last_ts, Some(from), true), Bound::Unbounded);
        let just_before = started(Some(from.saturating_sub(BUCKET)), Some(from));
        branches.push(branch(vec![just_before, Box::new(still_open)]));
    }
    if branches.is_empty() {
        return Box::new(EmptyQuery);
    }
    Box::new(BooleanQuery::new(branches))
}

/// A bound on an i64 field: none, inclusive or exclusive.
fn bound(field: Field, value: Option<Micros>, inclusive: bool) -> Bound<Term> {
    match value {
        None => Bound::Unbounded,
        Some(v) if inclusive => Bound::Included(Term::from_field_i64(field, v)),
        Some(v) => Bound::Excluded(Term::from_field_i64(field, v)),
    }
}

/// Builds the query for `request` over `docs` of `bot`, leaving out the filters of `without`.
pub fn build_without(
    fields: &Fields,
    bot: &str,
    docs: Docs<'_>,
    request: &SearchRequest,
    range: TimeRange,
    without: &[Dimension],
) -> Box<dyn Query> {
    let kind = docs.kind();
    let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, term_query(fields.bot, bot))];
    if range.from.is_some() || range.to.is_some() {
        match kind {
            // The span overlaps the range; the collector finishes the exact test (ExactRange).
            DocKind::Conversation => {
                if range.from.is_some() {
                    must.push((
                        Occur::Must,
                        Box::new(RangeQuery::new(
                            bound(fields.last_ts, range.from, true),
                            Bound::Unbounded,
                        )),
                    ));
                }
                if range.to.is_some() {
                    must.push((
                        Occur::Must,
                        Box::new(RangeQuery::new(
                            Bound::Unbounded,
                            bound(fields.first_ts, range.to, false),
                        )),
                    ));
                }
            }
            DocKind::Message => must.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(fields.ts, range.from, true),
                    bound(fields.ts, range.to, false),
                )),
            )),
        }
    }
    let mut flow = false;
    for filter in FILTERS {
        let values = request.values(filter.param);
        let left_out = without
            .iter()
            .any(|dimension| filter.dimension() == Some(dimension.name()));
        // Message documents don't carry what review and tagging change: the
        // search keeps the messages of the conversations that pass it instead.
        let elsewhere = kind == DocKind::Message && filter.scope == Scope::Conversation;
        if values.is_empty() || left_out || elsewhere {
            continue;
        }
        match filter.clause {
            Clause::AnyOf(field) => must.push((Occur::Must, any_of(fields.get(field), values))),
            Clause::Flow => flow = true,
        }
    }
    if flow {
        must.extend(flow_clauses(fields, kind, request));
    }
    match docs {
        Docs::Messages(words) => match &request.ast {
            // A top-level negation needs nothing positive: the bot scope already is.
            Some(QueryAst::Not(inner)) => {
                must.push((Occur::MustNot, text_query(fields, words, inner)))
            }
            Some(other) => must.push((Occur::Must, text_query(fields, words, other))),
            None => {}
        },
        Docs::Conversations(ConvText::Any) => {}
        Docs::Conversations(ConvText::In(set)) => {
            must.push((Occur::Must, Box::new(ConvSetQuery(set.clone()))))
        }
        Docs::Conversations(ConvText::NotIn(set)) => {
            must.push((Occur::MustNot, Box::new(ConvSetQuery(set.clone()))))
        }
    }
    Box::new(BooleanQuery::new(must))
}

/// The message documents of `bot` that match one leaf of `q` (a word, a
/// phrase or a field).
pub fn message_text(
    fields: &Fields,
    words: &Vocabulary,
    bot: &str,
    leaf: &QueryAst,
) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, term_query(fields.bot, bot)),
        (Occur::Must, text_query(fields, words, leaf)),
    ]))
}

/// The text of one term: in every language of `words`, its analysed tokens
/// (a term, or a phrase of consecutive positions); a prefix's words; or the
/// words within its edits.
fn term_text(fields: &Fields, words: &Vocabulary, tokens: &[String], mode: Mode) -> Box<dyn Query> {
    let (field, word) = words.words(fields, &tokens[0]);
    match mode {
        Mode::Prefix => {
            let expanded = words.prefixes.get(&word).map_or(&[][..], Vec::as_slice);
            Box::new(TermSetQuery::new(
                expanded.iter().map(|w| Term::from_field_text(field, w)),
            ))
        }
        Mode::Fuzzy(edits) => Box::new(FuzzyTermQuery::new(
            Term::from_field_text(field, &word),
            edits,
            true,
        )),
        Mode::Exact => {
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = words
                .sequences(tokens)
                .into_iter()
                .map(|sequence| {
                    let query: Box<dyn Query> = match sequence.as_slice() {
                        [token] => Box::new(TermQuery::new(
                            Term::from_field_text(fields.text, token),
                            IndexRecordOption::WithFreqs,
                        )),
                        _ => Box::new(PhraseQuery::new(
                            sequence
                                .iter()
                                .map(|t| Term::from_field_text(fields.text, t))
                                .collect(),
                        )),
                    };
                    (Occur::Should, query)
                })
                .collect();
            match alternatives.len() {
                0 => Box::new(EmptyQuery),
                1 => alternatives.pop().expect("one alternative").1,
                _ => Box::new(BooleanQuery::new(alternatives)),
            }
        }
    }
}

/// `flow`, `step` and `dropoff` together: a step within its flows, a drop-off at those steps
/// (the drop-off on conversation documents only: see [`Scope`]).
fn flow_clauses(
    fields: &Fields,
    kind: DocKind,
    request: &SearchRequest,
) -> Vec<(Occur, Box<dyn Query>)> {
    let (flows, steps) = (request.values("flow"), request.values("step"));
    let mut clauses = Vec::new();
    let pairs = || {
        flows
            .iter()
            .flat_map(|flow| steps.iter().map(move |step| flow_step(flow, step)))
            .collect::<Vec<_>>()
    };
    if !flows.is_empty() {
        clauses.push((Occur::Must, any_of(fields.flow, flows)));
    }
    if !steps.is_empty() {
        clauses.push((Occur::Must, any_of(fields.flow_step, pairs())));
    }
    if let Some(dropoff) = request
        .flag("dropoff")
        .filter(|_| kind == DocKind::Conversation)
    {
        let dropped: Box<dyn Query> = if !steps.is_empty() {
            any_of(fields.dropoff_step, pairs())
        } else if !flows.is_empty() {
            any_of(fields.dropoff, flows)
        } else {
            term_query(fields.dropoff, ANY_DROPOFF)
        };
        clauses.push((if dropoff { Occur::Must } else { Occur::MustNot }, dropped));
    }
    clauses
}

/// The text part over message documents: phrases match within the message.
fn text_query(fields: &Fields, words: &Vocabulary, ast: &QueryAst) -> Box<dyn Query> {
    match ast {
        QueryAst::Field { field, value } => term_query(fields.get(field.as_str()), value),
        QueryAst::Term { role, tokens, mode } => {
            if tokens.is_empty() {
                return Box::new(EmptyQuery);
            }
            let text = term_text(fields, words, tokens, *mode);
            match role {
                None => text,
                Some(role) => Box::new(BooleanQuery::new(vec![
                    (Occur::Must, text),
                    (Occur::Must, term_query(fields.role, role.as_str())),
                ])),
            }
        }
        QueryAst::And(children) => {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            let mut positive = false;
            for child in children {
                match child {
                    QueryAst::Not(inner) => {
                        clauses.push((Occur::MustNot, text_query(fields, words, inner)))
                    }
                    other => {
                        positive = true;
                        clauses.push((Occur::Must, text_query(fields, words, other)));
                    }
                }
            }
            if !positive {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        QueryAst::Or(children) => Box::new(BooleanQuery::new(
            children
                .iter()
                .map(|child| (Occur::Should, text_query(fields, words, child)))
                .collect(),
        )),
        QueryAst::Not(inner) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
            (Occur::MustNot, text_query(fields, words, inner)),
        ])),
    }
}
