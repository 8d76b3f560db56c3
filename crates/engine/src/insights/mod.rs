//! Insights: what the bot missed. The user inputs that a fallback answered
//! (`unidentified`) in the conversations a search matches, grouped by
//! similarity ([`cluster`]) and ranked by how often they were sent.

pub mod cluster;

use crate::query::{QueryError, SearchRequest, SearchService};
use crate::settings::Languages;
use crate::store::Store;
use crate::store::read::{self, UnidentifiedInput};
use convlog_core::Clock;
use std::collections::HashSet;
use std::sync::Arc;

/// Examples shown per cluster.
pub const MAX_EXAMPLES: usize = 5;

/// One cluster of unidentified inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct InputCluster {
    /// Its heaviest words, in the order its most frequent input has them.
    pub label: String,
    pub inputs: u64,
    pub conversations: u64,
    /// Its heaviest words, heaviest first.
    pub terms: Vec<String>,
    /// Up to [`MAX_EXAMPLES`] inputs, one per distinct wording, most frequent first.
    pub examples: Vec<UnidentifiedInput>,
}

/// The unidentified inputs of a search, clustered.
#[derive(Debug, Clone, PartialEq)]
pub struct Unidentified {
    pub total_inputs: u64,
    pub total_clusters: u64,
    /// The largest `limit` clusters, by inputs descending.
    pub clusters: Vec<InputCluster>,
}

/// Insights over the store and the index.
#[derive(Clone)]
pub struct InsightsService {
    store: Store,
    search: SearchService,
    clock: Clock,
    languages: Arc<Languages>,
}

impl InsightsService {
    pub fn new(
        store: Store,
        search: SearchService,
        clock: Clock,
        languages: Arc<Languages>,
    ) -> InsightsService {
        InsightsService {
            store,
            search,
            clock,
            languages,
        }
    }

    /// The unidentified inputs of the conversations `request` matches, in
    /// clusters; the `limit` largest are returned.
    pub async fn unidentified(
        &self,
        bot: &str,
        request: SearchRequest,
        limit: usize,
    ) -> Result<Unidentified, QueryError> {
        let ids = self
            .search
            .matching_ids(bot.to_string(), request, self.clock.now())
            .await?;
        let service = self.clone();
        let bot = bot.to_string();
        tokio::task::spawn_blocking(move || service.clustered(&bot, &ids, limit))
            .await
            .map_err(|err| QueryError::Task(err.to_string()))?
    }

    fn clustered(&self, bot: &str, ids: &[u64], limit: usize) -> Result<Unidentified, QueryError> {
        let inputs = self
            .store
            .read(|conn| read::unidentified_inputs(conn, bot, ids))?;
        let langs: Vec<String> = inputs
            .iter()
            .map(|input| {
                self.languages
                    .resolve(bot, input.lang.as_deref(), &input.text)
            })
            .collect();
        let texts: Vec<cluster::Text> = inputs
            .iter()
            .zip(&langs)
            .map(|(input, lang)| cluster::Text {
                text: &input.text,
                lang,
            })
            .collect();
        let groups = cluster::cluster(&texts, |words| self.search.word_weights(words))?;
        let total_clusters = groups.len() as u64;
        let clusters = groups
            .into_iter()
            .take(limit)
            .map(|group| {
                let conversations: HashSet<u64> = group
                    .members
                    .iter()
                    .map(|&m| inputs[m].conversation_id)
                    .collect();
                InputCluster {
                    label: group.label,
                    inputs: group.members.len() as u64,
                    conversations: conversations.len() as u64,
                    terms: group.terms,
                    examples: group
                        .variants
                        .iter()
                        .take(MAX_EXAMPLES)
                        .map(|&v| inputs[v].clone())
                        .collect(),
                }
            })
            .collect();
        Ok(Unidentified {
            total_inputs: inputs.len() as u64,
            total_clusters,
            clusters,
        })
    }
}
