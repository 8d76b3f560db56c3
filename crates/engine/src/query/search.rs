//! Executes searches: one pass for hits, total and unfiltered facets, one more
//! per filtered facet dimension (disjunctive counts), then the store for bodies.

use super::QueryError;
use super::build::{self, ConvText, Dimension, DocKind, Docs, TimeRange, Vocabulary, WordLookup};
use super::collector::{
    Disjunctive, IdCollector, SearchCollector, SearchFruit, SortPosition, SortSource, Summarized,
};
use super::cursor::{Cursor, Views};
use super::facets::{FacetColumns, whole_buckets};
use super::filters::{FILTERS, Scope};
use super::highlight::{highlight, snippet};
use super::join::{self, ConvCollector};
use super::{SearchRequest, Sort};
use crate::index::{Fields, IndexView, LiveIndex, Tailed, TextAnalysis};
use crate::settings::{Languages, SearchConfig};
use crate::store::{
    ConversationRecord, MessageRecord, NodeRecord, Store, StoreError, read, review,
};
use convlog_core::Micros;
use convlog_querylang::analysis;
use convlog_querylang::{Mode, QueryAst, Role};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tantivy::query::Query;
use tantivy::schema::Field;

const DAY: Micros = 86_400_000_000;
/// Characters of context in a snippet.
const SNIPPET_CHARS: usize = 160;
/// Snippets shown per conversation.
const SNIPPETS_PER_CONVERSATION: usize = 3;

/// New messages for a live tail (see [`SearchService::tail_page`]).
#[derive(Debug, Clone)]
pub struct TailPage {
    /// Ascending; shared with every other tail that sends them.
    pub messages: Vec<Arc<Tailed>>,
    /// The sequence to continue after.
    pub last: u64,
}

/// A conversation that matched, with snippets of the messages that matched `q`.
#[derive(Debug, Clone)]
pub struct ConversationHit {
    pub record: ConversationRecord,
    pub snippets: Vec<String>,
    /// The first thing the user said, on one line, cut to [`PREVIEW_CHARS`].
    pub preview: Option<String>,
}

/// Characters of a conversation's preview.
pub const PREVIEW_CHARS: usize = 160;

/// One page of conversation search.
#[derive(Debug, Clone)]
pub struct ConversationPage {
    pub total: u64,
    pub hits: Vec<ConversationHit>,
    pub next_cursor: Option<String>,
    /// Dimension name → value → count.
    pub facets: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

/// A message that matched.
#[derive(Debug, Clone)]
pub struct MessageHit {
    pub record: MessageRecord,
    pub snippet: Option<String>,
}

/// One page of message search.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub total: u64,
    pub hits: Vec<MessageHit>,
    pub next_cursor: Option<String>,
}

/// A conversation with everything the conversation view shows.
#[derive(Debug, Clone)]
pub struct ConversationDetail {
    pub record: ConversationRecord,
    /// Messages in order, each with its highlighted text when it matches `q`.
    pub messages: Vec<(MessageRecord, Option<String>)>,
    pub history: Vec<ConversationRecord>,
}

/// A node with the number of conversations that reached it.
#[derive(Debug, Clone)]
pub struct NodeCount {
    pub node: NodeRecord,
    pub conversations: u64,
}

/// One step of a flow's funnel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepFunnel {
    pub step: Option<String>,
    pub reached: u64,
    pub dropped_off: u64,
}

/// A flow's funnel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowFunnel {
    pub flow: String,
    pub conversations: u64,
    pub dropped_off: u64,
    pub steps: Vec<StepFunnel>,
}

/// What a search runs over: the index view (a cursor's pinned one, whose id
/// is `Some`, or the live one), the position after which it continues, and
/// the time range.
type ViewFor = (Arc<IndexView>, Option<u64>, Option<SortPosition>, TimeRange);

/// Searches the index and reads results from the store.
#[derive(Clone)]
pub struct SearchService {
    index: Arc<LiveIndex>,
    fields: Fields,
    pub(super) store: Store,
    views: Arc<Views>,
    columns: Arc<FacetColumns>,
    /// The languages of the message documents of the last view asked: (view id, languages).
    langs: Arc<Mutex<(u64, Arc<Vec<String>>)>>,
    config: SearchConfig,
}

/// Most words one prefix (`re*`) may expand to; more is a 400 asking for a longer one.
pub const MAX_PREFIX_WORDS: usize = 500;

/// Most distinct languages looked up per word (a bound on the index's `lang` terms).
const MAX_LANGS: usize = 256;

impl SearchService {
    /// A service over `index` and `store`.
    pub fn new(index: Arc<LiveIndex>, store: Store, config: SearchConfig) -> SearchService {
        let views = Arc::new(Views::new(config.cursor_ttl, config.max_open_cursors));
        SearchService {
            fields: index.index().fields().clone(),
            index,
            store,
            views,
            columns: Arc::default(),
            langs: Arc::default(),
            config,
        }
    }

    /// Runs blocking search work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SearchService) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let service = self.clone();
        tokio::task::spawn_blocking(move || f(&service))
            .await
            .map_err(|err| QueryError::Task(err.to_string()))?
    }

    /// The request with label filters in the bot's spelling (labels compare case-insensitively).
    fn resolve<'r>(
        &self,
        bot: &str,
        request: &'r SearchRequest,
    ) -> Result<Cow<'r, SearchRequest>, QueryError> {
        let asked = request.values("label");
        if asked.is_empty() {
            return Ok(Cow::Borrowed(request));
        }
        let labels = self
            .store
            .read(|conn| review::canonical_labels(conn, bot, asked))?;
        let mut resolved = request.clone();
        resolved.filters.insert("label", labels);
        Ok(Cow::Owned(resolved))
    }

    /// Resolves the cursor's view (or the live index) and the time range.
    ///
    /// The view id is `Some` when the cursor's view is still pinned; a new view
    /// is pinned only when a page hands out a cursor ([`SearchService::pin`]), so
    /// one-page searches don't push paging clients' views out.
    fn view_for(
        &self,
        request: &SearchRequest,
        kind: DocKind,
        now: Micros,
    ) -> Result<ViewFor, QueryError> {
        if let Some(text) = &request.cursor {
            let cursor = Cursor::decode(text)?;
            if cursor.filters != fingerprint(request, kind) {
                return Err(QueryError::InvalidParameter {
                    name: "cursor".into(),
                    reason: "was made for other filters; start again without it".into(),
                });
            }
            let (index, view) = match self.views.get(cursor.view) {
                Some(index) => (index, Some(cursor.view)),
                None => (self.live_view(), None),
            };
            return Ok((index, view, Some(cursor.after), cursor.range));
        }
        Ok((self.live_view(), None, None, time_range(request, now, true)))
    }

    /// The index as searches see it now.
    fn live_view(&self) -> Arc<IndexView> {
        let view = self.index.index().view();
        self.columns.follow(&view);
        view
    }

    /// The id of `index`'s view, pinning it if it isn't yet.
    fn pin(&self, view: Option<u64>, index: &Arc<IndexView>) -> u64 {
        view.unwrap_or_else(|| self.views.pin(index.clone()))
    }

    /// What the words of `ast` become in `index` (see [`Vocabulary`]): a 400
    /// when a prefix expands to more than [`MAX_PREFIX_WORDS`] words.
    fn vocabulary(
        &self,
        index: &IndexView,
        ast: Option<&QueryAst>,
    ) -> Result<Vocabulary, QueryError> {
        let analysis = match index.analysis {
            TextAnalysis::Languages(language) => WordLookup::Languages {
                langs: match ast {
                    Some(_) => self.langs(index, language.lang)?,
                    None => Vec::new(),
                },
                words: language.words,
            },
            TextAnalysis::PlainWords { max_token_len } => WordLookup::PlainWords { max_token_len },
        };
        let mut vocabulary = Vocabulary {
            analysis,
            prefixes: HashMap::new(),
        };
        for token in ast.map(ast_prefixes).unwrap_or_default() {
            let (field, prefix) = vocabulary.words(&self.fields, &token);
            let words = index
                .terms(DocKind::Message, field, &prefix, MAX_PREFIX_WORDS)?
                .ok_or_else(|| QueryError::InvalidParameter {
                    name: "q".into(),
                    reason: format!(
                        "`{prefix}*` matches more than {MAX_PREFIX_WORDS} different words; make the prefix longer"
                    ),
                })?;
            vocabulary
                .prefixes
                .insert(prefix, words.into_iter().collect());
        }
        Ok(vocabulary)
    }

    /// The languages the messages of `index` were analysed in (kept per view).
    fn langs(&self, index: &IndexView, lang: Field) -> Result<Vec<String>, QueryError> {
        let mut cached = self.langs.lock().expect("languages");
        if cached.0 != index.id {
            let langs = index
                .terms(DocKind::Message, lang, "", MAX_LANGS)?
                .unwrap_or_default();
            *cached = (index.id, Arc::new(langs.into_iter().collect()));
        }
        Ok(cached.1.as_ref().clone())
    }

    /// For a request with nothing but a time range: what counts its
    /// documents per distinct value (see [`Summarized`]).
    fn summarized(
        &self,
        bot: &str,
        request: &SearchRequest,
        range: TimeRange,
    ) -> Option<Summarized> {
        let plain = request.ast.is_none() && request.filters.values().all(Vec::is_empty);
        let buckets = whole_buckets(range.from, range.to)?;
        plain.then(|| Summarized {
            bot_field: self.fields.bot,
            bot: bot.to_string(),
            buckets,
        })
    }

    /// `query`, or when `collector` takes the documents of whole buckets
    /// from summaries, the query of the others only.
    fn unvisiting(
        &self,
        query: Box<dyn Query>,
        range: TimeRange,
        collector: &SearchCollector,
    ) -> Box<dyn Query> {
        match (collector.unvisited(), &collector.summarized) {
            (Some(buckets), Some(summarized)) => {
                build::outside_buckets(&self.fields, &summarized.bot, range, buckets)
            }
            _ => query,
        }
    }

    /// Counts `dimensions` over the documents `query` matches.
    fn count(
        &self,
        index: &IndexView,
        query: &dyn Query,
        range: TimeRange,
        dimensions: Vec<(&'static str, &'static str)>,
        summarized: Option<Summarized>,
    ) -> Result<SearchFruit, QueryError> {
        let collector = SearchCollector {
            sort: SortSource::Field("last_ts"),
            id_field: "conv_id",
            limit: 0,
            after: None,
            facets: dimensions,
            exact_range: range.exact(),
            disjunctive: Vec::new(),
            within: None,
            columns: self.columns.clone(),
            summarized,
        };
        let query = self.unvisiting(query.box_clone(), range, &collector);
        Ok(index.search(
            DocKind::Conversation,
            (range.from, range.to),
            query.as_ref(),
            &collector,
        )?)
    }

    /// Every bot with conversations in the hot store (callers filter by scope).
    pub async fn bots(&self) -> Result<Vec<read::BotSummary>, QueryError> {
        Ok(self.store.read_async(read::bots).await?)
    }

    /// Conversation search: hits, exact total, disjunctive facets, snippets.
    pub async fn conversations(
        &self,
        bot: String,
        request: SearchRequest,
        now: Micros,
    ) -> Result<ConversationPage, QueryError> {
        self.blocking(move |service| service.conversations_blocking(&bot, &request, now))
            .await
    }

    fn conversations_blocking(
        &self,
        bot: &str,
        request: &SearchRequest,
        now: Micros,
    ) -> Result<ConversationPage, QueryError> {
        let request = &*self.resolve(bot, request)?;
        let (index, view, after, range) = self.view_for(request, DocKind::Conversation, now)?;
        let fields = &self.fields;
        let sort = request.sort.unwrap_or(Sort::LastMessageAt);
        let limit = request.limit();
        let unfiltered: Vec<Dimension> = Dimension::all()
            .filter(|d| !d.is_filtered(request))
            .collect();
        // Filters the collector can test from columns leave the query and are counted
        // disjunctively in the main pass; the others (flow) get a pass each. Not when
        // sorting by relevance: filter clauses add to the score.
        let (in_pass, disjunctive): (Vec<Dimension>, Vec<Disjunctive>) = if sort == Sort::Relevance
        {
            (Vec::new(), Vec::new())
        } else {
            Dimension::all()
                .filter(|d| d.is_filtered(request))
                .filter_map(|d| {
                    let (filter, values) = d.column_filter(request)?;
                    Some((
                        d,
                        Disjunctive {
                            facet: d.field(),
                            filter,
                            values,
                        },
                    ))
                })
                .unzip()
        };
        let text = self.conversation_text(&index, bot, request, range, sort == Sort::Relevance)?;
        let docs = Docs::Conversations(&text);
        let query = build::build_without(fields, bot, docs, request, range, &in_pass);
        let collector = SearchCollector {
            sort: match sort {
                Sort::LastMessageAt => SortSource::Field("last_ts"),
                Sort::StartedAt => SortSource::Field("first_ts"),
                Sort::Relevance => SortSource::Score,
            },
            id_field: "conv_id",
            limit: limit + 1,
            after,
            facets: unfiltered.iter().map(|d| (d.name(), d.field())).collect(),
            exact_range: range.exact(),
            disjunctive,
            within: None,
            columns: self.columns.clone(),
            summarized: self.summarized(bot, request, range),
        };
        let query = self.unvisiting(query, range, &collector);
        let searched = text.view(&index);
        let fruit = searched.search(
            DocKind::Conversation,
            (range.from, range.to),
            &query,
            &collector,
        )?;

        let mut facets: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
        for (dimension, counts) in unfiltered.iter().chain(&in_pass).zip(fruit.facets) {
            facets.insert(dimension.name(), counts);
        }
        for dimension in Dimension::all().filter(|d| d.is_filtered(request) && !in_pass.contains(d))
        {
            let query = build::build(fields, bot, docs, request, range, Some(dimension));
            let counted = self.count(
                &searched,
                &query,
                range,
                vec![(dimension.name(), dimension.field())],
                None,
            )?;
            let counts = counted.facets.into_iter().next().unwrap_or_default();
            facets.insert(dimension.name(), counts);
        }

        let (top, next_cursor) = page(fruit.top, limit, |after| Cursor {
            view: self.pin(view, &index),
            after,
            range,
            filters: fingerprint(request, DocKind::Conversation),
        });
        let ids: Vec<u64> = top.iter().map(|p| p.id).collect();
        let bot_owned = bot.to_string();
        let ast = request.ast.clone();
        let languages = self.config.languages.clone();
        let hits = self.store.read(move |conn| {
            let records = read::conversations(conn, &bot_owned, &ids)?;
            records
                .into_iter()
                .map(|record| {
                    let snippets = match &ast {
                        Some(ast) => {
                            let messages = read::messages(conn, record.id)?;
                            snippets(&languages, &bot_owned, ast, &messages)
                        }
                        None => Vec::new(),
                    };
                    let preview = read::first_user_text(conn, record.id, PREVIEW_CHARS)?;
                    Ok(ConversationHit {
                        record,
                        snippets,
                        preview,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        Ok(ConversationPage {
            total: fruit.total,
            hits,
            next_cursor,
            facets,
        })
    }

    /// Message search: `q` evaluated per message.
    pub async fn messages(
        &self,
        bot: String,
        request: SearchRequest,
        now: Micros,
    ) -> Result<MessagePage, QueryError> {
        self.blocking(move |service| service.messages_blocking(&bot, &request, now))
            .await
    }

    fn messages_blocking(
        &self,
        bot: &str,
        request: &SearchRequest,
        now: Micros,
    ) -> Result<MessagePage, QueryError> {
        let request = &*self.resolve(bot, request)?;
        let (index, view, after, range) = self.view_for(request, DocKind::Message, now)?;
        let limit = request.limit();
        let words = self.vocabulary(&index, request.ast.as_ref())?;
        let query = build::build(
            &self.fields,
            bot,
            Docs::Messages(&words),
            request,
            range,
            None,
        );
        let within = self.conversations_passing(&index, bot, request, range)?;
        let collector = SearchCollector {
            sort: match request.sort {
                Some(Sort::Relevance) => SortSource::Score,
                _ => SortSource::Field("ts"),
            },
            id_field: "msg_seq",
            limit: limit + 1,
            after,
            facets: Vec::new(),
            exact_range: None,
            disjunctive: Vec::new(),
            within,
            columns: self.columns.clone(),
            summarized: None,
        };
        let fruit = index.search(DocKind::Message, (range.from, range.to), &query, &collector)?;
        let (top, next_cursor) = page(fruit.top, limit, |after| Cursor {
            view: self.pin(view, &index),
            after,
            range,
            filters: fingerprint(request, DocKind::Message),
        });
        let seqs: Vec<u64> = top.iter().map(|p| p.id).collect();
        let records = self
            .store
            .read(|conn| read::messages_by_seq(conn, bot, &seqs))?;
        let hits = records
            .into_iter()
            .map(|record| {
                let snippet = request.ast.as_ref().and_then(|ast| {
                    let hits = message_hits(&self.config.languages, bot, ast, &record);
                    snippet(&record.text, &hits, SNIPPET_CHARS)
                });
                MessageHit { record, snippet }
            })
            .collect();
        Ok(MessagePage {
            total: fruit.total,
            hits,
            next_cursor,
        })
    }

    /// For a message search with filters only conversation documents carry
    /// (see [`Scope`]): the conversations that pass them, ascending. Every
    /// other condition of the search holds for a message only if it holds for
    /// its conversation, so they narrow this set too.
    fn conversations_passing(
        &self,
        index: &IndexView,
        bot: &str,
        request: &SearchRequest,
        range: TimeRange,
    ) -> Result<Option<Arc<Vec<u64>>>, QueryError> {
        let joined = FILTERS
            .iter()
            .any(|f| f.scope == Scope::Conversation && !request.values(f.param).is_empty());
        if !joined {
            return Ok(None);
        }
        let mut conversational = request.clone();
        conversational.ast = None;
        conversational.filters.remove("role");
        let ids = self.conversation_ids(index, bot, &conversational, range)?;
        Ok(Some(Arc::new(ids)))
    }

    /// The conversations `request`'s `q` keeps, from the message documents of
    /// the partitions `range` touches (see [`join`]); with the sum of their
    /// messages' scores if `scored`.
    fn conversation_text(
        &self,
        index: &IndexView,
        bot: &str,
        request: &SearchRequest,
        range: TimeRange,
        scored: bool,
    ) -> Result<ConvText, QueryError> {
        let Some(ast) = &request.ast else {
            return Ok(ConvText::Any);
        };
        let words = self.vocabulary(index, Some(ast))?;
        join::evaluate(ast, &mut |leaf| {
            let query = build::message_text(&self.fields, &words, bot, leaf);
            Ok(index.search(
                DocKind::Message,
                (range.from, range.to),
                &query,
                &ConvCollector { scored },
            )?)
        })
    }

    /// The query over conversation documents of `bot` for all of `request`,
    /// and the partitions of `index` it needs.
    fn conversation_query<'a>(
        &self,
        index: &'a IndexView,
        bot: &str,
        request: &SearchRequest,
        range: TimeRange,
    ) -> Result<(Box<dyn Query>, Cow<'a, IndexView>), QueryError> {
        let text = self.conversation_text(index, bot, request, range, false)?;
        let docs = Docs::Conversations(&text);
        let query = build::build(&self.fields, bot, docs, request, range, None);
        Ok((query, text.view(index)))
    }

    /// Ids of the conversations `request` matches in `index`, ascending.
    fn conversation_ids(
        &self,
        index: &IndexView,
        bot: &str,
        request: &SearchRequest,
        range: TimeRange,
    ) -> Result<Vec<u64>, QueryError> {
        let (query, searched) = self.conversation_query(index, bot, request, range)?;
        Ok(searched.search(
            DocKind::Conversation,
            (range.from, range.to),
            &query,
            &IdCollector {
                id_field: "conv_id",
                exact_range: range.exact(),
            },
        )?)
    }

    /// Counts of `field` values over the conversations matching the filters (no default time range).
    fn facet_counts(
        &self,
        bot: &str,
        request: &SearchRequest,
        now: Micros,
        default_range: bool,
        dimensions: Vec<(&'static str, &'static str)>,
    ) -> Result<Vec<BTreeMap<String, u64>>, QueryError> {
        let request = &*self.resolve(bot, request)?;
        let range = time_range(request, now, default_range);
        let index = self.live_view();
        let (query, searched) = self.conversation_query(&index, bot, request, range)?;
        let summarized = self.summarized(bot, request, range);
        Ok(self
            .count(&searched, &query, range, dimensions, summarized)?
            .facets)
    }

    /// Ids of every conversation matching the filters (for bulk actions), ascending.
    pub async fn matching_ids(
        &self,
        bot: String,
        request: SearchRequest,
        now: Micros,
    ) -> Result<Vec<u64>, QueryError> {
        self.blocking(move |service| {
            let request = &*service.resolve(&bot, &request)?;
            let range = time_range(request, now, true);
            service.conversation_ids(&service.live_view(), &bot, request, range)
        })
        .await
    }

    /// The weight of each analysed word in clustering: the square root of its
    /// inverse document frequency over every message the index holds,
    /// `sqrt(ln(1 + N / (1 + df)))`. The root keeps a rare replacement word
    /// ("shipping" for "delivery") from outweighing the words a paraphrase
    /// shares, while words everyone writes still weigh least.
    pub fn word_weights(&self, words: &[&str]) -> Result<Vec<f32>, QueryError> {
        let (docs, freqs) =
            self.live_view()
                .doc_freqs(DocKind::Message, self.fields.text, words)?;
        Ok(freqs
            .into_iter()
            .map(|df| (1.0 + docs as f64 / (1.0 + df as f64)).ln().sqrt() as f32)
            .collect())
    }

    /// The last message stored: a live tail starts after it.
    pub fn latest_message(&self) -> Result<u64, QueryError> {
        Ok(self.store.read(read::latest_message_seq)?)
    }

    /// The id of the index view searches see now (it changes with every commit).
    pub fn view_id(&self) -> u64 {
        self.index.index().view().id
    }

    /// For a live tail: the messages after store sequence `after` that the
    /// index holds and `request` matches (no default time range), ascending,
    /// at most `limit`, with the channel of their conversation; and the
    /// sequence to continue after. Blocks (the tails run it on their threads).
    pub fn tail_page(
        &self,
        bot: &str,
        request: &SearchRequest,
        after: u64,
        limit: usize,
    ) -> Result<TailPage, QueryError> {
        let request = &*self.resolve(bot, request)?;
        let index = self.live_view();
        let range = time_range(request, 0, false);
        // Messages are indexed in store order: everything up to the largest
        // sequence the index holds is in it.
        let held = index
            .max_u64(DocKind::Message, "msg_seq")?
            .unwrap_or(after)
            .max(after);
        let words = self.vocabulary(&index, request.ast.as_ref())?;
        let filters = build::build(
            &self.fields,
            bot,
            Docs::Messages(&words),
            request,
            range,
            None,
        );
        // Sequences (lo, hi] at a time, the span doubling while matches are
        // fewer than `limit`: a burst of new messages is not read again for
        // every page of it, and a rare match doesn't take many searches.
        let mut matching = Vec::new();
        let (mut lo, mut span) = (after, limit.max(1) as u64 * 4);
        while matching.len() < limit && lo < held {
            let hi = held.min(lo.saturating_add(span));
            let seqs = tantivy::query::RangeQuery::new(
                std::ops::Bound::Excluded(tantivy::Term::from_field_u64(self.fields.msg_seq, lo)),
                std::ops::Bound::Included(tantivy::Term::from_field_u64(self.fields.msg_seq, hi)),
            );
            let query = tantivy::query::BooleanQuery::intersection(vec![
                filters.box_clone(),
                Box::new(seqs),
            ]);
            matching.extend(index.search_above(
                DocKind::Message,
                ("msg_seq", lo),
                &query,
                &IdCollector {
                    id_field: "msg_seq",
                    exact_range: None,
                },
            )?);
            (lo, span) = (hi, span.saturating_mul(2));
        }
        matching.truncate(limit);
        // A full page continues after its last message; otherwise after all held.
        let last = match matching.len() == limit {
            true => matching.last().copied().unwrap_or(held),
            false => held,
        };
        let within = match matching.is_empty() {
            true => None,
            false => self.conversations_passing(&index, bot, request, range)?,
        };
        let mut messages = self.tailed_messages(bot, &matching)?;
        if let Some(ids) = &within {
            messages.retain(|m| ids.binary_search(&m.message.conversation_id).is_ok());
        }
        Ok(TailPage { messages, last })
    }

    /// Whether ingest outruns the index (a burst).
    pub fn index_outrun(&self) -> bool {
        self.index.outrun()
    }

    /// What the live tails share (see [`Recent`](crate::index::Recent)).
    pub fn recent(&self) -> &Arc<crate::index::Recent> {
        self.index.recent()
    }

    /// The messages of `bot` with these sequences (ascending): those the
    /// indexer handed over, the others read from the store (and kept for
    /// the other tails).
    fn tailed_messages(&self, bot: &str, seqs: &[u64]) -> Result<Vec<Arc<Tailed>>, QueryError> {
        let recent = self.recent();
        let (mut found, missing) = recent.get(seqs);
        if !missing.is_empty() {
            let read = self
                .store
                .read(|conn| read::messages_with_channel(conn, bot, &missing))?;
            let read = read
                .into_iter()
                .map(|(message, channel)| Tailed::new(bot, message, channel))
                .collect();
            found.extend(recent.keep(read));
            found.sort_unstable_by_key(|tailed| tailed.message.seq);
        }
        found.retain(|tailed| tailed.bot_id == bot);
        Ok(found)
    }

    /// Conversations per value of a string field (tags, labels): value → count, descending.
    pub async fn value_counts(
        &self,
        bot: String,
        request: SearchRequest,
        field: &'static str,
        now: Micros,
    ) -> Result<Vec<(String, u64)>, QueryError> {
        self.blocking(move |service| {
            let counts = service.facet_counts(&bot, &request, now, false, vec![(field, field)])?;
            let mut counts: Vec<(String, u64)> = counts
                .into_iter()
                .next()
                .unwrap_or_default()
                .into_iter()
                .collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            Ok(counts)
        })
        .await
    }

    /// Every node seen, with the number of matching conversations that reached it.
    pub async fn nodes(
        &self,
        bot: String,
        request: SearchRequest,
        now: Micros,
    ) -> Result<Vec<NodeCount>, QueryError> {
        self.blocking(move |service| {
            let counts = service
                .facet_counts(&bot, &request, now, false, vec![("node", "node")])?
                .into_iter()
                .next()
                .unwrap_or_default();
            let nodes = service.store.read(|conn| read::nodes(conn, &bot))?;
            Ok(nodes
                .into_iter()
                .map(|node| NodeCount {
                    conversations: counts.get(&node.id).copied().unwrap_or(0),
                    node,
                })
                .collect())
        })
        .await
    }

    /// Per flow, how many conversations reached each step and dropped off there.
    pub async fn flows(
        &self,
        bot: String,
        request: SearchRequest,
        now: Micros,
    ) -> Result<Vec<FlowFunnel>, QueryError> {
        self.blocking(move |service| {
            let mut counts = service
                .facet_counts(
                    &bot,
                    &request,
                    now,
                    true,
                    vec![
                        ("flow", "flow"),
                        ("flow_step", "flow_step"),
                        ("dropoff_step", "dropoff_step"),
                    ],
                )?
                .into_iter();
            let flows = counts.next().unwrap_or_default();
            let reached = counts.next().unwrap_or_default();
            let dropped = counts.next().unwrap_or_default();
            Ok(funnels(flows, reached, dropped))
        })
        .await
    }

    /// One conversation with its messages (highlighted for `q`) and the user's recent history.
    pub async fn conversation(
        &self,
        bot: String,
        id: u64,
        ast: Option<QueryAst>,
    ) -> Result<ConversationDetail, QueryError> {
        let history_span = self.config.history_days as Micros * DAY;
        let languages = self.config.languages.clone();
        let detail = self
            .store
            .read_async(move |conn| {
                let record = read::conversation(conn, &bot, id)?;
                let messages = read::messages(conn, id)?;
                let history = read::history(
                    conn,
                    &bot,
                    &record.user_key,
                    id,
                    record.started_at,
                    record.started_at - history_span,
                )?;
                let messages = messages
                    .into_iter()
                    .map(|message| {
                        let highlight = ast
                            .as_ref()
                            .and_then(|ast| highlight_message(&languages, &bot, ast, &message));
                        (message, highlight)
                    })
                    .collect();
                Ok(ConversationDetail {
                    record,
                    messages,
                    history,
                })
            })
            .await;
        match detail {
            Err(StoreError::NotFound) => Err(QueryError::NotFound),
            other => Ok(other?),
        }
    }
}

/// Identifies the filters and the kind of search a cursor belongs to.
/// The folded prefixes (`refu*`) of `ast`'s terms.
fn ast_prefixes(ast: &QueryAst) -> Vec<String> {
    match ast {
        QueryAst::Term {
            tokens,
            mode: Mode::Prefix,
            ..
        } => tokens.clone(),
        QueryAst::Term { .. } | QueryAst::Field { .. } => Vec::new(),
        QueryAst::And(children) | QueryAst::Or(children) => {
            children.iter().flat_map(ast_prefixes).collect()
        }
        QueryAst::Not(inner) => ast_prefixes(inner),
    }
}

fn fingerprint(request: &SearchRequest, kind: DocKind) -> u64 {
    request.fingerprint() ^ (kind == DocKind::Message) as u64
}

/// The request's time range; with `default_last_day`, the last 24 hours when `from` is not given.
fn time_range(request: &SearchRequest, now: Micros, default_last_day: bool) -> TimeRange {
    if default_last_day && request.from.is_none() {
        TimeRange {
            from: Some(request.to.unwrap_or(now) - DAY),
            to: request.to,
        }
    } else {
        TimeRange {
            from: request.from,
            to: request.to,
        }
    }
}

/// Keeps `limit` hits and makes a cursor when there were more.
fn page(
    mut top: Vec<SortPosition>,
    limit: usize,
    cursor: impl FnOnce(SortPosition) -> Cursor,
) -> (Vec<SortPosition>, Option<String>) {
    if top.len() > limit {
        top.truncate(limit);
        let last = *top.last().expect("limit is at least 1");
        (top, Some(cursor(last).encode()))
    } else {
        (top, None)
    }
}

/// The byte ranges of `message` (of `bot`) that `ast` marks, with the text
/// analysed in the language the index analysed it in.
fn message_hits(
    languages: &Languages,
    bot: &str,
    ast: &QueryAst,
    message: &MessageRecord,
) -> Vec<(usize, usize)> {
    let Some(role) = Role::parse(&message.role) else {
        return Vec::new();
    };
    let lang = languages.resolve(bot, message.lang.as_deref(), &message.text);
    let tokens = analysis::analyse(&lang, &message.text);
    ast.hits(role, &lang, &tokens)
}

/// The highlighted text of a message that matches `ast` on its own.
fn highlight_message(
    languages: &Languages,
    bot: &str,
    ast: &QueryAst,
    message: &MessageRecord,
) -> Option<String> {
    let hits = message_hits(languages, bot, ast, message);
    (!hits.is_empty()).then(|| highlight(&message.text, &hits))
}

fn snippets(
    languages: &Languages,
    bot: &str,
    ast: &QueryAst,
    messages: &[MessageRecord],
) -> Vec<String> {
    messages
        .iter()
        .filter_map(|message| {
            let hits = message_hits(languages, bot, ast, message);
            snippet(&message.text, &hits, SNIPPET_CHARS)
        })
        .take(SNIPPETS_PER_CONVERSATION)
        .collect()
}

fn funnels(
    flows: BTreeMap<String, u64>,
    reached: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
) -> Vec<FlowFunnel> {
    let split = |value: &str| -> Option<(String, String)> {
        value
            .split_once('\u{1f}')
            .map(|(flow, step)| (flow.to_string(), step.to_string()))
    };
    let mut by_flow: BTreeMap<String, FlowFunnel> = flows
        .into_iter()
        .map(|(flow, conversations)| {
            (
                flow.clone(),
                FlowFunnel {
                    flow,
                    conversations,
                    dropped_off: 0,
                    steps: Vec::new(),
                },
            )
        })
        .collect();
    for (value, count) in reached {
        if let Some((flow, step)) = split(&value)
            && let Some(funnel) = by_flow.get_mut(&flow)
        {
            funnel.steps.push(StepFunnel {
                step: Some(step),
                reached: count,
                dropped_off: 0,
            });
        }
    }
    for (value, count) in dropped {
        let Some((flow, step)) = split(&value) else {
            continue;
        };
        let Some(funnel) = by_flow.get_mut(&flow) else {
            continue;
        };
        funnel.dropped_off += count;
        let step = (!step.is_empty()).then_some(step);
        match funnel.steps.iter_mut().find(|s| s.step == step) {
            Some(entry) => entry.dropped_off += count,
            None => funnel.steps.push(StepFunnel {
                step,
                reached: 0,
                dropped_off: count,
            }),
        }
    }
    let mut out: Vec<FlowFunnel> = by_flow.into_values().collect();
    for funnel in &mut out {
        // A funnel narrows: steps reached by more conversations come first.
        funnel
            .steps
            .sort_by(|a, b| b.reached.cmp(&a.reached).then_with(|| a.step.cmp(&b.step)));
    }
    out.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then_with(|| a.flow.cmp(&b.flow))
    });
    out
}
